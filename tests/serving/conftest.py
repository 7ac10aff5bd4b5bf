"""Serving fixtures: a tiny model in a temporary BentoML store, the app in-process, a real server.

The model is a 1x1 identity convolution, global average pooling and a dense layer whose weights are set by
hand, so it needs no training and its answer is known: the dominant colour of the image picks the class
(red -> Mars, green -> Uranus, blue -> Neptune).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from local.server import ServerError, running_server
from tests.conftest import REPO_ROOT

CLASSES = ["Mars", "Uranus", "Neptune"]  # red, green, blue
IMAGE_SIZE = 32
COLOURS = {"Mars": (220, 40, 30), "Uranus": (40, 200, 60), "Neptune": (30, 50, 230)}


def disc(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Image.Image:
    """A coloured disc on black, like the dataset's renders; transparent outside the disc in RGBA."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) <= (min(w, h) * 0.4) ** 2
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[inside] = colour
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, np.where(inside, 255, 0).astype(np.uint8)]), "RGBA")
    return Image.fromarray(rgb, "RGB").convert(mode)


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def corrupt_exif_jpeg(colour: tuple[int, int, int]) -> bytes:
    """A JPEG that decodes but whose EXIF makes Pillow's `exif_transpose` raise `struct.error`.

    The orientation tag asks for a rotation, so Pillow rewrites the EXIF block, and tag 0x0156 (a SHORT
    tag) holds an ASCII string it cannot pack back: a real mutation found by fuzzing the service.
    """

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack(">HHI", tag, kind, count) + value

    exif = (
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x02"
        + entry(0x0156, 2, 4, b"cam\x00")  # ASCII where the tag wants SHORT
        + entry(0x0112, 3, 1, b"\x00\x06\x00\x00")  # orientation 6: rotate
        + b"\x00" * 4
    )
    buffer = io.BytesIO()
    disc(colour).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def known_discs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels): `n` discs per class of varied size, shape and shade, preprocessed like uploads."""
    from ml.preprocess import PreprocessConfig, preprocess

    rng = np.random.default_rng(seed)
    config = PreprocessConfig(IMAGE_SIZE, "rgb")
    pixels, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(n):
            colour = tuple(int(c) for c in np.clip(np.add(COLOURS[name], rng.integers(-25, 26, 3)), 0, 255))
            size = (int(rng.integers(32, 72)), int(rng.integers(32, 72)))
            pixels.append(preprocess(disc(colour, size=size), config))
            labels.append(label)
    return np.stack(pixels), np.array(labels)


def build_model_dir(folder: Path) -> Path:
    """The bundle training writes: model.keras, its ONNX export, the novelty model and meta.json, through
    ml.bundle/ml.export/ml.novelty. The novelty model is fitted on discs like the ones the tests send."""
    import keras

    from ml.bundle import NOVELTY_FILE, BundleMeta, NoveltySpec, write_bundle_meta
    from ml.export import export_onnx, runtime_versions
    from ml.inference import Predictor
    from ml.novelty import NoveltyModel
    from ml.params import NoveltyParams

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="identity")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    dense = keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")
    model = keras.Model(inputs, dense(pooled))
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3)])
    dense.set_weights([np.eye(3, dtype=np.float32) * 20.0, np.zeros(3, dtype=np.float32)])
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    width = export_onnx(model, folder / "model.onnx")
    meta = BundleMeta(classes=CLASSES, preprocess={"image_size": IMAGE_SIZE, "color_mode": "rgb"}, params={},
                      versions=runtime_versions(), n_train=0, embedding_dim=width)
    predictor = Predictor.open(folder / "model.onnx", meta)
    train_x, train_y = known_discs(20, seed=1)
    val_x, _ = known_discs(10, seed=2)
    novelty = NoveltyModel.fit(predictor.run(train_x)[1], train_y, predictor.run(val_x)[1],
                               params=NoveltyParams())
    novelty.save(folder / NOVELTY_FILE)
    write_bundle_meta(folder, meta.model_copy(update={"novelty": NoveltySpec(**novelty.describe())}))
    return folder


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory) -> Iterator[Path]:
    """A private BentoML store for the whole session (models and bentos never touch the user's store)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    home = tmp_path_factory.mktemp("bentoml_home")
    (home / "tmp").mkdir()  # BentoML's CLI creates it on start; the Python API assumes it exists
    saved = {key: os.environ.get(key) for key in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")}
    os.environ.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="true")
    BentoMLContainer.bentoml_home.set(str(home))
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def stored_tag(bentoml_home: Path, model_dir: Path, tmp_path_factory) -> str:
    import bentoml

    from serving.package import package

    tag, created = package(model_dir, tmp_path_factory.mktemp("not_a_repo"))
    assert created
    assert Path(bentoml.models.get(tag).path).is_relative_to(bentoml_home), "BentoML store not redirected"
    return tag


@pytest.fixture(scope="session")
def keras_model(model_dir: Path):
    import keras

    return keras.models.load_model(model_dir / "model.keras", compile=False)


@pytest.fixture(scope="session")
def client(stored_tag: str) -> Iterator[httpx.Client]:
    """The service's ASGI app in this process, start-up and shut-down hooks included."""
    from starlette.testclient import TestClient

    saved = os.environ.get("ORBIT_MODEL_TAG")
    os.environ["ORBIT_MODEL_TAG"] = stored_tag  # read once, when serving.service is first imported
    try:
        from serving import service
    finally:
        if saved is None:
            os.environ.pop("ORBIT_MODEL_TAG")
        else:
            os.environ["ORBIT_MODEL_TAG"] = saved

    assert service.SETTINGS.model_tag == stored_tag, "serving.service was imported before this fixture ran"
    with TestClient(service.PlanetClassifier.to_asgi(), raise_server_exceptions=False) as test_client:
        yield test_client


#: Limits lowered for the real server so the oversized cases stay small and fast.
SERVER_MAX_UPLOAD = 200_000
SERVER_MAX_BATCH_FILES = 4


@pytest.fixture(scope="session")
def server_url(stored_tag: str, bentoml_home: Path, tmp_path_factory) -> Iterator[str]:
    """`bentoml serve` on a free loopback port, started for the session and stopped with its workers; one
    worker per CPU as the GKE Deployment runs it, so the HTTP tests see answers and /metrics of several
    workers wherever the machine has more than one core."""
    env = {
        "ORBIT_WORKERS": "cpu_count",
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "ORBIT_MODEL_TAG": stored_tag,
        "ORBIT_MAX_UPLOAD_BYTES": str(SERVER_MAX_UPLOAD),
        "ORBIT_MAX_BATCH_FILES": str(SERVER_MAX_BATCH_FILES),
    }
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    try:
        with running_server(cwd=REPO_ROOT, env=env, log_path=log_path, ready_timeout=90) as server:
            yield server.url
    except ServerError as exc:
        pytest.fail(str(exc))
