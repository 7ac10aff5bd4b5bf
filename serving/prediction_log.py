"""The service's side of the prediction log: one record per answered image, into `monitor.log.PredictionLog`.

What a request pays is small: the model's side of its record (pixel statistics of the 32x32 model input,
packed embedding, a hash of the upload) was encoded with its whole batch on the inference thread
(`Classifier.classify(observe=True)`), so the request adds its time and id and appends to a bounded buffer;
joining the lines and uploading happen on the log's own thread, and a failing bucket costs records (counted
in `orbit_monitor_dropped_total`), never an answer. `ORBIT_PREDICTION_LOG`
picks the store (`gs://BUCKET`, or a folder with the same layout; empty: off). The model tag and data
version come from the BentoML model the worker serves, so records of two models never mix.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import bentoml

from monitor.log import DROPPED, PredictionLog
from monitor.records import LogEntry
from monitor.sinks import open_sink
from serving.classifier import Classified

log = logging.getLogger("orbit.monitor")

#: A client's X-Request-ID is kept when it is this tame; anything else is replaced by a fresh id.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


#: Reads the request of the current call (a context variable BentoML sets per request). Taking it as an API
#: parameter (`ctx: bentoml.Context`) instead would make BentoML overwrite the status of the 400 answers.
_CONTEXT = bentoml.Context()

#: Fresh ids: 64 random bits per process and a counter, 32 hex digits like a uuid4 but without a system
#: call per request; unique across replicas and restarts by the random part.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def request_id(headers: Any) -> str:
    """The client's `X-Request-ID` when it sent a sane one (so both sides can find the request), else new."""
    given = headers.get("x-request-id", "") if headers is not None else ""
    return given if given and _CLIENT_ID.fullmatch(given) else new_request_id()


def current_request_id() -> str:
    """`request_id` of the request being answered (a fresh id outside one)."""
    try:
        headers = _CONTEXT.request.headers
    except LookupError:
        headers = None
    return request_id(headers)


class ServiceLog:
    """Records the worker's predictions; one per worker process, closed by the service's shutdown hook."""

    def __init__(self, log_: PredictionLog, *, data_version: str):
        self.log, self.data_version = log_, data_version

    @property
    def model(self) -> str:
        return self.log.model

    @classmethod
    def open(
        cls, location: str, *, stored_model: Any, image_share: float
    ) -> ServiceLog | None:
        """The log of `stored_model` (a bentoml Model) at `location`, or None when logging is off."""
        if not location:
            return None
        info = stored_model.info
        data_version = str(info.metadata.get("data_version") or info.labels.get("data_version") or "unknown")
        sink = open_sink(location)
        prediction_log = PredictionLog(sink, model=str(stored_model.tag), image_share=image_share)
        log.info("prediction log of %s: %r (image share %.2f)", stored_model.tag, sink, image_share)
        return cls(prediction_log, data_version=data_version)

    def record(self, rid: str, upload: bytes, result: Classified) -> None:
        """Buffer the record of one answered image; never raises (a bug costs a log line, not a request).

        `result` comes from `Classifier.classify(observe=True)`; one without an observation (its batch
        could not be described, already logged there) is counted as dropped."""
        if result.observation is None:
            DROPPED.labels("record", "error").inc()
            return
        self.log.record(
            LogEntry(datetime.now(UTC), rid, self.log.model, self.data_version, result.observation), upload
        )

    async def aclose(self) -> None:
        await self.log.aclose()
