"""local.bucket: the emulated GCS bucket as DVC remote, and stop ending only what start started."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from local import bucket
from local.bucket import BucketError
from local.net import free_port
from ml.synthetic import generate_dataset
from tests.conftest import REPO_ROOT

DVC = str(Path(sys.executable).parent / "dvc")


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie waiting for a parent that is not us to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def dvc_repo(tmp_path) -> Path:
    """A fresh git + DVC repository whose default remote is a gs:// bucket."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _run("git", "init", "-q", cwd=repo)
    _run(DVC, "init", "-q", cwd=repo)
    _run(DVC, "remote", "add", "-d", "storage", "gs://orbit-test-google", cwd=repo)
    return repo


@pytest.fixture
def light_repo(tmp_path) -> Path:
    """Just a .dvc/config, as `dvc init` + `dvc remote add` would write it (seconds faster)."""
    repo = tmp_path / "light"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text(
        "[core]\n    remote = storage\n"
        "['remote \"storage\"']\n    url = gs://orbit-test-google\n"
        "['remote \"s3remote\"']\n    url = s3://somewhere\n"
    )
    return repo


@pytest.fixture
def cli(tmp_path, dvc_repo):
    """Run `python -m local.bucket ...` in the repo with its state under tmp_path; stop it at the end."""
    state = tmp_path / "state"
    env = {
        **os.environ,
        "ORBIT_STATE_DIR": str(state),
        "PYTHONPATH": str(REPO_ROOT),
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    env.pop("ORBIT_BUCKET_PORT", None)

    def run(*args: str, port: int | None = None) -> subprocess.CompletedProcess:
        extra = {"ORBIT_BUCKET_PORT": str(port)} if port else {}
        return _run(sys.executable, "-m", "local.bucket", *args, cwd=dvc_repo, env={**env, **extra})

    run.state = state
    run.env = env
    yield run
    recorded = bucket.read_state(state)
    if recorded:  # a failed test: end the emulator this test started, by its recorded pid
        bucket.stop(dvc_repo, state=state, quiet=True)


def _local_config(repo: Path) -> str:
    path = repo / ".dvc" / "config.local"
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_push_restart_pull_roundtrip_is_byte_identical(cli, dvc_repo, capsys):
    generate_dataset(dvc_repo / "data" / "raw", per_class=2, size=32, seed=3, classes=("Earth", "Saturn"))
    originals = {p.relative_to(dvc_repo): p.read_bytes() for p in (dvc_repo / "data" / "raw").rglob("*.jpg")}
    _run(DVC, "add", "-q", "data/raw", cwd=dvc_repo)

    port = free_port()
    started = cli("start", port=port)
    state = json.loads((cli.state / "bucket.json").read_text())
    assert state["port"] == port and state["bucket"] == "orbit-test-google" and state["remote"] == "storage"
    assert "created" in started.stdout
    assert f"endpointurl = http://127.0.0.1:{port}" in _local_config(dvc_repo)
    assert "allow_anonymous_login = true" in _local_config(dvc_repo)
    assert "endpointurl" not in (dvc_repo / ".dvc" / "config").read_text(), "the committed config stays clean"
    bucket.start(dvc_repo, state=cli.state)  # in-process: no second emulator, no config change
    assert "already running" in capsys.readouterr().out
    assert json.loads((cli.state / "bucket.json").read_text())["pid"] == state["pid"]
    assert bucket.main(["status", "--state-dir", str(cli.state)]) == 0
    assert capsys.readouterr().out.startswith(f"running: http://127.0.0.1:{port}")

    _run(DVC, "push", "-q", cwd=dvc_repo, env=cli.env)
    assert any((cli.state / "bucket").rglob("*.dir")), "objects are kept on disk under the state folder"

    cli("stop")
    assert _gone(state["pid"])
    assert "endpointurl" not in _local_config(dvc_repo)
    assert not (cli.state / "bucket.json").exists()

    restarted = cli("start")  # a new free port: the remote must follow it
    assert "found (kept from the last run)" in restarted.stdout
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    shutil.rmtree(dvc_repo / "data" / "raw")
    _run(DVC, "pull", "-q", cwd=dvc_repo, env=cli.env)
    pulled = {p.relative_to(dvc_repo): p.read_bytes() for p in (dvc_repo / "data" / "raw").rglob("*.jpg")}
    assert pulled == originals

    pid = json.loads((cli.state / "bucket.json").read_text())["pid"]
    cli("stop")
    assert _gone(pid)
    assert bucket.main(["status", "--state-dir", str(cli.state)]) == 1
    assert "not running" in capsys.readouterr().out


def test_stop_never_ends_a_process_it_did_not_start(light_repo, tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = tmp_path / "state"
        state.mkdir()
        recorded = bucket.BucketState(
            pid=other.pid,
            create_time=psutil.Process(other.pid).create_time(),
            port=1,
            bucket="b",
            remote="storage",
            repo=str(light_repo),
            data_dir=str(state / "bucket"),
        )
        (state / "bucket.json").write_text(json.dumps(recorded.__dict__))
        assert bucket.running(state) is None
        assert bucket.stop(light_repo, state=state, quiet=True) is False
        assert other.poll() is None, "a process that is not the emulator must be left running"
        assert not (state / "bucket.json").exists(), "the stale record is cleared"
    finally:
        other.kill()
        other.wait()


def test_a_failed_start_ends_the_emulator_it_launched(light_repo, tmp_path, monkeypatch):
    def refuse(endpoint, name):
        raise BucketError("bucket creation refused")

    monkeypatch.setattr(bucket, "create_bucket", refuse)
    launched: list[subprocess.Popen] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            launched.append(self)

    monkeypatch.setattr(bucket.subprocess, "Popen", RecordingPopen)
    try:
        with pytest.raises(BucketError, match="refused"):
            bucket.start(light_repo, state=tmp_path / "state", port=free_port())
        assert len(launched) == 1 and "gcp_storage_emulator" in launched[0].args
        assert launched[0].poll() is not None, "start must end the emulator it launched"
    finally:
        for proc in launched:  # only if the assertion above failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert bucket.read_state(tmp_path / "state") is None
    assert not (light_repo / ".dvc" / "config.local").exists()


def test_stop_and_status_without_a_running_emulator(tmp_path, capsys):
    assert bucket.stop(tmp_path, state=tmp_path / "state") is False
    assert "nothing to stop" in capsys.readouterr().out
    assert bucket.main(["status", "--state-dir", str(tmp_path / "state")]) == 1
    assert "not running" in capsys.readouterr().out


def test_remote_must_exist_and_be_a_gs_url(light_repo, tmp_path):
    assert bucket.remote_bucket(light_repo) == ("storage", "orbit-test-google")
    with pytest.raises(BucketError, match="'other' is not configured.*dvc remote add"):
        bucket.remote_bucket(light_repo, "other")
    with pytest.raises(BucketError, match="only gs:// URLs"):
        bucket.remote_bucket(light_repo, "s3remote")
    with pytest.raises(BucketError, match="no DVC repository"):
        bucket.remote_bucket(tmp_path / "elsewhere")


def test_port_in_use_or_invalid_is_refused_before_starting(light_repo, tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BucketError, match=f"port {port} on 127.0.0.1 is in use"):
            bucket.start(light_repo, state=tmp_path / "state", port=port)
    monkeypatch.setenv("ORBIT_BUCKET_PORT", "not-a-port")
    with pytest.raises(BucketError, match="ORBIT_BUCKET_PORT must be a port number"):
        bucket.start(light_repo, state=tmp_path / "state")
    assert bucket.read_state(tmp_path / "state") is None


def test_dvc_env_disables_the_gcsfs_probe(monkeypatch):
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "true")
    assert bucket.dvc_env()["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
