"""PredictionLog: the service's prediction log, written in batches to the bucket by a background thread.

`record()` is what a request pays: a sampling draw and an append under a lock (microseconds; see
`make bench-monitor`). Everything slow happens on the flush thread: joining the JSON lines, uploading,
retrying. It takes a `LogEntry` (the service's write path: its line is already encoded, nothing is
validated again) or a `PredictionRecord`. The
buffer is bounded, so a slow or failing bucket costs records (counted in `orbit_monitor_dropped_total`
and logged), never a request's latency or its answer. `aclose()` (the service's shutdown hook, i.e.
SIGTERM) flushes what is buffered; a crash loses at most what arrived since the last flush
(`flush_interval_s`, 5 s by default, plus an upload in flight).

Object names (docs/monitoring.md):
    monitoring/records/date=YYYY-MM-DD/model=<name>/<version>/<writer-id>-<seq>.jsonl
    monitoring/images/date=YYYY-MM-DD/model=<name>/<version>/<sha256><ext>
The writer id is hostname + pid + random, and seq counts this writer's objects, so two replicas (or two
workers of one pod) never write the same name; names are create-only besides.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client import Counter

from monitor.records import LogEntry, PredictionRecord, split_tag
from monitor.sinks import ObjectExists, Sink

PREFIX = "monitoring"
RECORDS_PREFIX = f"{PREFIX}/records"
IMAGES_PREFIX = f"{PREFIX}/images"

log = logging.getLogger("orbit.monitor")

DROPPED = Counter(
    "orbit_monitor_dropped",
    "Prediction-log records or images not written (buffer full, bucket failing, wrong model, closed)",
    ["kind", "reason"],
)
#: What `record()` takes: both have `model`, `time`, `unknown`, `sha256`, `with_image()` and `json_line()`.
Loggable = LogEntry | PredictionRecord

WRITTEN = Counter("orbit_monitor_written", "Prediction-log records and images written", ["kind"])

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_IMAGE_EXT = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"GIF8": ".gif", b"RIFF": ".webp", b"BM": ".bmp"}


def new_writer_id() -> str:
    """hostname-pid-random: unique per process even when two pods share a hostname or a pid."""
    host = _SAFE.sub("-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _partition(model: str, day: str) -> str:
    name, version = split_tag(model)
    return f"date={day}/model={_SAFE.sub('-', name)}/{_SAFE.sub('-', version)}"


def records_prefix(model: str, day: str) -> str:
    return f"{RECORDS_PREFIX}/{_partition(model, day)}/"


def record_object_name(model: str, day: str, writer_id: str, seq: int) -> str:
    return f"{records_prefix(model, day)}{writer_id}-{seq:06d}.jsonl"


def image_object_name(model: str, day: str, sha256: str, image: bytes) -> str:
    ext = next((e for magic, e in _IMAGE_EXT.items() if image.startswith(magic)), ".bin")
    return f"{IMAGES_PREFIX}/{_partition(model, day)}/{sha256}{ext}"


@dataclass
class _Pending:
    """One serialised object waiting for the bucket; its name is fixed at the first try."""

    name: str
    data: bytes
    kind: str  # "record" | "image"
    count: int  # records in it (1 for an image)
    attempts: int = 0


class PredictionLog:
    """Bounded buffer + background flush (every `flush_interval_s`, or sooner at `flush_records`)."""

    def __init__(
        self,
        sink: Sink,
        *,
        model: str,
        image_share: float = 0.05,
        max_records: int = 20_000,
        max_image_bytes: int = 64 * 2**20,
        flush_interval_s: float = 5.0,
        flush_records: int = 1_000,
        max_attempts: int = 3,
        close_timeout_s: float = 60.0,
        writer_id: str | None = None,
        seed: int | None = None,
    ):
        if not 0.0 <= image_share <= 1.0:
            raise ValueError(f"image_share must be from 0 to 1; got {image_share}")
        if flush_interval_s <= 0 or flush_records < 1 or max_records < flush_records:
            raise ValueError("need flush_interval_s > 0 and 1 <= flush_records <= max_records")
        split_tag(model)
        self.sink, self.model, self.image_share = sink, model, image_share
        self.max_records, self.max_image_bytes = max_records, max_image_bytes
        self.flush_interval_s, self.flush_records = flush_interval_s, flush_records
        self.max_attempts, self.close_timeout_s = max_attempts, close_timeout_s
        self.writer_id = writer_id or new_writer_id()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._records: list[Loggable] = []
        self._images: list[tuple[str, bytes]] = []
        self._image_bytes = 0
        self._pending: list[_Pending] = []  # failed uploads waiting for a retry (counted in the bound)
        self._pending_records = 0
        self._seq = 0
        self._closed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.writer_id}", daemon=True
        )
        self._thread.start()

    # --- the request's side: never blocks on I/O, never raises ----------------------------------------

    def record(self, rec: Loggable, image: bytes | None = None) -> None:
        """Buffer one record (and its upload, if the sampling rule keeps it). Returns in microseconds."""
        try:
            self._record(rec, image)
        except Exception:  # a bug here must cost a log line, not the request
            DROPPED.labels("record", "error").inc()
            log.exception("prediction log: record() failed; the record is dropped")

    def _record(self, rec: Loggable, image: bytes | None) -> None:
        if rec.model != self.model:
            DROPPED.labels("record", "wrong_model").inc()
            log.error("prediction log of %s got a record of %s; dropped", self.model, rec.model)
            return
        keep = image is not None and (rec.unknown or self._rng.random() < self.image_share)
        with self._lock:
            if self._closed:
                DROPPED.labels("record", "closed").inc()
                return
            if len(self._records) + self._pending_records >= self.max_records:
                DROPPED.labels("record", "buffer_full").inc()
                return
            if keep and self._image_bytes + len(image) > self.max_image_bytes:
                DROPPED.labels("image", "buffer_full").inc()
                keep = False
            if keep:
                name = image_object_name(self.model, rec.time.strftime("%Y-%m-%d"), rec.sha256, image)
                rec = rec.with_image(name)
                self._images.append((name, image))
                self._image_bytes += len(image)
            self._records.append(rec)
            if len(self._records) >= self.flush_records:
                self._wake.set()

    # --- shutdown -------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop taking records, write everything buffered, and wait for it (up to close_timeout_s)."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            log.error(
                "prediction log: the bucket did not take the last records within %.0f s; %d may be lost",
                self.close_timeout_s,
                len(self._records) + self._pending_records,
            )

    async def aclose(self) -> None:
        """`close()` without blocking the event loop (the service's on_shutdown hook)."""
        await asyncio.to_thread(self.close)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._records) + self._pending_records

    # --- the flush thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._flush_logged(final=False)
        self._flush_logged(final=True)

    def _flush_logged(self, *, final: bool) -> None:
        """A bug in a flush must not end the thread: later records would pile up unwritten."""
        try:
            self._flush(final=final)
        except Exception:
            log.exception("prediction log: a flush failed; its records are lost")

    def _take(self) -> list[_Pending]:
        """Swap the buffers out under the lock and serialise them outside it."""
        with self._lock:
            records, self._records = self._records, []
            images, self._images, self._image_bytes = self._images, [], 0
            pending, self._pending, self._pending_records = self._pending, [], 0
        by_day: dict[str, list[Loggable]] = defaultdict(list)
        for rec in records:
            by_day[rec.time.strftime("%Y-%m-%d")].append(rec)
        fresh = [_Pending(name, data, "image", 1) for name, data in images]  # images first: records name them
        for day, recs in sorted(by_day.items()):
            self._seq += 1
            body = "".join([r.json_line() + "\n" for r in recs]).encode()
            fresh.append(
                _Pending(
                    record_object_name(self.model, day, self.writer_id, self._seq), body, "record", len(recs)
                )
            )
        return pending + fresh

    def _flush(self, *, final: bool) -> None:
        items = self._take()
        failed: list[_Pending] = []
        for item in items:
            if failed and not final and item.kind == "record":
                failed.append(item)  # the bucket is failing right now: keep the rest for the next round
                continue
            item.attempts += 1
            started = time.monotonic()
            try:
                self.sink.put(
                    item.name, item.data, "application/jsonl" if item.kind == "record" else "image/*"
                )
            except ObjectExists:
                pass  # an earlier try that looked failed did write it
            except Exception as exc:
                log.warning(
                    "prediction log: writing %s to %r failed after %.1f s (try %d): %s",
                    item.name,
                    self.sink,
                    time.monotonic() - started,
                    item.attempts,
                    exc,
                )
                failed.append(item)
                continue
            WRITTEN.labels(item.kind).inc(item.count)
        keep = []
        for item in failed:
            if final or item.attempts >= self.max_attempts:
                DROPPED.labels(item.kind, "sink_error").inc(item.count)
                log.error("prediction log: gave up on %s (%d %s(s))", item.name, item.count, item.kind)
            else:
                keep.append(item)
        if keep:
            with self._lock:
                self._pending = keep + self._pending
                self._pending_records += sum(i.count for i in keep if i.kind == "record")
