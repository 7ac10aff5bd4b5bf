"""ci.smoke against a tiny HTTP server on 127.0.0.1 that answers well, wrongly, or not yet."""

from __future__ import annotations

import json
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
    """A scripted /predict: each request pops the next (status, body) answer; the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, object]] = [(200, good_answer())]
        self.uploads: list[bytes] = []
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


def test_cli(endpoint: Endpoint, images: Path, capsys):
    assert smoke.main(["--url", endpoint.url, "--images", str(images), "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert "PASS: 3 images" in out and "1/3 as labelled" in out
    endpoint.answers = [(200, {"prediction": "Mars"})]
    assert smoke.main(["--url", endpoint.url, "--image", str(images / "Mars" / "Mars_0.jpg")]) == 1
    assert "FAIL" in capsys.readouterr().err
