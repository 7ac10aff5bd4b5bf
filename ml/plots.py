"""The evaluation figures, drawn with matplotlib (Agg, no display) as PNG files.

Each file is both a `dvc plots` image and a figure of the HTML report, so both show the same pictures.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ml.prepare import Split  # noqa: E402

HISTORY_PNG = "training_history.png"
CONFUSION_PNG = "confusion_matrix.png"
PREVIEW_PNG = "predictions_preview.png"
MISCLASSIFIED_PNG = "misclassified.png"
NOVELTY_PNG = "novelty_histogram.png"
MAX_MISCLASSIFIED = 48
RIGHT, WRONG = "#1a7f37", "#cf222e"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def read_history(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0].keys() if rows else [])}


def history_plot(history: dict[str, list[float]], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = history.get("epoch", [])
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history.get(key, []), marker="o", ms=3, label="train")
        ax.plot(epochs, history.get(f"val_{key}", []), marker="o", ms=3, label="validation")
        ax.set(xlabel="epoch", ylabel=key, title=key.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_plot(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], path: Path) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(len(classes))), display_labels=classes, normalize="true",
        values_format=".2f", cmap="Blues", ax=ax, colorbar=False, xticks_rotation=45,
    )
    ax.set_title("Confusion matrix (each row sums to 1)")
    return _save(fig, path)


def _show(ax, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(split: Split, probs: np.ndarray, indices: np.ndarray, title: str, path: Path) -> Path:
    """Images with their prediction; a green frame when right, a red one (and the truth) when wrong."""
    cols = min(len(indices), 8)
    rows = -(-len(indices) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(1.6 * cols, 3.2), 1.95 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices, strict=False):
        ax.axis("on")
        _show(ax, split.x[i])
        predicted, actual = int(probs[i].argmax()), int(split.y[i])
        ok = predicted == actual
        label = f"{split.classes[predicted]} {probs[i].max():.2f}"
        if not ok:
            label += f"\n(is {split.classes[actual]})"
        ax.set_title(("✓ " if ok else "✗ ") + label, fontsize=8, color=RIGHT if ok else WRONG)
        for spine in ax.spines.values():
            spine.set(color=RIGHT if ok else WRONG, linewidth=2.5)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def nothing_plot(message: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=13, color=RIGHT)
    return _save(fig, path)


def preview_indices(n: int, count: int) -> np.ndarray:
    """Evenly spread over the (class-sorted) split, so every class appears when count >= n_classes."""
    return np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int)) if n else np.array([], int)


def draw_all(
    out_dir: Path, split: Split, probs: np.ndarray, history_path: Path, preview_count: int
) -> list[tuple[str, Path]]:
    """Write every figure; return (title, path) pairs in report order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != split.y)
    figures = []
    if history_path.is_file():
        figures.append(("Training history", history_plot(read_history(history_path), out_dir / HISTORY_PNG)))
    confusion = confusion_plot(split.y, y_pred, split.classes, out_dir / CONFUSION_PNG)
    figures.append(("Confusion matrix", confusion))
    shown = preview_indices(len(split.y), preview_count)
    figures.append((
        "Predictions preview",
        image_grid(split, probs, shown, f"{len(shown)} validation images: prediction and confidence",
                   out_dir / PREVIEW_PNG),
    ))
    if len(wrong):
        title = f"Misclassified: {len(wrong)} of {len(split.y)}"
        if len(wrong) > MAX_MISCLASSIFIED:
            title += f" (first {MAX_MISCLASSIFIED} shown)"
        grid = image_grid(split, probs, wrong[:MAX_MISCLASSIFIED], title, out_dir / MISCLASSIFIED_PNG)
    else:
        message = f"No misclassified images: all {len(split.y)} are right"
        grid = nothing_plot(message, out_dir / MISCLASSIFIED_PNG)
    figures.append(("Misclassified images", grid))
    return figures


def novelty_histogram(scores: dict[str, np.ndarray], threshold: float, path: Path) -> Path:
    """Novelty of known (`scores["known"]`) vs each unknown set, with the threshold. Scores beyond a few
    times the known range are piled into the last bin, so the known side stays readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    known = scores["known"]
    low = float(min(known.min(), threshold))
    span = max(float(known.max()), threshold) - low
    high = low + 3 * span if span > 0 else low + 1.0
    bins = np.linspace(low, high, 61)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for name, values in scores.items():
        ax.hist(np.clip(values, low, high), bins=bins, histtype="step" if name != "known" else "stepfilled",
                alpha=0.45 if name == "known" else 0.9, linewidth=1.6, density=True,
                label=f"{name.replace('_', ' ')} ({len(values)})", color=RIGHT if name == "known" else None)
    ax.axvline(threshold, color=WRONG, linestyle="--", label=f"threshold {threshold:.1f}")
    ax.set(xlabel=f"novelty (higher = less like the training images; clipped at {high:.0f})",
           ylabel="density", title="Novelty of known (validation) and unknown images")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
