"""Labelling fixtures: one real Label Studio per test session, and a stand-in for the model service.

Label Studio runs from `.venv-label` exactly as `make label` runs it, with its state in a temporary
folder and on a free port, so the tests never touch a developer's `.orbit/label-studio`. The model
service is a real HTTP server speaking `POST /predict_batch` (field `images`, one answer per image in
order) whose answer is known: the dominant colour of the image picks the class (red Mars, green
Uranus, blue Neptune), as in tests/serving; the adapter is tested against that contract, not against
TensorFlow.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from labeling import service
from labeling.client import LabelStudio
from local.net import free_port

CLASSES = ["Mars", "Uranus", "Neptune"]
COLOURS = {"Mars": (220, 40, 30), "Uranus": (40, 200, 60), "Neptune": (30, 50, 230)}
MODEL_TAG = "planet-classifier:testtag0001"
#: a state folder whose running Label Studio the tests may use instead of starting their own
REUSE_ENV = "ORBIT_TEST_LABEL_STATE"


def disc(colour: tuple[int, int, int], *, size: int = 40, seed: int = 0) -> bytes:
    """A JPEG of a coloured disc on black; `seed` shifts it a pixel so the bytes (and hash) differ."""
    yy, xx = np.mgrid[0:size, 0:size]
    centre = size / 2 + (seed % 5)
    inside = ((xx - centre) ** 2 + (yy - size / 2) ** 2) <= (size * 0.35) ** 2
    rgb = np.zeros((size, size, 3), dtype=np.uint8)
    rgb[inside] = colour
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def colour_answer(data: bytes) -> dict:
    """What the stand-in service answers for one image: softmax over the mean of each channel."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    logits = pixels.reshape(-1, 3).mean(axis=0) * 20.0
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return {
        "prediction": CLASSES[int(probs.argmax())],
        "probabilities": dict(zip(CLASSES, probs.tolist(), strict=True)),
    }


class ThreadedServer:
    """A uvicorn server for an ASGI app on a free loopback port, in a daemon thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"test server on {self.url} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ModelService(ThreadedServer):
    """The stand-in for the BentoML service; counts requests so tests can see batching."""

    def __init__(self) -> None:
        self.requests: list[int] = []  # images per /predict_batch request

        async def predict_batch(request: Request) -> JSONResponse:
            form = await request.form()
            images = [await f.read() for f in form.getlist("images")]
            self.requests.append(len(images))
            return JSONResponse([colour_answer(data) for data in images])

        super().__init__(Starlette(routes=[Route("/predict_batch", predict_batch, methods=["POST"])]))


@pytest.fixture(scope="session")
def model_service() -> Iterator[ModelService]:
    with ModelService() as running:
        yield running


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, service.ServerState]]:
    """A real Label Studio for the session: (state folder, server), started like `make label` starts it."""
    try:
        service.executable()
    except service.LabelStudioServiceError as exc:
        pytest.skip(f"{exc} (make test creates it)")
    reuse = os.environ.get(REUSE_ENV)
    if reuse and service.running(service.paths(reuse)):  # a developer's quick loop: not stopped afterwards
        yield Path(reuse), service.running(service.paths(reuse))
        return
    state = tmp_path_factory.mktemp("orbit-state")
    started = time.monotonic()
    server = service.start(state=state, port=free_port())
    print(f"Label Studio first start: {time.monotonic() - started:.1f} s")
    try:
        yield state, server
    finally:
        service.stop(state=state, quiet=True)


@pytest.fixture
def title(request: pytest.FixtureRequest) -> str:
    """A project title of this test alone (the session's Label Studio holds every test's project)."""
    return f"orbit test {request.node.name[5:33]} {uuid.uuid4().hex[:6]}"


@pytest.fixture
def ls(label_studio) -> Iterator[LabelStudio]:
    state, _ = label_studio
    with LabelStudio.local(state) as client:
        yield client
