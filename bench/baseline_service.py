"""The guide-style service `make bench-serve` compares against: one `model.predict` call per request.

It is what a first BentoML service usually looks like (a PIL image in, Keras `predict` on a batch of
one, a dict out): correct, but each call pays Keras' per-call set-up of tens of milliseconds and no
requests are ever batched. Only the benchmark runs it; it is not part of the served bento.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
from PIL.Image import Image

from ml.bundle import read_bundle
from ml.preprocess import preprocess
from serving.config import load_settings

SETTINGS = load_settings()


@bentoml.service
class GuideStyleClassifier:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        import keras

        meta = read_bundle(Path(self.model_ref.path))
        # The served model holds no Keras file (serving runs model.onnx); the benchmark names the bundle's.
        self.model = keras.models.load_model(os.environ["ORBIT_BENCH_KERAS_MODEL"], compile=False)
        self.classes, self.config = meta.classes, meta.preprocess_config

    @bentoml.api
    def predict(self, image: Image) -> dict:
        probabilities = self.model.predict(preprocess(image, self.config)[None], verbose=0)[0]
        best = int(probabilities.argmax())
        return {
            "prediction": self.classes[best],
            "probabilities": {c: float(p) for c, p in zip(self.classes, probabilities, strict=True)},
        }
