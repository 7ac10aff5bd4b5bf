"""The service's side of the prediction log: one record per answered image, into `monitor.log.PredictionLog`.

What a request pays is building its record (pixel statistics of the 32x32 model input, a hash of the upload)
and an append to a bounded buffer; serialising and uploading happen on the log's own thread, and a failing
bucket costs records (counted in `orbit_monitor_dropped_total`), never an answer. `ORBIT_PREDICTION_LOG`
picks the store (`gs://BUCKET`, or a folder with the same layout; empty: off). The model tag and data
version come from the BentoML model the worker serves, so records of two models never mix.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import bentoml

from monitor.log import PredictionLog
from monitor.records import make_record
from monitor.sinks import open_sink
from serving.classifier import Classified

log = logging.getLogger("orbit.monitor")

#: A client's X-Request-ID is kept when it is this tame; anything else is replaced by a fresh id.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


#: Reads the request of the current call (a context variable BentoML sets per request). Taking it as an API
#: parameter (`ctx: bentoml.Context`) instead would make BentoML overwrite the status of the 400 answers.
_CONTEXT = bentoml.Context()


def request_id(headers: Any) -> str:
    """The client's `X-Request-ID` when it sent a sane one (so both sides can find the request), else new."""
    given = headers.get("x-request-id", "") if headers is not None else ""
    return given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex


def current_request_id() -> str:
    """`request_id` of the request being answered (a fresh id outside one)."""
    try:
        headers = _CONTEXT.request.headers
    except LookupError:
        headers = None
    return request_id(headers)


class ServiceLog:
    """Records the worker's predictions; one per worker process, closed by the service's shutdown hook."""

    def __init__(self, log_: PredictionLog, *, data_version: str, classes: list[str]):
        self.log, self.data_version, self.classes = log_, data_version, list(classes)

    @property
    def model(self) -> str:
        return self.log.model

    @classmethod
    def open(
        cls, location: str, *, stored_model: Any, classes: list[str], image_share: float
    ) -> ServiceLog | None:
        """The log of `stored_model` (a bentoml Model) at `location`, or None when logging is off."""
        if not location:
            return None
        info = stored_model.info
        data_version = str(info.metadata.get("data_version") or info.labels.get("data_version") or "unknown")
        sink = open_sink(location)
        prediction_log = PredictionLog(sink, model=str(stored_model.tag), image_share=image_share)
        log.info("prediction log of %s: %r (image share %.2f)", stored_model.tag, sink, image_share)
        return cls(prediction_log, data_version=data_version, classes=classes)

    def record(self, rid: str, upload: bytes, result: Classified) -> None:
        """Buffer the record of one answered image; never raises (a bug costs a log line, not a request)."""
        try:
            rec = make_record(
                time=datetime.now(UTC),
                request_id=rid,
                model=self.log.model,
                data_version=self.data_version,
                classes=self.classes,
                probabilities=result.probabilities,
                embedding=result.embedding,
                novelty=result.novelty,
                unknown=result.unknown,
                pixels=result.pixels,
                upload={
                    "width": result.width,
                    "height": result.height,
                    "mode": result.mode,
                    "sha256": hashlib.sha256(upload).hexdigest(),
                },
            )
        except Exception:
            from monitor.log import DROPPED

            DROPPED.labels("record", "error").inc()
            log.exception("prediction log: the record of request %s could not be built; dropped", rid)
            return
        self.log.record(rec, upload)

    async def aclose(self) -> None:
        await self.log.aclose()
