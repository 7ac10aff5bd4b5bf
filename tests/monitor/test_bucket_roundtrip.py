"""The log and the drift check against the GCS emulator, started the way `make bucket-start` starts it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from local import bucket
from local.net import free_port
from monitor import drift
from monitor.log import PredictionLog
from monitor.records import PredictionRecord
from monitor.reference import Records
from monitor.sinks import GCSSink, ObjectExists
from tests.conftest import image_bytes, make_image
from tests.monitor.support import MODEL, synthetic_records

BUCKET = "orbit-monitor-test-google"


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text(
        f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = gs://{BUCKET}\n"
    )
    state = tmp_path / "state"
    started = bucket.start(repo, state=state, port=free_port())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", started.endpoint)
    yield started
    bucket.stop(repo, state=state, quiet=True)


@pytest.mark.slow
def test_records_and_images_round_trip_through_the_emulated_bucket(emulator, tmp_path, capsys):
    sink = GCSSink(BUCKET)
    records = synthetic_records(120, seed=30, start=datetime(2026, 11, 30, 9, 0, tzinfo=UTC), shift=1.5)
    jpeg = image_bytes(make_image())
    log = PredictionLog(sink, model=MODEL, image_share=0.1, flush_interval_s=0.2, flush_records=50, seed=1)
    for rec in records:
        log.record(rec, jpeg)
    log.close()

    names = list(sink.list("monitoring/records/date=2026-11-30/model=planet-classifier/v1/"))
    assert names and all(log.writer_id in name for name in names)
    back = [PredictionRecord.model_validate_json(x) for n in names for x in sink.get(n).splitlines()]
    assert sorted(r.request_id for r in back) == sorted(r.request_id for r in records)
    kept = [r.image_object for r in back if r.image_object]
    assert kept and all(sink.get(name) == jpeg for name in kept)
    # The emulator ignores ifGenerationMatch (it overwrites); real GCS refuses: see the test below.

    Records.from_records(synthetic_records(300, seed=0)).save(tmp_path / "reference.npz")
    sink.put("monitoring/reference/current.npz", (tmp_path / "reference.npz").read_bytes())
    reference = f"gs://{BUCKET}/monitoring/reference/current.npz"  # where the workflow reads it
    args = ["--log", f"gs://{BUCKET}", "--reference", reference, "--json"]
    args += ["--since", "2026-11-30", "--until", "2026-11-30T23:59", "--report", str(tmp_path / "r.html")]
    assert drift.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 120 and result["drift"] is True
    assert "data:image/jpeg" in (tmp_path / "r.html").read_text(), (
        "thumbnails of kept images, from the bucket"
    )


def test_gcs_puts_are_create_only_and_a_taken_name_is_reported(monkeypatch):
    from google.api_core.exceptions import PreconditionFailed

    calls = []

    class Blob:
        def __init__(self, name):
            self.name = name

        def upload_from_string(self, data, **kwargs):
            calls.append(kwargs)
            if self.name == "taken":
                raise PreconditionFailed("At least one of the pre-conditions you specified did not hold.")

    class Client:
        def bucket(self, name):
            return type("Bucket", (), {"blob": staticmethod(Blob)})()

    sink = GCSSink(BUCKET, client=Client())
    sink.put("fresh", b"x")
    assert calls[0]["if_generation_match"] == 0 and calls[0]["timeout"] > 0
    with pytest.raises(ObjectExists, match="taken exists"):
        sink.put("taken", b"x")


@pytest.mark.slow
def test_an_unreachable_bucket_fails_the_check_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nobody listens
    Records.from_records(synthetic_records(300, seed=0)).save(tmp_path / "reference.npz")
    monkeypatch.setattr("monitor.sinks.DEFAULT_TIMEOUT_S", 2.0)
    code = drift.main(
        ["--log", f"gs://{BUCKET}", "--reference", str(tmp_path / "reference.npz"), "--last", "5"]
    )
    assert code == 2
    assert "drift: error" in capsys.readouterr().err
