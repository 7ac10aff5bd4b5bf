"""The guide-style service `make bench-serve` compares against: one `model.predict` call per request.

It is what a first BentoML service usually looks like (a PIL image in, Keras `predict` on a batch of
one, a dict out): correct, but each call pays Keras' per-call set-up of tens of milliseconds and no
requests are ever batched. Only the benchmark runs it; it is not part of the served bento.
"""

from __future__ import annotations

import bentoml
from PIL.Image import Image

from ml.preprocess import preprocess
from serving.classifier import Classifier
from serving.config import load_settings

SETTINGS = load_settings()


@bentoml.service
class GuideStyleClassifier:
    model_ref = bentoml.models.BentoModel(SETTINGS.model_tag)

    def __init__(self) -> None:
        bundle = Classifier.load(self.model_ref.path)
        self.model, self.classes, self.config = bundle.model, bundle.classes, bundle.preprocess

    @bentoml.api
    def predict(self, image: Image) -> dict:
        probabilities = self.model.predict(preprocess(image, self.config)[None], verbose=0)[0]
        best = int(probabilities.argmax())
        return {
            "prediction": self.classes[best],
            "probabilities": {c: float(p) for c, p in zip(self.classes, probabilities, strict=True)},
        }
