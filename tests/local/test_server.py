"""local.server starts `bentoml serve`, waits for readiness, and leaves no process behind."""

import os
import textwrap

import httpx
import pytest

from local.server import ServerError, running_server

pytestmark = pytest.mark.slow

ECHO_SERVICE = textwrap.dedent(
    """
    import bentoml

    @bentoml.service
    class Echo:
        @bentoml.api
        def echo(self, text: str) -> str:
            return text[::-1]
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_is_ready_answers_and_is_stopped_with_its_workers(tmp_path):
    (tmp_path / "echo_service.py").write_text(ECHO_SERVICE)
    env = {"BENTOML_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    with running_server("echo_service:Echo", cwd=tmp_path, env=env, log_path=tmp_path / "log") as server:
        assert server.ready_after > 0
        answer = httpx.post(f"{server.url}/echo", json={"text": "orbit"}, timeout=10)
        assert answer.text == "tibro"
        pid = server.process.pid
    assert server.process.poll() is not None
    assert not _alive(pid)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/readyz", timeout=1)


def test_a_service_that_cannot_start_raises_with_the_log_tail(tmp_path):
    (tmp_path / "broken_service.py").write_text("raise RuntimeError('model store is empty')\n")
    env = {"BENTOML_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    with pytest.raises(ServerError) as info:
        with running_server("broken_service:Nope", cwd=tmp_path, env=env, log_path=tmp_path / "log"):
            pass
    assert "model store is empty" in str(info.value)
