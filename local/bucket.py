"""An emulated GCS bucket on loopback, so `dvc push` / `dvc pull` work without a cloud account.

    python -m local.bucket start|stop|status [--repo DIR] [--remote NAME] [--state-dir DIR] [--port P]

`start` runs gcp-storage-emulator on 127.0.0.1 with its objects on disk under `.orbit/bucket/` (pushed
data survives a restart), creates the bucket named in the DVC remote's `gs://` URL, and points that
remote at the emulator in `.dvc/config.local` only; the committed `.dvc/config` keeps the plain `gs://`
URL, which is why switching to the real bucket is configuration and not code. `stop` ends only the
process that `start` recorded (same pid and start time, and still the emulator) and removes the local
endpoint again.

Environment: ORBIT_STATE_DIR moves `.orbit/`, ORBIT_BUCKET_PORT fixes the port (default: a free one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from local.net import free_port
from local.processes import launched_process

HOST = "127.0.0.1"
DEFAULT_REMOTE = "storage"
PROJECT = "orbit-local"
STATE_ENV = "ORBIT_STATE_DIR"
PORT_ENV = "ORBIT_BUCKET_PORT"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
#: gcsfs otherwise probes the bucket type over gRPC and waits 60 s per probe against the emulator.
DVC_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


class BucketError(RuntimeError):
    """The emulated bucket could not be started, configured or stopped; the message says why."""


@dataclass
class BucketState:
    """What `start` records in `<state dir>/bucket.json`, so `stop` ends exactly this process."""

    pid: int
    create_time: float
    port: int
    bucket: str
    remote: str
    repo: str
    data_dir: str

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"


def state_dir(explicit: Path | str | None = None) -> Path:
    return Path(explicit or os.environ.get(STATE_ENV) or ".orbit")


def _state_file(state: Path) -> Path:
    return state / "bucket.json"


def dvc_env() -> dict[str, str]:
    """The environment for any dvc process that may talk to the emulator."""
    return {**os.environ, **DVC_ENV}


def dvc_executable() -> str:
    """The dvc of this virtualenv, so the right dvc-gs is used even when the venv is not activated."""
    beside = Path(sys.executable).parent / "dvc"
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    if not found:
        raise BucketError("dvc not found next to this Python or on PATH; run `make setup` first")
    return found


def run_dvc(args: Sequence[str], repo: Path) -> str:
    result = subprocess.run(
        [dvc_executable(), *args], cwd=repo, env=dvc_env(), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise BucketError(f"`dvc {' '.join(args)}` failed in {repo}: {detail}")
    return result.stdout


# --- the DVC remote -------------------------------------------------------------------------------


def _dvc_config(repo: Path, level: str | None = None) -> dict:
    from dvc.config import Config

    dvc_dir = repo / ".dvc"
    if not dvc_dir.is_dir():
        raise BucketError(f"no DVC repository at {repo} (no .dvc folder); run from the repository root")
    config = Config(dvc_dir=str(dvc_dir), validate=False)
    return config.load_one(level) if level else config


def remote_bucket(repo: Path, remote: str | None = None) -> tuple[str, str]:
    """(remote name, bucket name) of `remote`, or of the default remote, from the DVC config."""
    config = _dvc_config(repo)
    name = remote or config["core"].get("remote") or DEFAULT_REMOTE
    url = config["remote"].get(name, {}).get("url")
    if not url:
        raise BucketError(
            f"the DVC remote {name!r} is not configured; add it with `dvc remote add -d {name} gs://BUCKET`"
        )
    if not url.startswith("gs://") or not url[5:].split("/")[0]:
        raise BucketError(f"the DVC remote {name!r} points at {url}; the emulator serves only gs:// URLs")
    return name, url[5:].split("/")[0]


def _local_remote(repo: Path, remote: str) -> dict:
    return _dvc_config(repo, "local").get("remote", {}).get(remote, {})


def configure_remote(repo: Path, remote: str, endpoint: str) -> None:
    """Point `remote` at the emulator in `.dvc/config.local` (ignored by git), if not already."""
    local = _local_remote(repo, remote)
    if local.get("endpointurl") == endpoint and str(local.get("allow_anonymous_login")).lower() == "true":
        return
    run_dvc(["remote", "modify", "--local", remote, "endpointurl", endpoint], repo)
    run_dvc(["remote", "modify", "--local", remote, "allow_anonymous_login", "true"], repo)


def unconfigure_remote(repo: Path, remote: str, endpoint: str) -> bool:
    """Remove the emulator's endpoint from `.dvc/config.local`, unless it now points elsewhere."""
    if not (repo / ".dvc").is_dir():
        return False
    local = _local_remote(repo, remote)
    if local.get("endpointurl") != endpoint:
        return False
    for option in ("endpointurl", "allow_anonymous_login"):
        run_dvc(["remote", "modify", "--local", "--unset", remote, option], repo)
    return True


# --- the emulator process -------------------------------------------------------------------------


def read_state(state: Path) -> BucketState | None:
    path = _state_file(state)
    if not path.is_file():
        return None
    try:
        return BucketState(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise BucketError(f"{path} is unreadable ({exc}); delete it if no emulator is running") from None


def _process(state: BucketState) -> psutil.Process | None:
    """The recorded process if it is still the emulator that `start` launched, else None."""
    return launched_process(state.pid, state.create_time, ("gcp_storage_emulator", "gcp-storage-emulator"))


def running(state: Path) -> BucketState | None:
    """The recorded emulator if it is alive, else None."""
    recorded = read_state(state)
    return recorded if recorded and _process(recorded) else None


def _pick_port(port: int | None) -> int:
    if port is None and os.environ.get(PORT_ENV):
        try:
            port = int(os.environ[PORT_ENV])
        except ValueError:
            raise BucketError(f"{PORT_ENV} must be a port number; got {os.environ[PORT_ENV]!r}") from None
    if port is None:
        return free_port()
    if not 1 <= port <= 65535:
        raise BucketError(f"port must be from 1 to 65535; got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise BucketError(f"port {port} on {HOST} is in use; pick another ({PORT_ENV}) or leave it unset")
    return port


def _wait_ready(proc: subprocess.Popen, endpoint: str, log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-1500:].strip()
            raise BucketError(
                f"the emulator exited with code {proc.returncode}; its log ({log_file}):\n{tail}"
            )
        try:
            with urllib.request.urlopen(f"{endpoint}/storage/v1/b?project={PROJECT}", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers, which is all we wait for
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise BucketError(
        f"the emulator did not answer on {endpoint} within {READY_TIMEOUT_S:.0f} s; see {log_file}"
    )


def create_bucket(endpoint: str, bucket: str) -> bool:
    """Create `bucket` in the emulator unless it exists (kept on disk from an earlier run)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    if client.lookup_bucket(bucket) is not None:
        return False
    client.create_bucket(bucket)
    return True


def _terminate(proc: psutil.Process) -> None:
    """SIGTERM, then SIGKILL; a zombie counts as gone (its parent, not us, must reap it)."""
    for signal_it in (proc.terminate, proc.kill):
        with contextlib.suppress(psutil.NoSuchProcess):
            signal_it()
        deadline = time.monotonic() + STOP_TIMEOUT_S / 2
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return
            except psutil.NoSuchProcess:
                return
            with contextlib.suppress(psutil.TimeoutExpired):
                proc.wait(0.1)
    raise BucketError(f"the emulator (pid {proc.pid}) did not stop; end it with `kill -9 {proc.pid}`")


def start(
    repo: Path = Path("."), *, remote: str | None = None, state: Path | None = None, port: int | None = None
) -> BucketState:
    """Start the emulator (or reuse the running one), create the bucket and point the remote at it."""
    repo = Path(repo).resolve()
    state = state_dir(state).resolve()
    name, bucket = remote_bucket(repo, remote)
    current = running(state)
    if current:
        print(
            f"the bucket emulator is already running at {current.endpoint} (pid {current.pid}); not starting"
        )
        create_bucket(current.endpoint, bucket)
        configure_remote(repo, name, current.endpoint)
        return current

    data_dir = state / "bucket"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = state / "bucket.log"
    port = _pick_port(port)
    endpoint = f"http://{HOST}:{port}"
    print(f"starting gcp-storage-emulator on {endpoint} (objects in {data_dir}) ...")
    command = [sys.executable, "-m", "gcp_storage_emulator", "-d", str(data_dir), "start"]
    command += ["--host", HOST, "--port", str(port), "-q"]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    recorded = BucketState(
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        port=port,
        bucket=bucket,
        remote=name,
        repo=str(repo),
        data_dir=str(data_dir),
    )
    _state_file(state).write_text(json.dumps(asdict(recorded), indent=2) + "\n")
    try:
        _wait_ready(proc, endpoint, log_file)
        created = create_bucket(endpoint, bucket)
        configure_remote(repo, name, endpoint)
    except BaseException:
        # End the process through the handle we hold (no pid-reuse question can arise), then let stop()
        # clear the state file and the remote's endpoint.
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        stop(repo, state=state, quiet=True)
        raise
    print(
        f"bucket gs://{bucket} {'created' if created else 'found (kept from the last run)'}; DVC remote "
        f"'{name}' now uses {endpoint} (in .dvc/config.local). Stop it with `make bucket-stop`."
    )
    return recorded


def stop(repo: Path = Path("."), *, state: Path | None = None, quiet: bool = False) -> bool:
    """End the emulator that `start` recorded, and only that; return whether one was stopped."""
    say = (lambda _msg: None) if quiet else print
    state = state_dir(state).resolve()
    recorded = read_state(state)
    if recorded is None:
        say("the bucket emulator is not running (nothing recorded); nothing to stop")
        return False
    proc = _process(recorded)
    if proc is None:
        say(f"pid {recorded.pid} is no longer the emulator started here; leaving it alone")
    else:
        _terminate(proc)
        say(f"stopped the bucket emulator (pid {recorded.pid}); its objects stay in {recorded.data_dir}")
    for target in {Path(recorded.repo), Path(repo).resolve()}:
        if unconfigure_remote(target, recorded.remote, recorded.endpoint):
            say(f"removed the emulator endpoint from {target / '.dvc' / 'config.local'}")
    _state_file(state).unlink(missing_ok=True)
    return proc is not None


def status(*, state: Path | None = None) -> BucketState | None:
    current = running(state_dir(state).resolve())
    if current:
        print(
            f"running: {current.endpoint}, bucket gs://{current.bucket}, remote '{current.remote}', "
            f"pid {current.pid}, objects in {current.data_dir}"
        )
    else:
        print("not running; start it with `make bucket-start`")
    return current


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bucket", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--repo", type=Path, default=Path("."), help="the DVC repository (default: .)")
    parser.add_argument("--remote", help="DVC remote to point at the emulator (default: the default remote)")
    parser.add_argument(
        "--state-dir", type=Path, help=f"local state folder (default: ${STATE_ENV} or .orbit)"
    )
    parser.add_argument("--port", type=int, help=f"port to listen on (default: ${PORT_ENV} or a free port)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            start(args.repo, remote=args.remote, state=args.state_dir, port=args.port)
        elif args.command == "stop":
            stop(args.repo, state=args.state_dir)
        elif status(state=args.state_dir) is None:
            return 1
    except BucketError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
