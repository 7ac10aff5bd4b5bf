"""DVC stage `train`: fit the CNN on data/prepared/train.npz and save it with what serving needs to use it.

Writes the model bundle (ml/bundle.py): ``model/model.keras``, ``model/model.onnx`` (exported and checked
against Keras on the whole validation split by ml/export.py), ``model/novelty.npz`` (the unknown-image
detector, fitted on the embeddings of the exported graph: what serving computes) and ``model/meta.json``; and
``evaluation/history.csv`` (one row per epoch, for the history plot). Seeds and TensorFlow's op
determinism make the same data and params give the same weights, hence the same metrics.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

from ml.bundle import (
    KERAS_FILE,
    META_FILE,
    MODEL_DIR,
    NOVELTY_FILE,
    ONNX_FILE,
    BundleError,
    BundleMeta,
    NoveltySpec,
    write_bundle_meta,
)
from ml.export import ExportError, check_parity, export_onnx, runtime_versions
from ml.inference import Predictor
from ml.novelty import NoveltyError, NoveltyModel, embed_batches
from ml.params import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from ml.prepare import PREPARED_DIR, PrepareError, load_split, read_manifest
from ml.runtime import import_tensorflow, make_deterministic

HISTORY_PATH = Path("evaluation/history.csv")
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


class TrainError(RuntimeError):
    """Training cannot start: the prepared data is missing or does not match params.yaml."""


def check_prepared(params: Params, prepared_dir: Path) -> dict:
    """Refuse prepared data made with other preprocessing than params.yaml now asks for (a stale stage)."""
    try:
        manifest = read_manifest(prepared_dir)
    except PrepareError as exc:
        raise TrainError(str(exc)) from None
    wanted = params.prepare.preprocess.to_dict()
    if manifest["preprocess"] != wanted:
        raise TrainError(
            f"{prepared_dir} was prepared with {manifest['preprocess']} but params.yaml asks for {wanted}; "
            "run `dvc repro` (or `python -m ml.prepare`) first"
        )
    return manifest


def _epoch_logger(epochs: int, log):
    import keras

    class EpochLine(keras.callbacks.Callback):
        """One compact line per epoch; Keras' own progress bars are noise in CI logs."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log(
                f"  epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  loss {logs['loss']:.4f}  "
                f"acc {logs['accuracy']:.4f}  val_loss {logs['val_loss']:.4f}  "
                f"val_acc {logs['val_accuracy']:.4f}  {time.perf_counter() - self.start:.1f} s"
            )

    return EpochLine()


def batches(split, batch_size: int, shuffle_seed: int | None = None):
    """A tf.data pipeline over the arrays, reshuffled every epoch from a fixed seed."""
    tf = import_tensorflow()
    data = tf.data.Dataset.from_tensor_slices((split.x, split.y))
    if shuffle_seed is not None:
        data = data.shuffle(len(split.y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(2)


def write_history(history: dict[str, list[float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_COLUMNS)
        for i in range(len(history["loss"])):
            writer.writerow([i + 1, *(f"{history[k][i]:.6f}" for k in HISTORY_COLUMNS[1:])])


def fit_novelty(predictor: Predictor, train_split, val_split, params: Params) -> NoveltyModel:
    """The unknown-image detector on the embeddings of the exported graph (the numbers serving sees):
    class Gaussians from the training split, the threshold from the validation split."""
    _, train_embeddings = embed_batches(predictor.run, train_split.x)
    _, val_embeddings = embed_batches(predictor.run, val_split.x)
    try:
        return NoveltyModel.fit(train_embeddings, train_split.y, val_embeddings, params=params.novelty)
    except NoveltyError as exc:
        raise TrainError(f"the novelty model cannot be fitted: {exc}") from None


def train(
    params: Params,
    prepared_dir: Path = PREPARED_DIR,
    model_dir: Path = MODEL_DIR,
    history_path: Path = HISTORY_PATH,
    *,
    log=print,
):
    """Fit, save the model, its meta and the history; return the fitted Keras model."""
    manifest = check_prepared(params, prepared_dir)
    make_deterministic(params.train.seed)
    from ml.model import build_model

    train_split = load_split("train", prepared_dir)
    val_split = load_split("val", prepared_dir)
    batch_size = params.prepare.batch_size
    model = build_model(
        train_split.config.input_shape,
        len(manifest["classes"]),
        params.train,
        steps_per_epoch=math.ceil(len(train_split.y) / batch_size),
    )
    log(
        f"train: {len(train_split.y)} images ({len(val_split.y)} for validation), "
        f"input {'x'.join(map(str, train_split.config.input_shape))}, {model.count_params():,} weights, "
        f"{params.train.epochs} epochs of batch {batch_size}"
    )
    fit = model.fit(
        batches(train_split, batch_size, shuffle_seed=params.train.seed),
        epochs=params.train.epochs,
        validation_data=batches(val_split, batch_size),
        shuffle=False,  # the dataset reshuffles itself, from the seed
        verbose=0,
        callbacks=[_epoch_logger(params.train.epochs, log)],
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / KERAS_FILE)
    (model_dir / META_FILE).unlink(missing_ok=True)  # no meta.json until the export has passed its check
    (model_dir / NOVELTY_FILE).unlink(missing_ok=True)
    width = export_onnx(model, model_dir / ONNX_FILE)
    meta = BundleMeta(
        classes=manifest["classes"],
        preprocess=train_split.config.to_dict(),
        params={"prepare": params.prepare.model_dump(), "train": params.train.model_dump()},
        versions=runtime_versions(),
        n_train=len(train_split.y),
        embedding_dim=width,
    )
    predictor = Predictor.open(model_dir / ONNX_FILE, meta)
    parity = check_parity(model, predictor, val_split.x)
    log(f"export: {model_dir / ONNX_FILE} matches Keras on all {parity['images']} validation images "
        f"(largest probability difference {parity['max_abs_diff']:.1e})")
    novelty = fit_novelty(predictor, train_split, val_split, params)
    novelty.save(model_dir / NOVELTY_FILE)
    log(f"novelty: {params.novelty.method}, threshold {novelty.threshold:.3f} flags "
        f"{novelty.val_flagged_rate:.1%} of {novelty.n_val} validation images "
        f"(wanted {params.novelty.false_unknown_rate:.1%})")
    meta = meta.model_copy(update={"novelty": NoveltySpec(**novelty.describe())})
    write_bundle_meta(model_dir, meta)
    write_history(fit.history, history_path)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--history", type=Path, default=HISTORY_PATH)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        params = load_params(args.params)
        train(params, args.prepared, args.model_dir, args.history)
    except (ParamsError, TrainError, ExportError, BundleError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    files = ", ".join(str(args.model_dir / name) for name in (KERAS_FILE, ONNX_FILE, NOVELTY_FILE, META_FILE))
    print(f"train: wrote {files} and {args.history} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
