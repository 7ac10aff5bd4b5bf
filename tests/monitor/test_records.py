"""Records: compact float16 embeddings that read back equal, image statistics that see dark and blur, the
service's pre-encoded lines that read back as the record of their inputs, lines written by earlier versions
that still load, and reference records made by any Predictor-shaped object in batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ml.preprocess import PreprocessConfig, preprocess
from monitor.records import (
    LogEntry,
    PredictionRecord,
    image_stats,
    image_stats_batch,
    make_record,
    observe_batch,
    split_tag,
    upload_info,
)
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


#: A line as the log wrote it before the service encoded records per batch (pydantic's model_dump_json).
OLD_LINE = (
    '{"time":"2026-11-30T12:00:01.250000Z","request_id":"abc-1","model":"planet-classifier:v1",'
    '"data_version":"d1","prediction":"Mars","top_probability":0.75,"novelty":2.5,"unknown":true,"width":40,'
    '"height":30,"mode":"RGBA","channel_mean":[0.5388511484488845,0.5062452713027596,0.45498862862586975],'
    '"channel_std":[0.29375231476325847,0.2831818793921739,0.29176081322440434],"sharpness":0.3447571396827698,'
    '"embedding":"ADgAvQBCGRQ=","sha256":"abababababababababababababababababababababababababababababababab",'
    '"image_object":"monitoring/images/x.png"}'
)


def test_a_line_written_by_the_earlier_writer_still_loads():
    rec = PredictionRecord.model_validate_json(OLD_LINE)
    assert rec.time == datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC)
    assert rec.embedding == [0.5, -1.25, 3.0, float(np.float16(1e-3))]
    assert (rec.prediction, rec.unknown, rec.width, rec.mode) == ("Mars", True, 40, "RGBA")
    assert rec.image_object == "monitoring/images/x.png" and rec.sha256 == "ab" * 32


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(3), n).astype(np.float32)
    return {
        "classes": ['Ea"rth', "Mars", "Planète 9"],  # a quote and non-ASCII: the line stays valid JSON
        "probabilities": probabilities,
        "embeddings": rng.normal(0, 3, (n, 16)).astype(np.float32),
        "novelty": rng.normal(0, 5, n),
        "unknown": rng.random(n) < 0.5,
        "pixels": rng.random((n, 8, 6, 3), dtype=np.float32),
        "uploads": [
            {"width": 40 + i, "height": 30, "mode": ("RGB", "L", "RGBA")[i % 3], "sha256": f"{i:064x}"}
            for i in range(n)
        ],
    }


def test_the_service_line_reads_back_as_the_record_of_its_inputs():
    """observe_batch + LogEntry (the write path, no validation) against a plain numpy description."""
    batch = _batch(6, seed=1)
    when = datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=UTC)
    observations = observe_batch(**batch)
    for i, observation in enumerate(observations):
        line = LogEntry(when, f'req "{i}"\n', MODEL, "d1", observation).json_line()
        assert list(json.loads(line)) == list(PredictionRecord.model_fields), "same fields, same order"
        rec = PredictionRecord.model_validate_json(line)
        probabilities, pixels = batch["probabilities"][i], batch["pixels"][i].astype(np.float64)
        assert rec.time == when and rec.request_id == f'req "{i}"\n' and rec.model == MODEL
        assert rec.prediction == batch["classes"][int(np.argmax(probabilities))]
        assert rec.top_probability == float(probabilities.max())
        assert rec.novelty == float(batch["novelty"][i]) and rec.unknown == bool(batch["unknown"][i])
        assert rec.unknown == observation.unknown and rec.image_object is None
        assert (rec.width, rec.height, rec.mode, rec.sha256) == tuple(batch["uploads"][i].values())
        assert rec.embedding == batch["embeddings"][i].astype(np.float16).astype(np.float64).tolist()
        # float32 sums, as the model's pixels are float32: about 1e-6 of the float64 result
        np.testing.assert_allclose(rec.channel_mean, pixels.mean(axis=(0, 1)), rtol=0, atol=1e-6)
        np.testing.assert_allclose(rec.channel_std, pixels.std(axis=(0, 1)), rtol=0, atol=1e-6)
        sharpness = (np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean()) / 2
        assert rec.sharpness == pytest.approx(sharpness, abs=1e-6)
        assert PredictionRecord.model_validate_json(rec.model_dump_json()) == rec
        alone = make_record(
            time=when, request_id=rec.request_id, model=MODEL, data_version="d1", classes=batch["classes"],
            probabilities=probabilities, embedding=batch["embeddings"][i], novelty=batch["novelty"][i],
            unknown=batch["unknown"][i], pixels=batch["pixels"][i], upload=batch["uploads"][i],
        )
        assert alone.model_dump(exclude={"channel_mean", "channel_std", "sharpness"}) == rec.model_dump(
            exclude={"channel_mean", "channel_std", "sharpness"}
        ), "one image alone is described as within its batch"
        np.testing.assert_allclose(alone.channel_std, rec.channel_std, rtol=1e-12)
    kept = LogEntry(when, "r", MODEL, "d1", observations[0]).with_image("monitoring/images/a.jpg")
    assert PredictionRecord.model_validate_json(kept.json_line()).image_object == "monitoring/images/a.jpg"


def test_an_image_with_a_number_json_cannot_hold_gets_no_observation():
    batch = _batch(3, seed=2)
    batch["novelty"][1] = np.nan
    batch["pixels"][2, 0, 0, 0] = np.inf
    observations = observe_batch(**batch)
    assert observations[0] is not None and observations[1:] == [None, None]
    with pytest.raises(ValueError, match="not a finite number"):
        make_record(time=datetime.now(UTC), request_id="r", model=MODEL, data_version="d", classes=["a", "b"],
                    probabilities=np.array([0.5, 0.5]), embedding=np.zeros(4), novelty=float("nan"),
                    unknown=True, pixels=np.zeros((4, 4, 3)), upload=batch["uploads"][0])


def test_batch_statistics_equal_each_image_alone():
    pixels = np.random.default_rng(4).random((5, 9, 7, 3), dtype=np.float32)
    mean, std, sharpness = image_stats_batch(pixels)
    for i in range(5):
        alone = image_stats(pixels[i])
        np.testing.assert_allclose(mean[i], alone["channel_mean"], rtol=1e-12)
        np.testing.assert_allclose(std[i], alone["channel_std"], rtol=1e-12)
        assert sharpness[i] == pytest.approx(alone["sharpness"], rel=1e-12)
    flat = np.full((1, 4, 4, 3), 0.3, dtype=np.float32)
    assert image_stats_batch(flat)[1].max() < 1e-7, "a flat image has no spread, not rounding noise"
    nearly = flat + np.random.default_rng(5).normal(0, 1e-3, flat.shape).astype(np.float32)
    np.testing.assert_allclose(image_stats_batch(nearly)[1][0], nearly[0].astype(np.float64).std(axis=(0, 1)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="N, H, W, C"):
        image_stats_batch(pixels[0])
