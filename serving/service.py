"""The planet classifier over HTTP: `POST /predict` (one image) and `POST /predict_batch` (several).

    curl -F "image=@planet.jpg" http://127.0.0.1:3000/predict
    -> {"prediction": "Saturn", "probabilities": {"Earth": 0.001, ..., "Saturn": 0.97, ...},
        "unknown": false, "novelty": 3.2}

`unknown` is true when the image looks like none of the classes the model was trained on (a dwarf planet, a
photo, noise): the bundle's novelty model (ml/novelty.py) scores the embedding of the same model call.

Uploads are decoded with `ml.preprocess` (the function training used) and run through the exported model
(onnxruntime, no TensorFlow in this process) in batches formed from whatever requests arrive together
(:mod:`serving.batching`). Bad uploads are turned away with a 4xx JSON error by
:class:`serving.middleware.UploadGuard` or by the decoder, never a 5xx.
Settings come from ORBIT_* environment variables (:mod:`serving.config`).
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
from typing import Annotated

import bentoml
import prometheus_client
import threadpoolctl
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from ml.bundle import BundleError
from ml.preprocess import InvalidImageError
from serving.batching import MicroBatcher
from serving.classifier import Classified, Classifier
from serving.config import load_settings
from serving.inputs import UploadRule
from serving.middleware import UploadGuard
from serving.prediction_log import ServiceLog, current_request_id
from serving.uploads import UploadedFile

SETTINGS = load_settings()

BATCH_SIZE = prometheus_client.Histogram(  # exported on /metrics with BentoML's own series
    name="orbit_model_batch_size",
    documentation="Images per model call (1 when idle, growing with the backlog under load)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PREDICTIONS = prometheus_client.Counter(
    name="orbit_predictions",  # exported as orbit_predictions_total
    documentation="Images answered, by predicted class (unknown ones included)",
    labelnames=["class"],
)
UNKNOWN_PREDICTIONS = prometheus_client.Counter(
    name="orbit_unknown_predictions",  # exported as orbit_unknown_predictions_total
    documentation="Images answered with unknown: true (novelty above the bundle's threshold)",
)
#: Bucket edges as offsets from the threshold, in units of max(|threshold|, 1): dense around it, where a
#: shift of the traffic shows first, and wide above it, where noise and photos land.
NOVELTY_BUCKET_OFFSETS = (-1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
_novelty_histogram: prometheus_client.Histogram | None = None


def novelty_histogram(threshold: float) -> prometheus_client.Histogram:
    """`orbit_novelty`, with buckets placed around the served model's threshold (`le` = threshold counts the
    known-looking images). Created once per process, when the worker has loaded its model."""
    global _novelty_histogram
    if _novelty_histogram is None:
        unit = max(abs(threshold), 1.0)
        _novelty_histogram = prometheus_client.Histogram(
            name="orbit_novelty",
            documentation=f"Novelty of answered images; above {threshold:.6g} they are answered unknown",
            buckets=[threshold + offset * unit for offset in NOVELTY_BUCKET_OFFSETS],
        )
    return _novelty_histogram


UPLOAD_RULES = {
    "/predict": UploadRule("image", max_files=1),
    "/predict_batch": UploadRule("images", max_files=SETTINGS.max_batch_files, many=True),
}


class Prediction(BaseModel):
    prediction: str = Field(description="the most probable class")
    probabilities: dict[str, float] = Field(description="probability of every class; they sum to 1")
    unknown: bool = Field(description="true when the image looks like none of the classes (see novelty)")
    novelty: float = Field(description="higher = less like the training images; unknown above a threshold")


def _signature_once(func):
    """Compute the API function's signature once: BentoML asks `inspect.signature` for it on every request
    (about a tenth of the event loop's time per request here), and a function carrying `__signature__`
    answers at once. The signature itself is the same object inspect would build."""
    func.__signature__ = inspect.signature(func)
    return func


def _bad_image(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


@bentoml.service(
    traffic={"timeout": 30},
    workers=SETTINGS.workers,
    logging={"access": {"enabled": SETTINGS.access_log}},
    # Spans cost about a fifth of the throughput; without an exporter configured nobody reads them.
    tracing={"excluded_urls": [] if SETTINGS.trace_predictions else list(UPLOAD_RULES)},
)
class PlanetClassifier:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        if type(self).model_ref.stored is None:  # resolving would otherwise try BentoCloud and fail obscurely
            home = os.environ.get("BENTOML_HOME", "~/bentoml")
            raise BundleError(
                f"model {SETTINGS.model_tag} is not in the BentoML store at {home}; "
                "run `python -m serving.package` (part of `make bento` and `make serve`) first"
            )
        # numpy's BLAS (the novelty score) on one thread: its default pool fights onnxruntime and the event
        # loop for the cores (measured 14 ms instead of 0.4 ms per batch of 64 on a busy machine).
        threadpoolctl.threadpool_limits(limits=1)
        self.classifier = Classifier.load(self.model_ref.path, threads=SETTINGS.inference_threads)
        self.classifier.warm_up()
        self.novelty = novelty_histogram(self.classifier.novelty.threshold)
        # every class's series exists from the start, at 0; looked up here once, not per answer
        self.predictions = {name: PREDICTIONS.labels(name) for name in self.classifier.classes}
        # Everything alive after start-up (BentoML, pydantic, starlette) lives as long as the worker: freezing
        # it keeps full collections from walking it while requests wait (it halved p99 at c=16 under TF).
        gc.freeze()
        self.prediction_log = ServiceLog.open(
            SETTINGS.prediction_log,
            stored_model=type(self).model_ref.stored,
            image_share=SETTINGS.log_image_share,
        )
        self.batcher: MicroBatcher[bytes, Classified] = MicroBatcher(
            functools.partial(
                self.classifier.classify,
                max_pixels=SETTINGS.max_pixels,
                observe=self.prediction_log is not None,  # the log's records, encoded per batch
            ),
            max_batch_size=SETTINGS.max_batch_size,
            on_batch=BATCH_SIZE.observe,
        )

    @bentoml.api(route="/predict")
    @_signature_once
    async def predict(self, image: UploadedFile) -> Prediction:
        """Classify one image (JPEG or PNG, colour, greyscale or transparent) sent in the field `image`."""
        data = image.read_bytes()
        try:
            result = await self.batcher.submit(data)
        except InvalidImageError as exc:
            return _bad_image(str(exc))  # type: ignore[return-value]  # BentoML sends a Response as it is
        if self.prediction_log is not None:
            self.prediction_log.record(current_request_id(), data, result)
        return self.answer(result)

    @bentoml.api(route="/predict_batch")
    @_signature_once
    async def predict_batch(
        self,
        # The bounds UploadGuard enforces, stated in the OpenAPI schema too (minItems, maxItems).
        images: Annotated[list[UploadedFile], Field(min_length=1, max_length=SETTINGS.max_batch_files)],
    ) -> list[Prediction]:
        """Classify several images sent as repeated multipart fields `images`; answers in the same order."""
        uploads = [path.read_bytes() for path in images]
        results = await self.batcher.submit_many(uploads, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, InvalidImageError):
                raise result
        # Name every bad file, not only the first, so the client can fix the whole batch in one go.
        problems = [f"images[{i}]: {r}" for i, r in enumerate(results) if isinstance(r, InvalidImageError)]
        if problems:
            return _bad_image("; ".join(problems))  # type: ignore[return-value]
        if self.prediction_log is not None:
            rid = current_request_id()
            for i, (data, result) in enumerate(zip(uploads, results, strict=True)):
                self.prediction_log.record(f"{rid}/{i}", data, result)
        return [self.answer(r) for r in results]

    def answer(self, result: Classified) -> Prediction:
        """The answer for one image, counted in the Prometheus series."""
        # Built from values the classifier made, so not validated again (BentoML serialises it as usual).
        body = Prediction.model_construct(**self.classifier.to_response(result))
        self.predictions[body.prediction].inc()
        if body.unknown:
            UNKNOWN_PREDICTIONS.inc()
        self.novelty.observe(body.novelty)
        return body

    @bentoml.on_shutdown
    async def close(self) -> None:
        await self.batcher.aclose()
        if self.prediction_log is not None:  # SIGTERM, rolling update: write every buffered record
            await self.prediction_log.aclose()


PlanetClassifier.add_asgi_middleware(
    UploadGuard, rules=UPLOAD_RULES, max_body_bytes=SETTINGS.max_upload_bytes
)
