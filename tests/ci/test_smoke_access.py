"""ci.smoke reaches the service the way the stack's access mode allows (docs/edge.md).

`internal` goes through `kubectl port-forward`: a fake kubectl (a small script) prints what the real one
prints and points at a local test endpoint, so the whole path runs without a cluster.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ci import smoke
from ci.smoke import SmokeError
from tests.ci.test_smoke import CLASSES, Endpoint
from tests.conftest import image_bytes, make_image

FAKE_KUBECTL = """#!{python}
import json, os, sys, time
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "pid": os.getpid()}}, f)
if {fail!r}:
    print("error: unable to forward port: no pods", file=sys.stderr)
    sys.exit(1)
print("Forwarding from 127.0.0.1:{port} -> 3000", flush=True)
time.sleep(120)
"""


def fake_kubectl(tmp_path: Path, port: int, fail: bool = False) -> tuple[Path, Path]:
    record = tmp_path / "kubectl.json"
    script = tmp_path / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable, record=str(record), fail=fail, port=port))
    script.chmod(0o755)
    return script, record


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def endpoint():
    with Endpoint() as running:
        running.right = True
        yield running


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}_0.jpg").write_bytes(image_bytes(make_image(seed=index)))
    return root


def test_internal_mode_posts_through_kubectl_port_forward_and_stops_it(tmp_path, endpoint, images):
    port = int(endpoint.url.rsplit(":", 1)[1])
    kubectl, record = fake_kubectl(tmp_path, port)
    with smoke.port_forward(kubectl=str(kubectl)) as url:
        assert url == f"http://127.0.0.1:{port}"
        settings = smoke.Settings(url=url, classes=CLASSES, timeout=5)
        outcomes = smoke.run(settings, smoke.pick_images(images, 1))
    assert [o.correct for o in outcomes] == [True, True, True]
    called = json.loads(record.read_text())
    assert called["argv"] == ["port-forward", "--namespace", "serving", "--address", "127.0.0.1",
                              "service/planet-classifier", ":80"]
    assert not alive(called["pid"])  # the forward ends with the test


def test_a_port_forward_that_does_not_start_says_how_to_point_kubectl_at_the_cluster(tmp_path):
    kubectl, _ = fake_kubectl(tmp_path, 1, fail=True)
    with pytest.raises(SmokeError, match="no pods.*get-credentials"):
        with smoke.port_forward(kubectl=str(kubectl)):
            pass
    with pytest.raises(SmokeError, match="not found"):
        with smoke.port_forward(kubectl=str(tmp_path / "no-kubectl")):
            pass


def test_the_cli_uses_the_access_mode(tmp_path, endpoint, images, monkeypatch, capsys):
    port = int(endpoint.url.rsplit(":", 1)[1])
    kubectl, record = fake_kubectl(tmp_path, port)
    real = smoke.port_forward
    monkeypatch.setattr(smoke, "port_forward", lambda: real(kubectl=str(kubectl)))
    base = ["--images", str(images), "--timeout", "5", "--min-images", "3", "--min-accuracy", "0.9"]
    in_cluster = "http://planet-classifier.serving.svc.cluster.local"
    assert smoke.main(["--url", in_cluster, "--access", "internal", *base]) == 0
    assert "PASS: 3 images" in capsys.readouterr().out
    assert record.is_file()


def test_iap_mode_sends_the_id_token_and_refuses_to_run_without_one(monkeypatch, endpoint, images, capsys):
    monkeypatch.setenv("SMOKE_TOKEN", "eyJ.token.sig")
    with smoke.reach("iap", "https://planets.example.org", "SMOKE_TOKEN") as (url, headers):
        assert (url, headers) == ("https://planets.example.org", {"Authorization": "Bearer eyJ.token.sig"})
    with smoke.reach("public", "https://planets.example.org") as (url, headers):
        assert headers == {}
    monkeypatch.delenv(smoke.TOKEN_ENV, raising=False)
    args = ["--url", endpoint.url, "--access", "iap", "--images", str(images), "--min-images", "3"]
    assert smoke.main(args) == 1
    err = capsys.readouterr().err
    assert f"${smoke.TOKEN_ENV}" in err and "orbit:iapMembers" in err
    assert endpoint.uploads == []  # nothing was sent without the token
