"""The prediction log's records are made with their batch on the inference thread: `classify(observe=True)`
describes each good upload exactly as the answer and the upload are, and the request only adds time and id."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from prometheus_client import REGISTRY

from monitor.log import PredictionLog
from monitor.records import PredictionRecord
from monitor.sinks import DirSink
from serving.classifier import Classifier
from serving.prediction_log import ServiceLog, new_request_id
from tests.serving.conftest import COLOURS, corrupt_exif_jpeg, disc, encode

MODEL = "planet-classifier:v1"


def dropped_errors() -> float:
    labels = {"kind": "record", "reason": "error"}
    return REGISTRY.get_sample_value("orbit_monitor_dropped_total", labels) or 0.0


def test_classify_observes_each_good_upload_as_it_was_answered(model_dir, tmp_path):
    classifier = Classifier.load(model_dir)
    uploads = [
        encode(disc(COLOURS["Mars"], size=(50, 30))),
        corrupt_exif_jpeg(COLOURS["Mars"]),
        encode(disc(COLOURS["Neptune"], size=(36, 44), mode="RGBA"), "PNG"),
        encode(disc((128, 128, 128)).effect_spread(8)),  # a grey smudge: unknown
    ]
    plain = classifier.classify(uploads)
    observed = classifier.classify(uploads, observe=True)
    assert all(r.observation is None for r in plain if not isinstance(r, Exception)), "off unless asked"
    assert isinstance(observed[1], Exception)
    log = PredictionLog(DirSink(tmp_path), model=MODEL, flush_interval_s=3600)
    service_log = ServiceLog(log, data_version="d7")
    for i in (0, 2, 3):
        service_log.record(f"rid-{i}", uploads[i], observed[i])
    lines = [entry.json_line() for entry in log._records]
    log.close()
    records = [PredictionRecord.model_validate_json(line) for line in lines]
    assert [r.request_id for r in records] == ["rid-0", "rid-2", "rid-3"]
    for rec, i in zip(records, (0, 2, 3), strict=True):
        result, answer = observed[i], classifier.to_response(observed[i])
        assert rec.model == MODEL and rec.data_version == "d7"
        assert rec.prediction == answer["prediction"] and rec.unknown == answer["unknown"]
        assert rec.top_probability == pytest.approx(max(answer["probabilities"].values()), abs=1e-7)
        assert rec.novelty == answer["novelty"]
        assert rec.sha256 == hashlib.sha256(uploads[i]).hexdigest()
        assert (rec.width, rec.height, rec.mode) == (result.width, result.height, result.mode)
        np.testing.assert_allclose(rec.channel_mean, result.pixels.mean(axis=(0, 1)), atol=1e-6)
        assert rec.embedding == result.embedding.astype(np.float16).astype(np.float64).tolist()
    assert [(r.width, r.height, r.mode) for r in records[:2]] == [(50, 30, "RGB"), (36, 44, "RGBA")]
    assert records[0].prediction == "Mars" and records[1].prediction == "Neptune" and records[2].unknown


def test_a_result_without_observation_is_counted_as_dropped(model_dir, tmp_path):
    classifier = Classifier.load(model_dir)
    data = encode(disc(COLOURS["Uranus"]))
    (result,) = classifier.classify([data])  # observe=False: nothing to log
    log = PredictionLog(DirSink(tmp_path), model=MODEL, flush_interval_s=3600)
    before = dropped_errors()
    ServiceLog(log, data_version="d").record("r", data, result)
    assert dropped_errors() - before == 1 and log.buffered == 0
    log.close()


def test_a_batch_that_cannot_be_described_is_still_answered(model_dir, monkeypatch):
    classifier = Classifier.load(model_dir)

    def broken(**_):
        raise RuntimeError("bug in the describer (test)")

    monkeypatch.setattr("serving.classifier.observe_batch", broken)
    results = classifier.classify([encode(disc(COLOURS["Mars"]))], observe=True)
    assert classifier.to_response(results[0])["prediction"] == "Mars" and results[0].observation is None


def test_fresh_request_ids_are_unique_32_hex_digits():
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
