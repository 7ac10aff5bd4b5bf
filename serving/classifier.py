"""Uploads in, one result per upload out: decode and preprocess each file, one model call per batch.

The model is the exported graph run by :class:`ml.inference.Predictor` (onnxruntime, no TensorFlow), loaded
from a bundle folder (the training output, or the copy inside a BentoML model), so the service, the
benchmark and the tests run exactly the same inference code.

The bundle's novelty model (ml/novelty.py) scores the embeddings of the same model call, so each answer
says whether the image looks like none of the known classes (`unknown`) without a second forward pass.
Each upload's :class:`Classified` keeps what monitoring needs later (embedding, preprocessed pixels, the
original size and mode) so that a prediction can be logged and described without running the model again.
With `observe=True` (the service, when its prediction log is on) the batch is also described for the log
right there, vectorised over the batch on the inference thread (`monitor.records.observe_batch`), so that a
request only adds its time and id to a record that is already encoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.inference import Predictor
from ml.novelty import NoveltyModel, load_from_bundle
from ml.preprocess import DEFAULT_MAX_PIXELS, InvalidImageError, PreprocessConfig, load_image, preprocess
from monitor.records import Observation, observe_batch

log = logging.getLogger("orbit.monitor")


@dataclass(frozen=True)
class Classified:
    """The model's answer for one upload, with the inputs monitoring describes it by."""

    probabilities: np.ndarray  # float32 (n_classes,)
    embedding: np.ndarray  # float32 (embedding_dim,): the input of the softmax layer
    pixels: np.ndarray  # float32 (H, W, C) in [0, 1], exactly what the model saw
    width: int  # the upload as decoded, before EXIF rotation and resizing
    height: int
    mode: str  # Pillow's mode of the upload: "RGB", "L", "RGBA", "P", "I;16", ...
    novelty: float  # higher = less like the training images (ml.novelty)
    unknown: bool  # novelty above the threshold chosen on validation data
    observation: Observation | None = None  # the prediction log's record of it (classify(observe=True))


@dataclass(frozen=True)
class Prepared:
    pixels: np.ndarray
    width: int
    height: int
    mode: str


@dataclass
class Classifier:
    predictor: Predictor
    novelty: NoveltyModel

    @property
    def classes(self) -> list[str]:
        return self.predictor.classes

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.predictor.preprocess

    @classmethod
    def load(cls, folder: str | os.PathLike, *, threads: int = 1) -> Classifier:
        """Load and check the bundle, novelty model included (a bundle without one is refused with the fix);
        `threads` is onnxruntime's intra-op pool (see Predictor.open)."""
        predictor = Predictor.load(Path(folder), threads=threads)
        return cls(predictor=predictor, novelty=load_from_bundle(Path(folder), predictor.meta))

    def classify(
        self, uploads: Sequence[bytes], *, max_pixels: int = DEFAULT_MAX_PIXELS, observe: bool = False
    ) -> list[Classified | InvalidImageError]:
        """Decode, preprocess and run a batch of uploaded files in one model call.

        A file that is not a usable image gets its own :class:`InvalidImageError` in its slot; the others
        are still answered, so one bad upload never fails the requests batched with it. With `observe`, each
        answer also carries its prediction-log observation (None where it could not be made).
        """
        slots: list[Prepared | InvalidImageError] = []
        good_uploads: list[bytes] = []
        for data in uploads:
            try:
                slots.append(self.prepare(data, max_pixels=max_pixels))
                good_uploads.append(data)
            except InvalidImageError as exc:
                slots.append(exc)
        good = [s for s in slots if isinstance(s, Prepared)]
        if not good:
            return list(slots)  # type: ignore[arg-type]  # only errors
        pixels = np.stack([p.pixels for p in good])
        probabilities, embeddings = self.predictor.run(pixels)
        # the same call's embeddings: no second forward pass
        scores = np.asarray(self.novelty.score(embeddings), dtype=np.float64)
        unknown = scores > self.novelty.threshold
        observations: list[Observation | None] = [None] * len(good)
        if observe:
            observations = self._observe(
                good, good_uploads, pixels, probabilities, embeddings, scores, unknown
            )
        answers = iter(zip(good, probabilities, embeddings, scores.tolist(), unknown.tolist(), observations,
                           strict=True))
        results: list[Classified | InvalidImageError] = []
        for slot in slots:
            if isinstance(slot, InvalidImageError):
                results.append(slot)
                continue
            prepared, probs, embedding, score, is_unknown, observation = next(answers)
            results.append(Classified(probs, embedding, prepared.pixels, prepared.width, prepared.height,
                                      prepared.mode, score, is_unknown, observation))
        return results

    def _observe(self, good, uploads, pixels, probabilities, embeddings, scores, unknown):
        """The log's observations of a batch; a failure here costs the records (counted where they are
        recorded), never the answers."""
        try:
            return observe_batch(
                classes=self.classes, probabilities=probabilities, embeddings=embeddings, novelty=scores,
                unknown=unknown, pixels=pixels,
                uploads=[
                    # hashlib lets go of the GIL for all but tiny uploads: the event loop runs meanwhile
                    {"width": p.width, "height": p.height, "mode": p.mode,
                     "sha256": hashlib.sha256(data).hexdigest()}
                    for p, data in zip(good, uploads, strict=True)
                ],
            )
        except Exception:
            log.exception("prediction log: a batch of %d images could not be described", len(good))
            return [None] * len(good)

    def prepare(self, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
        """One upload as model input, through `ml.preprocess` unchanged; any failure is an InvalidImageError.

        Pillow raises more than it documents on hostile files; such an error belongs to this upload alone
        and must not fail the other requests batched with it.
        """
        try:
            image = load_image(data, max_pixels=max_pixels)  # decoded once; preprocess takes the image as is
            pixels = preprocess(image, self.preprocess, max_pixels=max_pixels)
            return Prepared(pixels, image.width, image.height, image.mode)
        except InvalidImageError:
            raise
        except Exception as exc:
            raise InvalidImageError(
                f"the image could not be processed ({type(exc).__name__}: {exc}); it may be corrupt: "
                "re-save it as a plain JPEG or PNG"
            ) from exc

    def warm_up(self) -> None:
        self.predictor.warm_up()
        self.novelty.score(np.zeros((2, self.novelty.embedding_dim), dtype=np.float32))

    def to_response(self, result: Classified) -> dict[str, Any]:
        """`{"prediction", "probabilities": {class: p}, "unknown", "novelty"}`: the body of `/predict`."""
        probs = [float(p) for p in result.probabilities]
        best = max(range(len(probs)), key=probs.__getitem__)
        return {
            "prediction": self.classes[best],
            "probabilities": dict(zip(self.classes, probs, strict=True)),
            "unknown": result.unknown,
            "novelty": result.novelty,
        }
