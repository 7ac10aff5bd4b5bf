"""DVC stage `evaluate`: score the model on the validation split, draw the plots and write the report.

Writes ``evaluation/metrics.json`` (the keys in docs/architecture.md), ``evaluation/predictions.csv`` (one
row per validation image, for `dvc plots` and for reading mistakes), ``evaluation/plots/*.png`` and one
self-contained ``evaluation/report.html``. :func:`predict_files` is the reference prediction path that
the serving parity test compares the service against.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ml import novelty_eval, origin
from ml.bundle import KERAS_FILE, MODEL_DIR, BundleError, BundleMeta, bundle_file, read_bundle
from ml.params import DEFAULT_PARAMS_PATH, ParamsError, load_params
from ml.prepare import PREPARED_DIR, PrepareError, Split, load_split, read_manifest
from ml.preprocess import PreprocessConfig, preprocess_batch
from ml.runtime import import_tensorflow
from ml.train import HISTORY_PATH

EVAL_DIR = Path("evaluation")
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
METRIC_KEYS = (
    "accuracy", "loss", "precision_macro", "recall_macro", "f1_macro", "per_class_accuracy", "n_val",
    *origin.METRIC_KEYS,
    *novelty_eval.METRIC_KEYS,
)


class EvaluateError(RuntimeError):
    """The model, its meta or the prepared data are missing or do not belong together."""


def predict_arrays(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for preprocessed pixels, batch by batch (no `predict`: it costs ~40 ms a call)."""
    if len(x) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    chunks = [np.asarray(model.predict_on_batch(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks).astype(np.float32)


def predict_files(model, paths: Sequence[Path], config: PreprocessConfig, batch_size: int = 64) -> np.ndarray:
    """Probabilities (N, n_classes) for image files, through the same preprocess serving uses."""
    chunks = [
        predict_arrays(model, preprocess_batch(paths[i : i + batch_size], config), batch_size)
        for i in range(0, len(paths), batch_size)
    ]
    if not chunks:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(chunks)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """The metrics.json payload, from scikit-learn; rounded so that diffs stay readable."""
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

    labels = list(range(len(classes)))
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    per_class = {
        c: round(float(matrix[k, k] / support[k]), 6) if support[k] else None for k, c in enumerate(classes)
    }
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "loss": round(float(log_loss(y_true, probs, labels=labels)), 6),
        "precision_macro": round(float(precision), 6),
        "recall_macro": round(float(recall), 6),
        "f1_macro": round(float(f1), 6),
        "per_class_accuracy": per_class,
        "n_val": int(len(y_true)),
    }


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class, for the report."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), average=None, zero_division=0
    )
    return [
        {"class": c, "precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k, c in enumerate(classes)
    ]


def load_model_and_meta(model_dir: Path) -> tuple[object, BundleMeta]:
    """The Keras model and the bundle's meta, through ml.bundle (which says how to fix a missing file)."""
    try:
        meta = read_bundle(model_dir)
        model_path = bundle_file(model_dir, KERAS_FILE)
    except BundleError as exc:
        raise EvaluateError(str(exc)) from None
    import_tensorflow()
    import keras

    return keras.models.load_model(model_path), meta


def write_predictions(path: Path, split: Split, probs: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "actual", "predicted", "confidence"])
        for file, y, p in zip(split.files, split.y, probs, strict=True):
            writer.writerow([file, split.classes[y], split.classes[int(p.argmax())], f"{p.max():.4f}"])


def evaluate(
    preview_count: int,
    prepared_dir: Path = PREPARED_DIR,
    model_dir: Path = MODEL_DIR,
    out_dir: Path = EVAL_DIR,
    history_path: Path = HISTORY_PATH,
    *,
    batch_size: int = 64,
) -> tuple[dict, Path]:
    """Score, plot and report; return the metrics and the report's path."""
    from ml import plots, report

    try:
        val = load_split("val", prepared_dir)
    except PrepareError as exc:
        raise EvaluateError(str(exc)) from None
    except FileNotFoundError as exc:
        message = f"{exc.filename} is missing; run the prepare stage first (`dvc repro prepare`)"
        raise EvaluateError(message) from None
    model, meta = load_model_and_meta(model_dir)
    if meta.classes != val.classes or meta.preprocess_config != val.config:
        raise EvaluateError(
            f"{model_dir} was trained on other classes or preprocessing than {prepared_dir} holds; "
            "run `dvc repro` so that both come from the same params"
        )
    probs = predict_arrays(model, val.x, batch_size)
    y_pred = probs.argmax(axis=1)
    metrics = compute_metrics(val.y, probs, val.classes)
    labelled = read_manifest(prepared_dir).get("labelled", {})  # before/after a data change: ml/origin.py
    metrics |= origin.origin_metrics(val.files, val.y, y_pred, labelled)
    try:  # the unknown-image detector, through the exported graph as the service runs it
        novelty, scores, threshold = novelty_eval.novelty_metrics(model_dir, meta, val.x, val.y)
    except BundleError as exc:
        raise EvaluateError(str(exc)) from None
    metrics |= novelty

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(out_dir / PREDICTIONS_FILE, val, probs)
    figures = plots.draw_all(out_dir / PLOTS_DIR, val, probs, history_path, preview_count)
    figures.append(("Novelty: known vs unknown images",
                    plots.novelty_histogram(scores, threshold, out_dir / PLOTS_DIR / plots.NOVELTY_PNG)))
    report_path = out_dir / REPORT_FILE
    report.write_report(
        report_path,
        metrics=metrics,
        per_class=per_class_table(val.y, y_pred, val.classes),
        figures=figures,
        meta=meta.model_dump(),
        mistakes=[(val.files[i], val.classes[val.y[i]], val.classes[y_pred[i]]) for i in np.flatnonzero(
            y_pred != val.y)],
    )
    return metrics, report_path


def summary(metrics: dict) -> str:
    worst = sorted((v, k) for k, v in metrics["per_class_accuracy"].items() if v is not None)[:3]
    return "\n".join([
        f"  accuracy  {metrics['accuracy']:.4f}   ({metrics['n_val']} validation images, "
        f"{round((1 - metrics['accuracy']) * metrics['n_val'])} wrong)",
        f"  loss      {metrics['loss']:.4f}",
        f"  macro P/R/F1  {metrics['precision_macro']:.4f} / {metrics['recall_macro']:.4f} / "
        f"{metrics['f1_macro']:.4f}",
        "  lowest per-class accuracy: " + ", ".join(f"{k} {v:.3f}" for v, k in worst),
        *_novelty_lines(metrics),
    ])


def _novelty_lines(metrics: dict) -> list[str]:
    if "novelty_val_flagged" not in metrics:
        return []
    sets = ", ".join(
        f"{name} {metrics[f'novelty_flagged_{name}']:.1%} (AUROC {metrics[f'novelty_auroc_{name}']:.4f})"
        for name in novelty_eval.UNKNOWN_SETS
    )
    return [f"  unknown: {metrics['novelty_val_flagged']:.1%} of validation images flagged; flagged {sets}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--history", type=Path, default=HISTORY_PATH)
    parser.add_argument("--out", type=Path, default=EVAL_DIR)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        params = load_params(args.params)
        metrics, report_path = evaluate(
            params.evaluate.preview_count, args.prepared, args.model_dir, args.out, args.history
        )
    except (ParamsError, EvaluateError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"evaluate: {args.out / METRICS_FILE} ({time.perf_counter() - start:.1f} s)")
    print(summary(metrics))
    print(f"report: {report_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
