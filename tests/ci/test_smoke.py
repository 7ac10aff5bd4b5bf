"""ci.smoke against a tiny HTTP server on 127.0.0.1 that answers well, wrongly, or not yet."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ci import smoke
from ci.smoke import Settings, SmokeError
from tests.conftest import image_bytes, make_image

CLASSES = ["Earth", "Mars", "Saturn"]


def good_answer(label: str = "Mars") -> dict:
    probabilities = dict.fromkeys(CLASSES, 0.05)
    probabilities[label] = 0.9
    return {"prediction": label, "probabilities": probabilities}


class Endpoint:
    """A scripted /predict: each request pops the next (status, body) answer; the last one repeats.

    By default it answers every image with the same class (Mars), like a model that learnt nothing; with
    `right=True` it answers the class in the uploaded file's name (Earth_0.jpg -> Earth), like a good one.
    """

    def __init__(self) -> None:
        self.answers: list[tuple[int, object]] = [(200, good_answer())]
        self.uploads: list[bytes] = []
        self.right = False
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if self.path != "/predict":
                    self.send_response(404)
                    self.end_headers()
                    return
                endpoint.uploads.append(body)
                status, payload = (
                    endpoint.answers.pop(0) if len(endpoint.answers) > 1 else endpoint.answers[0]
                )
                named = re.search(rb'filename="([A-Za-z]+)_', body)
                if endpoint.right and named:
                    status, payload = 200, good_answer(named.group(1).decode())
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as running:
        yield running


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A data/raw-like folder: <Class>/*.jpg, two images per class."""
    root = tmp_path / "raw"
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k in range(2):
            (root / name / f"{name}_{k}.jpg").write_bytes(image_bytes(make_image(seed=index * 10 + k)))
    return root


class FakeClock:
    """Time that only moves when the code under test sleeps: retries without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(endpoint: Endpoint, images: Path, timeout: float = 60.0, clock: FakeClock | None = None):
    clock = clock or FakeClock()
    picked = smoke.pick_images(images, per_class=1)
    settings = Settings(url=endpoint.url, classes=CLASSES, timeout=timeout, request_timeout=5)
    return smoke.run(settings, picked, clock=clock, sleep=clock.sleep)


def test_healthy_endpoint_passes_with_one_real_upload_per_class(endpoint: Endpoint, images: Path):
    outcomes = run(endpoint, images)
    assert [o.image.name for o in outcomes] == ["Earth_0.jpg", "Mars_0.jpg", "Saturn_0.jpg"]
    assert [o.correct for o in outcomes] == [False, True, False]
    assert len(endpoint.uploads) == 3
    assert b'name="image"; filename="Earth_0.jpg"' in endpoint.uploads[0]
    assert (images / "Earth" / "Earth_0.jpg").read_bytes() in endpoint.uploads[0]


def test_not_ready_then_ready_is_retried_with_backoff(endpoint: Endpoint, images: Path):
    endpoint.answers = [(503, {"error": "no healthy upstream"}), (502, b"bad gateway"), (200, good_answer())]
    clock = FakeClock()
    outcomes = run(endpoint, images, clock=clock)
    assert outcomes[0].attempts == 3
    assert clock.sleeps == [2.0, 4.0]


@pytest.mark.parametrize(
    ("status", "payload", "message"),
    [
        (
            200,
            {"prediction": "Pluto", "probabilities": {**dict.fromkeys(CLASSES, 0.0), "Pluto": 1.0}},
            "'Pluto', which is not one of the classes",
        ),
        (200, {"prediction": "Mars", "probabilities": dict.fromkeys(CLASSES, 0.5)}, "sum to 1.500000"),
        (200, {"label": "Mars", "scores": {}}, "lacks 'prediction' and 'probabilities'"),
        (
            200,
            {"prediction": "Earth", "probabilities": good_answer("Mars")["probabilities"]},
            "not the most probable class",
        ),
        (200, {"prediction": "Mars", "probabilities": {"Mars": 1.0}}, "missing: \\['Earth', 'Saturn'\\]"),
        (200, b"<html>ok</html>", "not JSON"),
        (400, {"error": "not an image"}, "HTTP 400"),
    ],
)
def test_wrong_answers_fail_at_once(endpoint: Endpoint, images: Path, status, payload, message):
    endpoint.answers = [(status, payload)]
    clock = FakeClock()
    with pytest.raises(SmokeError, match=message):
        run(endpoint, images, clock=clock)
    assert clock.sleeps == []  # the service is up and wrong: no point waiting
    assert len(endpoint.uploads) == 1


def test_endpoint_that_never_becomes_ready_fails_within_the_timeout(endpoint: Endpoint, images: Path):
    endpoint.answers = [(503, {"error": "starting"})]
    clock = FakeClock()
    with pytest.raises(SmokeError, match=r"did not answer within 20 s .*last: HTTP 503"):
        run(endpoint, images, timeout=20, clock=clock)
    assert sum(clock.sleeps) == pytest.approx(20)
    assert max(clock.sleeps) <= 30


def test_refused_connection_is_retried_then_fails(images: Path):
    with Endpoint() as closed:
        url = closed.url
    clock = FakeClock()
    settings = Settings(url=url, classes=CLASSES, timeout=5, request_timeout=2)
    with pytest.raises(SmokeError, match="ConnectError"):
        smoke.run(settings, smoke.pick_images(images, 1), clock=clock, sleep=clock.sleep)
    assert clock.sleeps  # it did retry


def test_bad_inputs_are_reported_before_any_request(tmp_path: Path, endpoint: Endpoint):
    not_image = tmp_path / "planet.jpg"
    not_image.write_text("this is text")
    with pytest.raises(SmokeError, match="not a readable image"):
        smoke.run(Settings(url=endpoint.url), [(not_image, None)])
    with pytest.raises(SmokeError, match="dvc pull"):
        smoke.pick_images(tmp_path / "missing", 1)
    with pytest.raises(SmokeError, match="must start with http"):
        smoke.run(Settings(url="planets.example.org"), [])
    assert endpoint.uploads == []


@pytest.fixture
def gate_at_90(tmp_path: Path, monkeypatch) -> Path:
    """A working directory whose params.yaml sets gate.min_value 0.9, the default --params."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text("gate:\n  min_value: 0.9\n")
    monkeypatch.chdir(work)
    return work


def test_cli(endpoint: Endpoint, images: Path, gate_at_90: Path, capsys):
    endpoint.right = True
    args = ["--url", endpoint.url, "--images", str(images), "--timeout", "5", "--min-images", "3"]
    assert smoke.main(args) == 0
    out = capsys.readouterr().out
    assert "PASS: 3 images" in out
    assert "3/3 as labelled (100%; minimum 90%, gate.min_value of params.yaml)" in out
    endpoint.right = False
    endpoint.answers = [(200, {"prediction": "Mars"})]
    assert smoke.main(["--url", endpoint.url, "--image", str(images / "Mars" / "Mars_0.jpg")]) == 1
    assert "FAIL" in capsys.readouterr().err


def test_a_model_that_answers_one_class_to_everything_fails(
    endpoint: Endpoint, images: Path, gate_at_90: Path, capsys
):
    """Well-formed answers are not enough: the endpoint (a real HTTP server) always says Mars."""
    args = ["--url", endpoint.url, "--images", str(images), "--timeout", "5", "--min-images", "3"]
    assert smoke.main(args) == 1
    err = capsys.readouterr().err
    assert "FAIL: only 1/3 as labelled (33%; minimum 90%, gate.min_value of params.yaml)" in err
    assert "it answered 'Mars' to every image" in err
    assert "Earth_0.jpg: Mars, not Earth" in err
    assert len(endpoint.uploads) == 3  # every image was asked: the verdict is over all of them


def test_the_threshold_comes_from_params_yaml_or_the_flag(endpoint: Endpoint, images: Path, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("gate:\n  min_value: 0.3\n")
    args = ["--url", endpoint.url, "--images", str(images), "--timeout", "5", "--min-images", "3"]
    assert smoke.main([*args, "--params", str(params)]) == 0
    assert f"1/3 as labelled (33%; minimum 30%, gate.min_value of {params})" in capsys.readouterr().out
    assert smoke.main([*args, "--params", str(params), "--min-accuracy", "0.5"]) == 1
    assert "minimum 50%, --min-accuracy" in capsys.readouterr().err
    assert smoke.main([*args, "--min-accuracy", "1.5"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err
    params.write_text("gate:\n  min_value: high\n")
    assert smoke.main([*args, "--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "gate.min_value" in err and "--min-accuracy" in err


def test_too_few_images_fail_before_any_request(endpoint: Endpoint, images: Path, gate_at_90: Path, capsys):
    endpoint.right = True
    assert smoke.main(["--url", endpoint.url, "--images", str(images), "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "only 3 images" in err and "need at least 10 (--min-images)" in err
    assert endpoint.uploads == []
    args = ["--url", endpoint.url, "--images", str(images), "--per-class", "2", "--min-images", "6"]
    assert smoke.main(args) == 0  # two per class: 6 images, all right


def test_unlabelled_images_are_answered_but_not_scored(endpoint: Endpoint, images: Path, capsys):
    assert smoke.main(["--url", endpoint.url, "--image", str(images / "Earth" / "Earth_0.jpg")]) == 0
    assert "not scored" in capsys.readouterr().out
