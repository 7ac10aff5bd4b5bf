"""The trained model plus what it needs to be used: class names and preprocessing, checked to agree.

Loaded from a folder holding `model.keras` and `meta.json` (the training output, or the copy inside a
BentoML model), so the service, the benchmark and the tests run exactly the same inference code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.preprocess import DEFAULT_MAX_PIXELS, InvalidImageError, PreprocessConfig, preprocess

MODEL_FILE = "model.keras"
META_FILE = "meta.json"


class ModelBundleError(RuntimeError):
    """The model folder is missing a file or its parts disagree; the message says how to fix it."""


def read_meta(path: Path) -> tuple[list[str], PreprocessConfig]:
    """Parse and check `meta.json` (written by training): class names and preprocessing config."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelBundleError(f"{path} not found; run `make repro` to train the model first") from None
    except json.JSONDecodeError as exc:
        raise ModelBundleError(f"{path} is not valid JSON ({exc}); re-run `make repro`") from None
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelBundleError(
            f"{path}: 'classes' must be a non-empty list of distinct names; got {classes!r}"
        )
    try:
        config = PreprocessConfig.from_dict(meta["preprocess"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelBundleError(f"{path}: invalid 'preprocess' section ({exc})") from None
    return classes, config


def limit_threads(threads: int) -> bool:
    """Cap TensorFlow's intra- and inter-op pools; return whether it took effect.

    The model is small: splitting one batch over both cores gains less than it costs, and the second core
    is then free for the event loop that parses the HTTP requests. Measured with `make bench-serve` on 2
    cores: one thread each took c=16 from 473 to 671 req/s and its p99 from 71 to 33 ms.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran in this process (in-process tests): pools stay as they are
        return False
    return True


@dataclass
class Classifier:
    model: Any
    classes: list[str]
    preprocess: PreprocessConfig

    @classmethod
    def load(cls, folder: str | os.PathLike, *, threads: int | None = None) -> Classifier:
        """Load the bundle; `threads` caps TensorFlow's thread pools (see :func:`limit_threads`)."""
        folder = Path(folder)
        classes, config = read_meta(folder / META_FILE)
        model_path = folder / MODEL_FILE
        if not model_path.is_file():
            raise ModelBundleError(f"{model_path} not found; run `make repro` to train the model first")
        import keras  # deferred: importing TensorFlow takes seconds and only inference needs it

        if threads:
            limit_threads(threads)
        model = keras.models.load_model(model_path, compile=False)
        expected_in = (None, *config.input_shape)
        if tuple(model.input_shape) != expected_in:
            raise ModelBundleError(
                f"{model_path} expects input {tuple(model.input_shape)} but meta.json's preprocess config "
                f"gives {expected_in}; the two files come from different training runs"
            )
        if model.output_shape[-1] != len(classes):
            raise ModelBundleError(
                f"{model_path} has {model.output_shape[-1]} outputs; meta.json names {len(classes)} classes"
            )
        return cls(model=model, classes=classes, preprocess=config)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, n_classes) for a preprocessed batch.

        `predict_on_batch` runs the compiled graph without the per-call set-up of `model.predict`
        (tens of milliseconds), which is what makes per-request serving affordable.
        """
        if len(batch) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)

    def classify(
        self, uploads: Sequence[bytes], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[np.ndarray | InvalidImageError]:
        """Decode, preprocess and run a batch of uploaded files in one model call.

        A file that is not a usable image gets its own :class:`InvalidImageError` in its slot; the others
        are still answered, so one bad upload never fails the requests batched with it.
        """
        results: list[np.ndarray | InvalidImageError] = []
        arrays: list[np.ndarray] = []
        for data in uploads:
            try:
                arrays.append(self.prepare(data, max_pixels=max_pixels))
                results.append(None)  # type: ignore[arg-type]  # filled below
            except InvalidImageError as exc:
                results.append(exc)
        if arrays:
            probabilities = iter(self.predict(np.stack(arrays)))
            results = [next(probabilities) if r is None else r for r in results]
        return results

    def prepare(self, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """One upload as model input, through `ml.preprocess` unchanged; any failure is an InvalidImageError.

        Pillow raises more than it documents on hostile files; such an error belongs to this upload alone
        and must not fail the other requests batched with it.
        """
        try:
            return preprocess(data, self.preprocess, max_pixels=max_pixels)
        except InvalidImageError:
            raise
        except Exception as exc:
            raise InvalidImageError(
                f"the image could not be processed ({type(exc).__name__}: {exc}); it may be corrupt: "
                "re-save it as a plain JPEG or PNG"
            ) from exc

    def warm_up(self) -> None:
        """Trace the graph for a single image and for a batch, so the first requests are not slow."""
        for size in (1, 2):
            self.predict(np.zeros((size, *self.preprocess.input_shape), dtype=np.float32))

    def to_response(self, probabilities: Sequence[float]) -> dict[str, Any]:
        """`{"prediction": class, "probabilities": {class: p}}`, the body `/predict` answers."""
        probs = [float(p) for p in probabilities]
        best = max(range(len(probs)), key=probs.__getitem__)
        return {
            "prediction": self.classes[best],
            "probabilities": dict(zip(self.classes, probs, strict=True)),
        }
