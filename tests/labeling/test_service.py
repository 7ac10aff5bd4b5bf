"""Label Studio as a service: loopback only, secrets kept out of logs, restart keeps every annotation,
and stop ends only what start started."""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import psutil
import pytest

from labeling import service
from labeling.client import LabelStudio
from labeling.project import ensure_project
from tests.labeling.conftest import CLASSES


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(service.LabelStudioServiceError, match="in use"):
            service._pick_port(sock.getsockname()[1])


def test_stop_leaves_a_process_alone_that_is_not_the_label_studio_it_started(tmp_path):
    where = service.paths(tmp_path)
    where.base.mkdir(parents=True)
    me = psutil.Process()
    where.server.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time(), "port": 1}))
    assert service.stop(state=tmp_path) is False
    assert me.is_running() and not where.server.exists()


def test_missing_installation_says_which_command_installs_it(tmp_path, monkeypatch):
    monkeypatch.setenv(service.EXECUTABLE_ENV, str(tmp_path / "nowhere" / "label-studio"))
    with pytest.raises(service.LabelStudioServiceError, match="make label"):
        service.start(state=tmp_path)


@pytest.mark.slow
def test_it_listens_on_loopback_only_and_keeps_its_secrets_out_of_the_log(label_studio):
    state, server = label_studio
    where = service.paths(state)
    listening = {
        c.laddr.ip for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"
    }
    assert listening == {"127.0.0.1"}
    assert stat.S_IMODE(os.stat(where.credentials).st_mode) == 0o600
    creds = service.load_credentials(where)
    log = where.log.read_text(errors="replace")
    assert creds.token not in log and creds.password not in log
    assert service.start(state=state).pid == server.pid  # a second start reuses the running one


@pytest.mark.slow
def test_a_restart_keeps_every_annotation(label_studio, title, capsys):
    state, _ = label_studio
    with LabelStudio.local(state) as ls:
        project, _ = ensure_project(ls, CLASSES, title=title)
        ls.import_tasks(
            project["id"], [{"data": {"image": "/data/local-files/?d=media/x.jpg", "sha256": "x"}}]
        )
        [task] = ls.tasks(project["id"])
        choice = {
            "from_name": "body",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["Uranus"]},
        }
        ls.annotate(task["id"], [choice])
        port = service.running(service.paths(state)).port
    assert service.stop(state=state) is True
    started = time.monotonic()
    service.start(state=state, port=port)
    print(f"Label Studio restart: {time.monotonic() - started:.1f} s")
    with LabelStudio.local(state) as ls:
        [exported] = ls.export(project["id"])
    assert exported["annotations"][0]["result"][0]["value"]["choices"] == ["Uranus"]
