"""PredictionLog: flushes on close and on time, never collides, and a bad bucket never reaches a request."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from monitor.log import PredictionLog, new_writer_id, records_prefix
from monitor.records import LogEntry, PredictionRecord, observe_batch
from monitor.sinks import DirSink, ObjectExists
from tests.conftest import image_bytes, make_image
from tests.monitor.support import MODEL, synthetic_records

JPEG = image_bytes(make_image())


def dropped(kind: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("orbit_monitor_dropped_total", {"kind": kind, "reason": reason})
    return value or 0.0


def read_back(sink, prefix: str = "monitoring/records/") -> list[PredictionRecord]:
    out = []
    for name in sink.list(prefix):
        out += [PredictionRecord.model_validate_json(line) for line in sink.get(name).splitlines()]
    return out


class FailingSink(DirSink):
    """Fails the first `failures` puts (all of them by default), then writes to a folder."""

    def __init__(self, root, failures: int = 10**9):
        super().__init__(root)
        self.failures, self.calls = failures, 0

    def put(self, name, data, content_type=""):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("bucket unreachable (test)")
        super().put(name, data, content_type)


class BlockedSink(DirSink):
    """Every put waits until the test releases it: a bucket that hangs."""

    def __init__(self, root):
        super().__init__(root)
        self.release, self.entered = threading.Event(), threading.Event()

    def put(self, name, data, content_type=""):
        self.entered.set()
        self.release.wait(30)
        super().put(name, data, content_type)


def test_close_flushes_every_record_and_they_read_back_equal(tmp_path):
    sink = DirSink(tmp_path)
    records = synthetic_records(30, seed=1)
    log = PredictionLog(sink, model=MODEL, flush_interval_s=3600)
    for rec in records:
        log.record(rec)
    assert not list(sink.list("monitoring/")), "nothing is written before a flush is due"
    log.close()
    assert sorted(read_back(sink), key=lambda r: r.request_id) == sorted(records, key=lambda r: r.request_id)
    names = list(sink.list("monitoring/records/"))
    assert len(names) == 1 and names[0].startswith(records_prefix(MODEL, "2026-11-30"))
    assert names[0].endswith(f"{log.writer_id}-000001.jsonl")
    log.record(records[0])  # after close: dropped, not raised
    assert len(read_back(sink)) == 30


def test_aclose_flushes_from_the_event_loop(tmp_path):
    sink = DirSink(tmp_path)
    log = PredictionLog(sink, model=MODEL, flush_interval_s=3600)
    for rec in synthetic_records(5, seed=2):
        log.record(rec)
    asyncio.run(log.aclose())
    assert len(read_back(sink)) == 5


def test_flushes_by_time_and_by_count_without_close(tmp_path):
    sink = DirSink(tmp_path)
    log = PredictionLog(sink, model=MODEL, flush_interval_s=0.05, flush_records=1000)
    log.record(synthetic_records(1, seed=3)[0])
    deadline = time.monotonic() + 10
    while not read_back(sink) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(read_back(sink)) == 1, "the timer flushes a lone record"
    log.close()

    other = DirSink(tmp_path / "count")
    log = PredictionLog(other, model=MODEL, flush_interval_s=3600, flush_records=10, max_records=100)
    for rec in synthetic_records(10, seed=4):
        log.record(rec)
    deadline = time.monotonic() + 10
    while not read_back(other) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(read_back(other)) == 10, "reaching flush_records flushes before the timer"
    log.close()


def test_two_writers_never_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "socket.gethostname", lambda: "same-pod"
    )  # same host and pid: the random part differs
    assert new_writer_id() != new_writer_id()
    sink = DirSink(tmp_path)
    a = PredictionLog(sink, model=MODEL, flush_interval_s=3600)
    b = PredictionLog(sink, model=MODEL, flush_interval_s=3600)
    first, second = synthetic_records(20, seed=5), synthetic_records(20, seed=6)
    for ra, rb in zip(first, second, strict=True):  # same times, same model, same day
        a.record(ra)
        b.record(rb)
    a.close()
    b.close()
    assert len(list(sink.list("monitoring/records/"))) == 2
    assert len(read_back(sink)) == 40, "neither writer overwrote the other"
    with pytest.raises(ObjectExists):  # and a name is never overwritten, even by mistake
        sink.put(next(sink.list("monitoring/records/")), b"{}")


def test_a_failing_bucket_never_fails_record_and_counts_the_drops(tmp_path):
    before = dropped("record", "sink_error")
    log = PredictionLog(FailingSink(tmp_path), model=MODEL, flush_interval_s=3600)
    for rec in synthetic_records(25, seed=7):
        log.record(rec)  # must not raise
    log.close()
    assert dropped("record", "sink_error") - before == 25


def test_a_bucket_that_recovers_loses_nothing(tmp_path):
    sink = FailingSink(tmp_path, failures=1)
    log = PredictionLog(sink, model=MODEL, flush_interval_s=0.05, max_attempts=5)
    for rec in synthetic_records(12, seed=8):
        log.record(rec)
    deadline = time.monotonic() + 10
    while len(read_back(sink)) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert sink.calls >= 2 and len(read_back(sink)) == 12


def test_a_hanging_bucket_does_not_block_record_and_the_buffer_stays_bounded(tmp_path):
    sink = BlockedSink(tmp_path)
    before = dropped("record", "buffer_full")
    log = PredictionLog(sink, model=MODEL, flush_interval_s=0.01, flush_records=5, max_records=50)
    records = synthetic_records(200, seed=9)
    log.record(records[0])
    assert sink.entered.wait(10), "the flush thread is now stuck in the bucket"
    done = threading.Event()

    def requests():
        for rec in records[1:]:
            log.record(rec)
        done.set()

    threading.Thread(target=requests, daemon=True).start()
    assert done.wait(10), "record() must return while the bucket hangs"
    assert log.buffered <= 50
    assert dropped("record", "buffer_full") - before == 149, "199 arrived, 50 fit"
    sink.release.set()
    log.close()
    assert len(read_back(sink)) == 1 + 50, "the one in flight and the 50 buffered are written"


def test_images_are_kept_by_the_sampling_rule(tmp_path):
    sink = DirSink(tmp_path)
    log = PredictionLog(sink, model=MODEL, image_share=0.0, flush_interval_s=3600)
    records = synthetic_records(40, seed=10, unknown_rate=0.5)
    for rec in records:
        log.record(rec, JPEG)
    log.close()
    back = {r.request_id: r for r in read_back(sink)}
    unknown = [r for r in records if r.unknown]
    assert unknown and all(back[r.request_id].image_object for r in unknown), "every unknown image is kept"
    assert all(back[r.request_id].image_object is None for r in records if not r.unknown)
    images = list(sink.list("monitoring/images/"))
    assert sorted(images) == sorted(back[r.request_id].image_object for r in unknown)
    assert all(name.endswith(".jpg") and sink.get(name) == JPEG for name in images)

    everything = DirSink(tmp_path / "all")
    log = PredictionLog(everything, model=MODEL, image_share=1.0, flush_interval_s=3600)
    for rec in records:
        log.record(rec, JPEG)
    log.close()
    assert all(r.image_object for r in read_back(everything))


def test_a_record_of_another_model_is_dropped_not_mixed(tmp_path):
    before = dropped("record", "wrong_model")
    log = PredictionLog(DirSink(tmp_path), model=MODEL, flush_interval_s=3600)
    log.record(synthetic_records(1, seed=11, model="planet-classifier:v2")[0])
    log.close()
    assert dropped("record", "wrong_model") - before == 1
    assert not read_back(DirSink(tmp_path))


def test_service_entries_are_written_as_records_and_keep_images_by_the_rule(tmp_path):
    """The service's LogEntry (encoded once, never validated on the way) goes through the same buffer."""
    records = synthetic_records(30, seed=12, unknown_rate=0.5)
    classes = sorted({r.prediction for r in records})
    observations = observe_batch(
        classes=classes,
        probabilities=np.eye(len(classes), dtype=np.float32)[[classes.index(r.prediction) for r in records]],
        embeddings=np.array([r.embedding for r in records], dtype=np.float32),
        novelty=np.array([r.novelty for r in records]),
        unknown=np.array([r.unknown for r in records]),
        pixels=np.random.default_rng(0).random((30, 4, 4, 3), dtype=np.float32),
        uploads=[{"width": r.width, "height": r.height, "mode": r.mode, "sha256": r.sha256} for r in records],
    )
    entries = [
        LogEntry(r.time, r.request_id, MODEL, "d1", o) for r, o in zip(records, observations, strict=True)
    ]
    sink = DirSink(tmp_path)
    log = PredictionLog(sink, model=MODEL, image_share=0.0, flush_interval_s=3600)
    for entry in entries:
        log.record(entry, JPEG)
    log.close()
    back = {r.request_id: r for r in read_back(sink)}
    assert sorted(back) == sorted(r.request_id for r in records)
    for rec in records:
        got = back[rec.request_id]
        assert (got.prediction, got.novelty, got.unknown, got.time, got.embedding, got.sha256) == (
            rec.prediction, rec.novelty, rec.unknown, rec.time, rec.embedding, rec.sha256
        )
        assert (got.image_object is not None) == rec.unknown
        if got.image_object:
            assert sink.get(got.image_object) == JPEG and rec.sha256 in got.image_object
