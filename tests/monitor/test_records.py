"""Records: compact float16 embeddings that read back equal, image statistics that see dark and blur, and
reference records made by any Predictor-shaped object in batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ml.preprocess import PreprocessConfig, preprocess
from monitor.records import PredictionRecord, image_stats, split_tag, upload_info
from monitor.reference import Records, ReferenceError, build_reference, records_for_images
from tests.conftest import image_bytes, make_image
from tests.monitor.support import MODEL, synthetic_records


def test_record_json_round_trip_keeps_float16_embedding_and_is_compact():
    rec = synthetic_records(1, seed=1, dim=128)[0]
    text = rec.model_dump_json()
    assert PredictionRecord.model_validate_json(text) == rec
    assert isinstance(json.loads(text)["embedding"], str) and len(text) < 1200
    assert np.array_equal(np.asarray(rec.embedding), np.asarray(rec.embedding, np.float16).astype(np.float64))
    with pytest.raises(ValueError, match="extra"):
        PredictionRecord.model_validate({**rec.model_dump(), "surprise": 1})


def test_image_stats_see_darker_and_blurred_images():
    noise = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(noise, "RGB")  # texture, so that blur has something to smooth
    config = PreprocessConfig(image_size=32)
    plain = image_stats(preprocess(image, config))
    dark = image_stats(preprocess(Image.eval(image, lambda v: int(v * 0.7)), config))
    blurred = image_stats(preprocess(image.filter(ImageFilter.GaussianBlur(3)), config))
    assert all(d < p for d, p in zip(dark["channel_mean"], plain["channel_mean"], strict=True))
    assert blurred["sharpness"] < 0.8 * plain["sharpness"]
    pixels = preprocess(image, config)
    assert np.allclose(plain["channel_mean"], pixels.mean(axis=(0, 1)), atol=1e-6)
    assert np.allclose(plain["channel_std"], pixels.std(axis=(0, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="H, W, C"):
        image_stats(np.zeros((4, 4)))


def test_upload_info_and_tags():
    data = image_bytes(make_image(mode="RGBA", size=(30, 20)), "PNG")
    info = upload_info(data)
    assert (info["width"], info["height"], info["mode"]) == (30, 20, "RGBA") and len(info["sha256"]) == 64
    assert split_tag("planet-classifier:abc") == ("planet-classifier", "abc")
    assert split_tag("planet-classifier") == ("planet-classifier", "latest")


class FakePredictor:
    """Predictor's shape: counts its calls, so the test sees one run per batch."""

    classes = ["Earth", "Mars"]
    preprocess = PreprocessConfig(image_size=16)

    def __init__(self):
        self.batches = []

    def run(self, x):
        self.batches.append(len(x))
        red = x[..., 0].mean(axis=(1, 2))
        probabilities = np.stack([red, 1 - red], axis=1).astype(np.float32)
        return probabilities, np.repeat(red[:, None], 4, axis=1).astype(np.float32)


class HalfNovelty:
    threshold = 0.5

    def score(self, embeddings, probabilities=None):
        return embeddings[:, 0]


def test_records_for_images_runs_the_predictor_in_batches(tmp_path):
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        make_image(seed=i).save(path)
        paths.append(path)
    predictor = FakePredictor()
    records = records_for_images(
        predictor, paths, HalfNovelty(), model=MODEL, data_version="d", batch_size=3, time=datetime.now(UTC)
    )
    assert predictor.batches == [3, 3, 1]
    assert [r.request_id for r in records] == [f"file:{i}.png" for i in range(7)]
    for rec in records:
        assert rec.unknown == (rec.novelty > 0.5) and rec.model == MODEL and len(rec.embedding) == 4
        assert rec.prediction == (
            "Earth" if rec.top_probability == rec.embedding[0] or rec.novelty >= 0.5 else "Mars"
        )


def test_reference_saves_loads_and_refuses_mixed_or_tiny_input(tmp_path):
    records = synthetic_records(60, seed=2)
    reference = build_reference(records)
    reference.save(tmp_path / "ref.npz")
    loaded = Records.load(tmp_path / "ref.npz")
    assert loaded.model == MODEL and np.array_equal(loaded.embeddings, reference.embeddings)
    assert list(loaded.predictions) == [r.prediction for r in records]
    with pytest.raises(ReferenceError, match="at least"):
        build_reference(records[:10])
    with pytest.raises(ReferenceError, match="several models"):
        Records.from_records(records[:5] + synthetic_records(5, seed=3, model="planet-classifier:v2"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ReferenceError, match="not a reference file"):
        Records.load(tmp_path / "bad.npz")


def test_a_time_without_zone_is_utc():
    rec = synthetic_records(1, seed=4)[0]
    naive = PredictionRecord.model_validate({**rec.model_dump(), "time": datetime(2026, 11, 30, 12, 0)})
    assert naive.time == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
