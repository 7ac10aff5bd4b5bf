"""How well the bundle's unknown-image detector works, for the evaluate stage: known vs unknown images.

Known: the validation split. Unknown: synthetic dwarf planets (:func:`ml.synthetic.render_unknown`, bodies
the model never saw) and the probe kinds of :func:`ml.synthetic.probe_images` (crops of ordinary photos,
pixel noise, flat colour gradients). All are generated here from a fixed seed, so the numbers depend on the
model alone and need nothing outside the repository; the real dwarf planets of the guide are measured by
``make bench-novelty``. Everything runs through :class:`ml.inference.Predictor` and the bundle's
:class:`ml.novelty.NoveltyModel`: the exact computation the service answers with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.bundle import BundleMeta
from ml.inference import Predictor
from ml.novelty import embed_batches, load_from_bundle
from ml.preprocess import PreprocessConfig, preprocess
from ml.synthetic import PROBE_KINDS, UNKNOWN_BODIES, image_seed, probe_images, render_unknown

UNKNOWN_SETS = ("unknown_bodies", *PROBE_KINDS)
N_UNKNOWN = 100  # images per unknown set
SEED = 0
RENDER_SIZE = 128  # like the dataset's images

#: metrics.json keys written by :func:`novelty_metrics` (documented in docs/architecture.md).
METRIC_KEYS = (
    "accuracy_served",
    "novelty_threshold",
    "novelty_val_flagged",
    *(f"novelty_auroc_{name}" for name in UNKNOWN_SETS),
    *(f"novelty_flagged_{name}" for name in UNKNOWN_SETS),
)


def unknown_inputs(config: PreprocessConfig, n: int = N_UNKNOWN, seed: int = SEED) -> dict[str, np.ndarray]:
    """Preprocessed pixels of each unknown set, the same on every run."""
    bodies = [UNKNOWN_BODIES[i % len(UNKNOWN_BODIES)] for i in range(n)]
    images = {
        "unknown_bodies": [
            render_unknown(body, RENDER_SIZE, np.random.default_rng(image_seed(seed, body, i)))
            for i, body in enumerate(bodies)
        ]
    }
    for k, kind in enumerate(PROBE_KINDS):
        images[kind] = probe_images(kind, n, np.random.default_rng([seed, k]), size=RENDER_SIZE)
    return {name: np.stack([preprocess(im, config) for im in ims]) for name, ims in images.items()}


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Probability that an unknown image scores above a known one (1.0: a perfect separation)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(labels, np.r_[known, unknown]))


def novelty_metrics(
    model_dir: Path, meta: BundleMeta, x_val: np.ndarray, y_val: np.ndarray
) -> tuple[dict, dict[str, np.ndarray], float]:
    """(metrics, novelty scores per set with "known" for the validation split, threshold).

    Raises :class:`ml.bundle.BundleError` when the bundle lacks a usable model.onnx or novelty model.
    """
    predictor = Predictor.load(model_dir)
    detector = load_from_bundle(model_dir, meta)
    probabilities, embeddings = embed_batches(predictor.run, x_val)
    scores = {"known": detector.score(embeddings)}
    for name, x in unknown_inputs(meta.preprocess_config).items():
        scores[name] = detector.score(embed_batches(predictor.run, x)[1])
    threshold = detector.threshold
    metrics = {
        "accuracy_served": round(float(np.mean(probabilities.argmax(axis=1) == y_val)), 6),
        "novelty_threshold": round(threshold, 6),
        "novelty_val_flagged": round(float(np.mean(scores["known"] > threshold)), 6),
    }
    for name in UNKNOWN_SETS:
        metrics[f"novelty_auroc_{name}"] = round(auroc(scores["known"], scores[name]), 6)
    for name in UNKNOWN_SETS:
        metrics[f"novelty_flagged_{name}"] = round(float(np.mean(scores[name] > threshold)), 6)
    return metrics, scores, threshold
