"""Label Studio as a local service: started on loopback from its own environment, stopped by identity.

    python -m labeling.service start|stop|status [--state-dir DIR] [--port P]

`start` runs `label-studio start` from `.venv-label` (its dependencies never enter `.venv`), bound to
127.0.0.1 with its SQLite database, media and log under `.orbit/label-studio/`. The first start creates
a headless admin user and an API token and keeps them in `credentials.json` (mode 0600); they are handed
to Label Studio through the environment, never on a command line or in a log. Restarting reuses the same
database, user and token, so every annotation is kept. `stop` ends only the process that `start`
recorded (same pid, same start time, and still Label Studio), like `local.bucket`.

Environment: ORBIT_STATE_DIR moves `.orbit/`, ORBIT_LABEL_PORT picks the port (default 8080),
ORBIT_LABEL_STUDIO the `label-studio` executable (default `.venv-label/bin/label-studio`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from local.processes import launched_process

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ROOT = Path(__file__).resolve().parents[1]
STATE_ENV = "ORBIT_STATE_DIR"
PORT_ENV = "ORBIT_LABEL_PORT"
EXECUTABLE_ENV = "ORBIT_LABEL_STUDIO"
USERNAME = "admin@orbit.local"
DATABASE = "label_studio.sqlite3"
#: The first start applies the database migrations: tens of seconds on two idle cores, minutes on busy ones.
READY_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 15.0
#: No telemetry, no update check, no error reporting to a third party, no sign-up page for strangers.
QUIET_ENV = {
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
}


class LabelStudioServiceError(RuntimeError):
    """Label Studio could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Paths:
    """Where the local Label Studio keeps everything: one folder, ignored by git."""

    base: Path

    @property
    def data(self) -> Path:  # SQLite database, uploads, exports (Label Studio's --data-dir)
        return self.base / "data"

    @property
    def files_root(self) -> Path:  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
        return self.base / "files"

    @property
    def media(self) -> Path:  # images served to the labelling page, named by content hash
        return self.files_root / "media"

    @property
    def credentials(self) -> Path:
        return self.base / "credentials.json"

    @property
    def server(self) -> Path:
        return self.base / "server.json"

    @property
    def log(self) -> Path:
        return self.base / "label-studio.log"


def paths(state: Path | str | None = None) -> Paths:
    base = Path(state or os.environ.get(STATE_ENV) or ROOT / ".orbit")
    return Paths((base / "label-studio").resolve())


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str
    #: Django's key; kept so that browser sessions survive a restart (Label Studio makes a new one otherwise)
    secret_key: str = ""


@dataclass(frozen=True)
class ServerState:
    """What `start` records, so `stop` ends exactly this process and clients find the URL."""

    pid: int
    create_time: float
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def load_credentials(where: Paths) -> Credentials:
    try:
        return Credentials(**json.loads(where.credentials.read_text()))
    except FileNotFoundError:
        raise LabelStudioServiceError(
            f"no Label Studio credentials at {where.credentials}; start Label Studio with `make label`"
        ) from None
    except (ValueError, TypeError) as exc:
        raise LabelStudioServiceError(
            f"{where.credentials} is unreadable ({exc}); delete {where.base} to start afresh (loses labels)"
        ) from None


def ensure_credentials(where: Paths) -> tuple[Credentials, bool]:
    """The admin's credentials, created once with random secrets in a file only its owner can read."""
    if where.credentials.exists():
        return load_credentials(where), False
    where.base.mkdir(parents=True, exist_ok=True)
    creds = Credentials(USERNAME, secrets.token_urlsafe(18), secrets.token_hex(20), secrets.token_urlsafe(40))
    fd = os.open(where.credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(creds), handle, indent=2)
    return creds, True


def read_state(where: Paths) -> ServerState | None:
    if not where.server.is_file():
        return None
    try:
        return ServerState(**json.loads(where.server.read_text()))
    except (ValueError, TypeError) as exc:
        raise LabelStudioServiceError(
            f"{where.server} is unreadable ({exc}); delete it if Label Studio is not running"
        ) from None


def _process(state: ServerState) -> psutil.Process | None:
    """The recorded process if it is still the Label Studio that `start` launched, else None."""
    return launched_process(state.pid, state.create_time, ("label-studio", "label_studio"))


def running(where: Paths) -> ServerState | None:
    recorded = read_state(where)
    return recorded if recorded and _process(recorded) else None


def migrated_template() -> Path:
    """An empty database migrated once when `.venv-label` was built (see the Makefile); copying it makes
    a first start as quick as a restart. Missing, Label Studio migrates on its first start itself."""
    return executable().parents[1] / "migrated" / DATABASE


def prepare_template() -> Path:
    """Migrate an empty database once, into `.venv-label/migrated/` (`make` runs this after installing).

    `label-studio version` applies the migrations and exits without serving; the database holds no user,
    token or secret, only the schema.
    """
    target = migrated_template()
    work = target.parent.with_name("migrating")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, **QUIET_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(work), "SECRET_KEY": "unused"}
    done = subprocess.run(
        [str(executable()), "version", "--data-dir", str(work)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not (work / DATABASE).is_file():
        raise LabelStudioServiceError(
            f"migrating an empty Label Studio database failed:\n{done.stderr[-2000:]}"
        )
    target.parent.mkdir(exist_ok=True)
    (work / DATABASE).replace(target)
    shutil.rmtree(work)
    return target


def executable() -> Path:
    found = Path(os.environ.get(EXECUTABLE_ENV) or ROOT / ".venv-label" / "bin" / "label-studio")
    if not found.is_file():
        raise LabelStudioServiceError(
            f"Label Studio is not installed at {found}; `make label` creates .venv-label with it"
        )
    return found


def _pick_port(port: int | None) -> int:
    if port is None:
        raw = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
        try:
            port = int(raw)
        except ValueError:
            raise LabelStudioServiceError(f"{PORT_ENV} must be a port number; got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise LabelStudioServiceError(f"port must be from 1 to 65535; got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex((HOST, port)) == 0:
            raise LabelStudioServiceError(f"port {port} on {HOST} is in use; pick another with {PORT_ENV}=P")
    return port


def _environment(where: Paths, creds: Credentials) -> dict[str, str]:
    return {
        **os.environ,
        **QUIET_ENV,
        "LABEL_STUDIO_BASE_DATA_DIR": str(where.data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(where.files_root),
        # The ML backend (labeling.backend) listens on 127.0.0.1, which Label Studio refuses by default
        # as an SSRF guard. Label Studio itself is bound to loopback and only its admin adds backends.
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "LABEL_STUDIO_USERNAME": creds.username,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        **({"SECRET_KEY": creds.secret_key} if creds.secret_key else {}),
    }


def _wait_ready(proc: subprocess.Popen, url: str, token: str, log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:].strip()
            raise LabelStudioServiceError(
                f"Label Studio exited with code {proc.returncode}; log {log_file}:\n{tail}"
            )
        with contextlib.suppress(httpx.TransportError):
            # The token check also waits for the admin user, created after the migrations.
            answer = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"})
            if answer.status_code == 200:
                return
        time.sleep(0.5)
    raise LabelStudioServiceError(
        f"Label Studio did not answer on {url} within {timeout:.0f} s; see {log_file}"
    )


def _terminate(proc: psutil.Process) -> None:
    """SIGTERM to its process group (it was started in a session of its own), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(psutil.TimeoutExpired, psutil.NoSuchProcess):
            proc.wait(STOP_TIMEOUT_S / 2)
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return
    raise LabelStudioServiceError(
        f"Label Studio (pid {proc.pid}) did not stop; end it with `kill -9 {proc.pid}`"
    )


def start(
    *, state: Path | str | None = None, port: int | None = None, ready_timeout: float = READY_TIMEOUT_S
) -> ServerState:
    """Start Label Studio (or reuse the one running from this state folder) and wait until it answers."""
    where = paths(state)
    current = running(where)
    if current:
        print(f"Label Studio is already running at {current.url} (pid {current.pid}); not starting")
        return current
    command = [str(executable()), "start", "--data-dir", str(where.data), "--no-browser"]
    port = _pick_port(port)
    creds, created = ensure_credentials(where)
    where.base.chmod(0o700)  # the database, the media and the credentials are the owner's alone
    for folder in (where.data, where.media):
        folder.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    database, template = where.data / DATABASE, migrated_template()
    note = ""
    if not database.exists():
        if template.is_file():
            shutil.copyfile(template, database)
            note = ", first start: database copied from the migrated template"
        else:
            note = ", first start: migrating the database, half a minute or more"
    print(f"starting Label Studio on {url} (data in {where.base}{note})")
    command += ["--internal-host", HOST, "--port", str(port), "--host", url]
    started = time.monotonic()
    with open(where.log, "ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=where.base,
            env=_environment(where, creds),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    recorded = ServerState(pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), port=port)
    where.server.write_text(json.dumps(asdict(recorded), indent=2) + "\n")
    try:
        _wait_ready(proc, url, creds.token, where.log, ready_timeout)
    except BaseException:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
        where.server.unlink(missing_ok=True)
        raise
    print(f"Label Studio is ready at {url} after {time.monotonic() - started:.1f} s (pid {proc.pid})")
    print(f"  user:  {creds.username}" + (" (created now)" if created else ""))
    print(f"  password and API token: {where.credentials} (readable by you only)")
    print("  stop it with `make label-stop`; annotations stay in the data folder")
    return recorded


def stop(*, state: Path | str | None = None, quiet: bool = False) -> bool:
    """End the Label Studio that `start` recorded, and only that; return whether one was stopped."""
    say = (lambda _msg: None) if quiet else print
    where = paths(state)
    recorded = read_state(where)
    if recorded is None:
        say("Label Studio is not running (nothing recorded); nothing to stop")
        return False
    proc = _process(recorded)
    if proc is None:
        say(f"pid {recorded.pid} is no longer the Label Studio started here; leaving it alone")
    else:
        _terminate(proc)
        say(f"stopped Label Studio (pid {recorded.pid}); its data stays in {where.base}")
    where.server.unlink(missing_ok=True)
    return proc is not None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.service", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "template"))
    parser.add_argument(
        "--state-dir", type=Path, help=f"local state folder (default: ${STATE_ENV} or .orbit)"
    )
    parser.add_argument("--port", type=int, help=f"port (default: ${PORT_ENV} or {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            start(state=args.state_dir, port=args.port)
        elif args.command == "stop":
            stop(state=args.state_dir)
        elif args.command == "template":
            started = time.monotonic()
            print(
                f"migrated an empty database into {prepare_template()} in {time.monotonic() - started:.0f} s"
            )
        else:
            current = running(paths(args.state_dir))
            print(f"running at {current.url} (pid {current.pid})" if current else "not running")
            return 0 if current else 1
    except LabelStudioServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
