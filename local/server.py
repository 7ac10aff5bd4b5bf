"""Start `bentoml serve` on a free loopback port, wait until it is ready, and always stop it again.

Used by `make demo`, the HTTP tests and `make bench-serve`, so all three run the server exactly the way
`make serve` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from local.net import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERVICE = "serving.service:PlanetClassifier"


class ServerError(RuntimeError):
    """The server did not become ready; the message carries the end of its log."""


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    ready_after: float

    def predict(self, image: Path, timeout: float = 30.0) -> dict:
        with image.open("rb") as handle:
            response = httpx.post(
                f"{self.url}/predict", files={"image": (image.name, handle)}, timeout=timeout
            )
        response.raise_for_status()
        return response.json()


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the whole process group (the server and its workers), then SIGKILL what is left."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


@contextlib.contextmanager
def running_server(
    service: str = DEFAULT_SERVICE,
    *,
    cwd: Path = ROOT,
    port: int | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_path or ROOT / ".orbit" / "logs" / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [str(bentoml), "serve", service, "--host", "127.0.0.1", "--port", str(port), *extra_args]
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(cwd))
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while True:
            if process.poll() is not None:
                raise ServerError(f"bentoml serve exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > ready_timeout:
                raise ServerError(f"bentoml serve not ready after {ready_timeout:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield Server(url=url, process=process, log_path=log_path, ready_after=time.monotonic() - started)
    finally:
        _stop(process)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
