"""The unknown-image detector: how far an image's embedding lies from every class the model was trained on.

The classifier's probabilities cannot say "none of these": a dwarf planet comes back as a confident
"Jupiter". The penultimate embedding can. Fitted on the *training* embeddings, a class-conditional Gaussian
with one shared covariance (Ledoit-Wolf shrinkage, so 128 dimensions from about a thousand images stay
well conditioned) gives each image its Mahalanobis distance to the nearest class mean; the *relative*
variant (Ren et al. 2021, "A simple fix to Mahalanobis distance") subtracts the distance to one Gaussian
fitted on all classes together, which removes what every image shares and widens the gap to near
unknowns. On orbit's real data (``make bench-novelty``) both reach AUROC >= 0.999 against the guide's
dwarf planets, where 1 - max(probability) reaches about 0.91.

The threshold is the score that the wanted share of *validation* images exceed
(``novelty.false_unknown_rate`` in params.yaml), so it is set on images the network did not fit.

Pure numpy/scikit-learn: serving imports this without TensorFlow. Scoring is one matrix product and a
few reductions per batch (each distance expands into one shared quadratic and a linear term per class);
the fitted model is a small ``.npz`` (``NOVELTY_FILE``) in the model bundle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import get_args

import numpy as np

from ml.bundle import FIX, NOVELTY_FILE, BundleError, BundleMeta
from ml.params import NoveltyParams

FORMAT_VERSION = 1
METHODS: tuple[str, ...] = get_args(NoveltyParams.model_fields["method"].annotation)
#: A class mean from fewer images is mostly noise, and its images would all look unknown to each other.
MIN_IMAGES_PER_CLASS = 5


class NoveltyError(ValueError):
    """The novelty model cannot be fitted, loaded or applied; the message says what is wrong and the fix."""


def _as_embeddings(name: str, values, width: int | None = None) -> np.ndarray:
    """float64 (N, D), or a NoveltyError naming the problem. Finiteness is checked by the callers."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise NoveltyError(f"{name} must be an array of real numbers (images, embedding width)") from None
    if array.ndim != 2:
        raise NoveltyError(f"{name} must be a 2-D array (images, embedding width); got shape {array.shape}")
    if width is not None and array.shape[1] != width:
        raise NoveltyError(
            f"{name} have width {array.shape[1]} but the novelty model was fitted on embeddings of width "
            f"{width}: it belongs to another model; refit it with the model (`dvc repro`)"
        )
    return array


def _check_finite(name: str, array: np.ndarray, result: np.ndarray | None = None) -> None:
    """Refuse NaN/inf rows. With `result`, the cheap check is on the (N,) result: a non-finite input
    always makes its row's score non-finite, so the inputs are searched only when something is wrong."""
    if result is not None and np.isfinite(result).all():
        return
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        raise NoveltyError(f"{name} hold NaN or infinite values in {len(rows)} row(s) ({shown})")
    if result is not None:
        raise NoveltyError(f"{name} hold values too large to score (the distances overflow)")


def _labels(train_labels, n: int) -> tuple[np.ndarray, int]:
    labels = np.asarray(train_labels)
    if labels.shape != (n,):
        raise NoveltyError(f"train_labels needs one label per embedding, shape ({n},); got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise NoveltyError(f"train_labels must be integer class indices; got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise NoveltyError("train_labels must be class indices 0..K-1; found a negative label")
    counts = np.bincount(labels.astype(np.int64), minlength=1)
    thin = {k: int(c) for k, c in enumerate(counts) if c < MIN_IMAGES_PER_CLASS}
    if thin:
        listing = ", ".join(f"class {k}: {c}" for k, c in thin.items())
        raise NoveltyError(
            f"too few training images to fit the novelty model ({listing}; at least {MIN_IMAGES_PER_CLASS} "
            "per class, for classes 0..K-1); add images to those classes"
        )
    return labels.astype(np.int64), len(counts)


def threshold_for_rate(val_scores: np.ndarray, rate: float) -> float:
    """The score that floor(rate * n) of the n validation scores exceed: those are the known images that
    would be flagged. With fewer than 1 / rate images that is none, and the threshold is the highest score."""
    ordered = np.sort(np.asarray(val_scores, dtype=np.float64))
    allowed = math.floor(rate * len(ordered) + 1e-9)
    return float(ordered[len(ordered) - 1 - allowed])


class NoveltyModel:
    """Distance of embeddings to the training classes; ``score > threshold`` means unknown."""

    def __init__(
        self,
        *,
        class_means: np.ndarray,
        precision: np.ndarray,
        background_mean: np.ndarray,
        background_precision: np.ndarray,
        method: str,
        threshold: float,
        false_unknown_rate: float,
        val_flagged_rate: float,
        n_train: int,
        n_val: int,
    ) -> None:
        if method not in METHODS:
            raise NoveltyError(f"unknown novelty method {method!r}; use one of {', '.join(METHODS)}")
        self.class_means = np.asarray(class_means, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)
        self.background_mean = np.asarray(background_mean, dtype=np.float64)
        self.background_precision = np.asarray(background_precision, dtype=np.float64)
        dim = self.class_means.shape[1]
        shapes = (self.precision.shape, self.background_mean.shape, self.background_precision.shape)
        if shapes != ((dim, dim), (dim,), (dim, dim)):
            raise NoveltyError(f"inconsistent novelty model arrays for embedding width {dim}: {shapes}")
        self.method = method
        self.threshold = float(threshold)
        self.false_unknown_rate = float(false_unknown_rate)
        self.val_flagged_rate = float(val_flagged_rate)
        self.n_train, self.n_val = int(n_train), int(n_val)
        # Every class distance minus the background distance is x'Qx + l_k.x + c_k, with one Q for all
        # classes: scoring is one product with [Q | L] per batch and a few reductions.
        mu, mu0 = self.class_means, self.background_mean
        p, p0 = self.precision, self.background_precision
        if method == "mahalanobis":
            p0 = np.zeros_like(p0)
        linear = -2 * (mu @ p - mu0 @ p0)  # (K, D)
        self._offsets = np.einsum("kd,de,ke->k", mu, p, mu) - mu0 @ p0 @ mu0
        self._weights = np.hstack([p - p0, linear.T])  # (D, D + K)

    @property
    def embedding_dim(self) -> int:
        return self.class_means.shape[1]

    @property
    def n_classes(self) -> int:
        return self.class_means.shape[0]

    @classmethod
    def fit(cls, train_embeddings, train_labels, val_embeddings, *, params: NoveltyParams) -> NoveltyModel:
        """Fit the class Gaussians on the training split; set the threshold on the validation split."""
        from sklearn.covariance import LedoitWolf

        train = _as_embeddings("train_embeddings", train_embeddings)
        _check_finite("train_embeddings", train)
        labels, n_classes = _labels(train_labels, len(train))
        val = _as_embeddings("val_embeddings", val_embeddings, train.shape[1])
        _check_finite("val_embeddings", val)
        if len(val) == 0:
            raise NoveltyError("val_embeddings is empty: the threshold needs validation images")
        means = np.stack([train[labels == k].mean(axis=0) for k in range(n_classes)])
        shared = LedoitWolf().fit(train - means[labels])
        background = LedoitWolf().fit(train)
        model = cls(
            class_means=means,
            precision=shared.precision_,
            background_mean=background.location_,
            background_precision=background.precision_,
            method=params.method,
            threshold=np.inf,
            false_unknown_rate=params.false_unknown_rate,
            val_flagged_rate=0.0,
            n_train=len(train),
            n_val=len(val),
        )
        val_scores = model.score(val)
        model.threshold = threshold_for_rate(val_scores, params.false_unknown_rate)
        model.val_flagged_rate = float(np.mean(val_scores > model.threshold))
        return model

    def score(self, embeddings, probabilities: np.ndarray | None = None) -> np.ndarray:
        """(N,) float64, higher = less like the training images. `probabilities` is accepted for the
        interface and checked for shape, but unused: on orbit's data they add nothing to the embedding."""
        x = _as_embeddings("embeddings", embeddings, self.embedding_dim)
        if probabilities is not None:
            p = np.asarray(probabilities)
            if p.shape != (len(x), self.n_classes):
                raise NoveltyError(
                    f"probabilities must have shape ({len(x)}, {self.n_classes}) to match the embeddings; "
                    f"got {p.shape}"
                )
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows are reported just below
            y = x @ self._weights
            dim = self.embedding_dim
            scores = np.einsum("nd,nd->n", y[:, :dim], x) + (y[:, dim:] + self._offsets).min(axis=1)
        _check_finite("embeddings", x, scores)
        return scores

    def is_unknown(self, embeddings, probabilities: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: the score exceeds the threshold chosen on validation data."""
        return self.score(embeddings, probabilities) > self.threshold

    def describe(self) -> dict:
        """JSON-ready summary for the bundle's meta.json (`novelty`) and reports."""
        return {
            "file": NOVELTY_FILE,
            "method": self.method,
            "threshold": self.threshold,
            "false_unknown_rate": self.false_unknown_rate,
            "val_flagged_rate": self.val_flagged_rate,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "embedding_dim": self.embedding_dim,
            "n_classes": self.n_classes,
        }

    def save(self, path: Path) -> None:
        """Write the fitted arrays (no pickle) to `path`, e.g. model/novelty.npz."""
        path = Path(path)
        with path.open("wb") as handle:  # a file handle: np.savez would append ".npz" to other names
            np.savez(
                handle,
                format_version=np.int64(FORMAT_VERSION),
                method=np.str_(self.method),
                class_means=self.class_means,
                precision=self.precision,
                background_mean=self.background_mean,
                background_precision=self.background_precision,
                threshold=np.float64(self.threshold),
                false_unknown_rate=np.float64(self.false_unknown_rate),
                val_flagged_rate=np.float64(self.val_flagged_rate),
                n_train=np.int64(self.n_train),
                n_val=np.int64(self.n_val),
            )

    @classmethod
    def load(cls, path: Path) -> NoveltyModel:
        path = Path(path)
        if not path.is_file():
            raise NoveltyError(f"{path} not found; fit the novelty model with the model (`dvc repro`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            message = f"{path} is not a readable novelty model ({exc}); refit: `dvc repro`"
            raise NoveltyError(message) from None
        version = int(fields.pop("format_version", -1))
        if version != FORMAT_VERSION:
            raise NoveltyError(
                f"{path} has novelty format {version}, this code reads {FORMAT_VERSION}; refit: `dvc repro`"
            )
        try:
            return cls(
                method=str(fields.pop("method")),
                threshold=float(fields.pop("threshold")),
                false_unknown_rate=float(fields.pop("false_unknown_rate")),
                val_flagged_rate=float(fields.pop("val_flagged_rate")),
                n_train=int(fields.pop("n_train")),
                n_val=int(fields.pop("n_val")),
                **fields,
            )
        except (KeyError, TypeError) as exc:
            raise NoveltyError(
                f"{path} lacks or has unexpected novelty fields ({exc}); refit it: `dvc repro`"
            ) from None


def embed_batches(run, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, embeddings) of `x` through `run` (:meth:`ml.inference.Predictor.run`), by batch."""
    parts = [run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)] or [run(x[:0])]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_from_bundle(folder: Path, meta: BundleMeta) -> NoveltyModel:
    """The bundle's novelty model, checked against its meta.json; any problem is a BundleError with the fix.

    The service refuses a bundle without one: it could not say `unknown`, and answering every dwarf planet
    with a confident known class is what the detector exists to prevent.
    """
    path = Path(folder) / NOVELTY_FILE
    if meta.novelty is None:
        raise BundleError(
            f"{Path(folder) / 'meta.json'} describes no novelty model (a bundle from before the "
            f"unknown-image detector); {FIX}, which also fits {NOVELTY_FILE}"
        )
    try:
        model = NoveltyModel.load(path)
    except NoveltyError as exc:
        raise BundleError(f"{exc}; {FIX}") from None
    described = model.describe()
    if model.embedding_dim != meta.embedding_dim or len(meta.classes) != model.n_classes \
            or described["threshold"] != meta.novelty.threshold:
        raise BundleError(
            f"{path} (embedding width {model.embedding_dim}, {model.n_classes} classes, threshold "
            f"{model.threshold:.4g}) does not belong to meta.json (width {meta.embedding_dim}, "
            f"{len(meta.classes)} classes, threshold {meta.novelty.threshold:.4g}); {FIX}"
        )
    return model


__all__ = [
    "METHODS",
    "MIN_IMAGES_PER_CLASS",
    "NOVELTY_FILE",
    "NoveltyError",
    "NoveltyModel",
    "embed_batches",
    "load_from_bundle",
    "threshold_for_rate",
]
