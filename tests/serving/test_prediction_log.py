"""The running service records every prediction (ORBIT_PREDICTION_LOG), loses none on SIGTERM, and answers
normally when the log's store fails."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest

from local.server import running_server
from monitor.log import RECORDS_PREFIX
from monitor.records import PredictionRecord
from monitor.sinks import DirSink
from serving.prediction_log import request_id
from tests.conftest import REPO_ROOT
from tests.serving.conftest import COLOURS, disc, encode

pytestmark = pytest.mark.slow


def _env(stored_tag: str, bentoml_home: Path, log: str) -> dict[str, str]:
    return {
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "ORBIT_MODEL_TAG": stored_tag,
        "ORBIT_PREDICTION_LOG": log,
        "ORBIT_LOG_IMAGE_SHARE": "0",  # only unknown images are kept: the rule is visible in the records
    }


def _read_records(root: Path) -> list[PredictionRecord]:
    sink = DirSink(root)
    return [
        PredictionRecord.model_validate_json(line)
        for name in sorted(sink.list(RECORDS_PREFIX))
        for line in sink.get(name).decode().splitlines()
    ]


def test_every_prediction_is_recorded_and_sigterm_loses_none(stored_tag, bentoml_home, tmp_path):
    import bentoml

    uploads = {n: encode(disc(colour, size=(40 + i, 36))) for i, (n, colour) in enumerate(COLOURS.items())}
    noise = encode(disc((128, 128, 128)).effect_spread(8))  # a grey smudge: none of the classes
    log_dir = tmp_path / "log"
    sent: list[tuple[str, bytes, dict]] = []
    with running_server(
        cwd=REPO_ROOT, env=_env(stored_tag, bentoml_home, str(log_dir)), log_path=tmp_path / "serve.log",
        ready_timeout=90,
    ) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for round_ in range(5):
                for name, data in uploads.items():
                    rid = f"client-{name}-{round_}"
                    answer = http.post(
                        "/predict", files={"image": ("x.jpg", data)}, headers={"X-Request-ID": rid}
                    )
                    assert answer.status_code == 200, answer.text
                    sent.append((rid, data, answer.json()))
            batch = http.post("/predict_batch", files=[("images", ("a.jpg", uploads["Mars"])),
                                                       ("images", ("b.jpg", noise))],
                              headers={"X-Request-ID": "batch-1"})
            assert batch.status_code == 200, batch.text
            sent += [("batch-1/0", uploads["Mars"], batch.json()[0]), ("batch-1/1", noise, batch.json()[1])]
            http.post("/predict", files={"image": ("bad.jpg", b"not an image")})  # 400: nothing to record
        # Leaving the block sends SIGTERM right away: the last records are still in the buffer (5 s flush).

    records = {r.request_id: r for r in _read_records(log_dir)}
    assert sorted(records) == sorted(rid for rid, _, _ in sent), "every answered image, exactly once"
    stored = bentoml.models.get(stored_tag)
    for rid, data, answer in sent:
        rec = records[rid]
        assert rec.model == str(stored.tag) and ":" in rec.model and not rec.model.endswith(":latest")
        assert rec.data_version == stored.info.metadata["data_version"]
        assert rec.prediction == answer["prediction"]
        assert rec.top_probability == pytest.approx(max(answer["probabilities"].values()), abs=1e-6)
        assert rec.novelty == pytest.approx(answer["novelty"], rel=1e-6)
        assert rec.unknown == answer["unknown"]
        assert rec.sha256 == hashlib.sha256(data).hexdigest()
        assert (rec.width, rec.height, rec.mode) != (0, 0, "") and rec.mode == "RGB"
        assert len(rec.embedding) == stored.info.metadata["embedding_dim"]
        assert len(rec.channel_mean) == 3 and len(rec.channel_std) == 3
        # the sampling rule with share 0: exactly the unknown images are kept, under the model's partition
        assert (rec.image_object is not None) == rec.unknown
        if rec.image_object:
            assert (log_dir / rec.image_object).read_bytes() == data
    assert records["client-Mars-0"].width == 40 and records["client-Mars-0"].prediction == "Mars"
    assert records["batch-1/1"].unknown, "the grey smudge is unknown, so its image is kept"


def test_a_failing_store_never_fails_a_request(stored_tag, bentoml_home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("the log's folder cannot be created under a file")
    log_path = tmp_path / "serve.log"
    with running_server(
        cwd=REPO_ROOT, env=_env(stored_tag, bentoml_home, str(blocker / "log")), log_path=log_path,
        ready_timeout=90,
    ) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(10):
                answer = http.post("/predict", files={"image": ("m.jpg", encode(disc(COLOURS["Mars"])))})
                assert answer.status_code == 200 and answer.json()["prediction"] == "Mars"
            deadline = time.monotonic() + 30
            while "prediction log: writing" not in log_path.read_text(errors="replace"):
                assert time.monotonic() < deadline, "the failing write was never attempted (or not logged)"
                time.sleep(0.5)
            answer = http.post("/predict", files={"image": ("u.jpg", encode(disc(COLOURS["Uranus"])))})
            assert answer.status_code == 200 and answer.json()["prediction"] == "Uranus"
    assert not (blocker / "log").exists()


def test_request_ids_keep_a_sane_client_id_and_replace_anything_else():
    assert request_id({"x-request-id": "abc-123:4"}) == "abc-123:4"
    for hostile in ("", "a b", "x" * 200, "../../etc", "ok\nInjected: 1"):
        made = request_id({"x-request-id": hostile})
        assert made != hostile and len(made) == 32
    assert request_id({}) != request_id({})
