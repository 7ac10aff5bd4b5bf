"""Inference without TensorFlow: the exported graph (model.onnx) run by onnxruntime.

The serving image, the benchmark and the pipeline's export check all run the model through
:class:`Predictor`, so the numbers the pipeline checks against Keras are the numbers the service answers.
Importing this module never imports TensorFlow or Keras (a test checks it): onnxruntime, numpy, pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.bundle import FIX, ONNX_FILE, BundleError, BundleMeta, bundle_file, read_bundle
from ml.preprocess import PreprocessConfig

INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "embedding")


@dataclass
class Predictor:
    meta: BundleMeta
    session: object  # onnxruntime.InferenceSession
    path: Path

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.meta.preprocess_config

    @classmethod
    def load(cls, folder: Path, *, threads: int = 1) -> Predictor:
        """The bundle in `folder` (meta.json + model.onnx), checked to belong together."""
        meta = read_bundle(Path(folder))
        return cls.open(bundle_file(Path(folder), ONNX_FILE), meta, threads=threads)

    @classmethod
    def open(cls, path: Path, meta: BundleMeta, *, threads: int = 1) -> Predictor:
        """An ONNX file with the meta it is meant to go with (the export check uses it before writing meta).

        `threads` is onnxruntime's intra-op pool. One is the default: the model is small, splitting a batch
        over cores gains less than it costs, and the other core stays free for the HTTP event loop.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about unused initializers are noise in service logs
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BundleError(f"{path} is not a model onnxruntime can load ({exc}); {FIX}") from None
        predictor = cls(meta=meta, session=session, path=Path(path))
        predictor._check()
        return predictor

    def _check(self) -> None:
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        if [i.name for i in inputs] != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise BundleError(
                f"{self.path} has inputs {[i.name for i in inputs]} and outputs {sorted(outputs)}; expected "
                f"[{INPUT_NAME!r}] and {list(OUTPUT_NAMES)} (an export from another version of orbit); {FIX}"
            )
        expected_in = (*self.preprocess.input_shape,)
        if tuple(inputs[0].shape[1:]) != expected_in:
            raise BundleError(
                f"{self.path} expects input {tuple(inputs[0].shape[1:])} but meta.json's preprocess config "
                f"gives {expected_in}; the two files come from different training runs; {FIX}"
            )
        n_out = outputs["probabilities"].shape[-1]
        if n_out != len(self.classes):
            raise BundleError(
                f"{self.path} has {n_out} outputs; meta.json names {len(self.classes)} classes; {FIX}"
            )
        width = outputs["embedding"].shape[-1]
        if width != self.meta.embedding_dim:
            raise BundleError(
                f"{self.path} gives embeddings of {width} values; meta.json says "
                f"{self.meta.embedding_dim}; {FIX}"
            )

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, n_classes), embedding (N, embedding_dim)) for preprocessed pixels: one call."""
        if len(x) == 0:
            return (
                np.zeros((0, len(self.classes)), dtype=np.float32),
                np.zeros((0, self.meta.embedding_dim), dtype=np.float32),
            )
        probabilities, embedding = self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        )
        return probabilities, embedding

    def warm_up(self) -> None:
        """Run a single image and a batch once, so the first requests do not pay the allocations."""
        for size in (1, 2):
            self.run(np.zeros((size, *self.preprocess.input_shape), dtype=np.float32))
