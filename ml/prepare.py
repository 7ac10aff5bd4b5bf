"""DVC stage `prepare`: split data/raw stratified by seed and store both splits as preprocessed arrays.

Every image goes through :func:`ml.preprocess.preprocess`, the same function serving calls, so training
and serving see identical pixels. Pixels are stored as uint8 (4x smaller than float32): preprocess yields
exact multiples of 1/255, so :func:`load_split` restores its float32 output bit for bit, and
:func:`encode_pixels` refuses anything that would not round-trip.

Layout of ``data/prepared/``: ``train.npz`` and ``val.npz`` (``x`` uint8 (N, H, W, C), ``y`` int64) and
``manifest.json`` (classes, preprocess config, split params and the source files of each split).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.classes import CLASSES
from ml.params import DEFAULT_PARAMS_PATH, ParamsError, PrepareParams, load_params
from ml.preprocess import InvalidImageError, PreprocessConfig, preprocess

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class PrepareError(RuntimeError):
    """The raw data cannot be split or preprocessed; the message says which files and what to do."""


@dataclass(frozen=True)
class Split:
    """One split as the model consumes it: float32 pixels equal to preprocess's output."""

    x: np.ndarray
    y: np.ndarray
    files: list[str]
    classes: list[str]
    config: PreprocessConfig


@dataclass(frozen=True)
class Inventory:
    """What data/raw holds: classes (sorted folder names, as Keras orders them), images and their labels."""

    classes: list[str]
    paths: list[Path]
    labels: np.ndarray
    skipped: list[Path]  # files that are not images by their suffix: reported, never silently dropped


def list_images(raw_dir: Path) -> Inventory:
    if not raw_dir.is_dir():
        raise PrepareError(f"{raw_dir} does not exist; run `make data` first to fetch the images")
    classes = sorted(p.name for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise PrepareError(
            f"{raw_dir} needs one sub-folder per class (at least 2); found {classes or 'none'}"
        )
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[Path] = []
    empty = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (raw_dir / name).iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            empty.append(name)
        paths += images
        labels += [index] * len(images)
    if empty:
        raise PrepareError(f"class folders without images in {raw_dir}: {', '.join(empty)}")
    return Inventory(classes, paths, np.asarray(labels, dtype=np.int64), skipped)


def split_indices(labels: np.ndarray, split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/val indices, reproducible from `seed`."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    n_val = int(np.ceil(split * len(labels)))
    if counts.min() < 2 or n_val < len(counts) or len(labels) - n_val < len(counts):
        raise PrepareError(
            f"cannot split {len(labels)} images over {len(counts)} classes with prepare.split={split}: "
            "every class needs at least one image on each side; add images or change prepare.split"
        )
    train, val = train_test_split(
        np.arange(len(labels)), test_size=split, random_state=seed, shuffle=True, stratify=labels
    )
    return np.sort(train), np.sort(val)


def encode_pixels(x: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] -> uint8, refusing values that would not decode back exactly."""
    encoded = np.rint(x * 255.0).astype(np.uint8)
    if not np.array_equal(decode_pixels(encoded), x):
        raise PrepareError("preprocess output is not a multiple of 1/255; store float32 instead of uint8")
    return encoded


def decode_pixels(encoded: np.ndarray) -> np.ndarray:
    """uint8 -> float32 with exactly the arithmetic of ml.preprocess (value / 255)."""
    return encoded.astype(np.float32) / np.float32(255.0)


def preprocess_all(paths: list[Path], config: PreprocessConfig, *, log=print) -> np.ndarray:
    """Preprocess every path; collect every bad file before failing so one run reports all of them."""
    out = np.zeros((len(paths), *config.input_shape), dtype=np.uint8)
    bad: list[str] = []
    step = max(1, len(paths) // 5)
    for i, path in enumerate(paths):
        try:
            out[i] = encode_pixels(preprocess(path, config))
        except InvalidImageError as exc:
            bad.append(str(exc))
        if (i + 1) % step == 0 or i + 1 == len(paths):
            log(f"  preprocessed {i + 1}/{len(paths)}")
    if bad:
        listing = "\n  ".join(bad)
        raise PrepareError(
            f"{len(bad)} file(s) in the raw data cannot be used:\n  {listing}\n"
            "replace or remove them (`python -m ml.data validate DIR --quarantine OTHER_DIR` moves them "
            "aside), then rerun"
        )
    return out


def check_classes(found: Sequence[str], expected: Sequence[str], raw_dir: Path) -> None:
    """Refuse to train when the class folders are not the expected ones: an extra folder would silently
    become an extra class, a missing one would silently shrink the model."""
    unexpected = sorted(set(found) - set(expected))
    missing = sorted(set(expected) - set(found))
    if unexpected or missing:
        parts = [f"unexpected: {', '.join(unexpected)}"] * bool(unexpected)
        parts += [f"missing: {', '.join(missing)}"] * bool(missing)
        raise PrepareError(
            f"the class folders in {raw_dir} are not the expected ones ({'; '.join(parts)}). "
            f"Expected {', '.join(expected)}. `python -m ml.data validate {raw_dir}` shows every problem."
        )


def prepare(
    params: PrepareParams,
    raw_dir: Path = RAW_DIR,
    out_dir: Path = PREPARED_DIR,
    *,
    expected_classes: Sequence[str] | None = None,
    log=print,
) -> dict:
    """Write the two splits and the manifest; return the manifest."""
    inventory = list_images(raw_dir)
    if expected_classes is not None:
        check_classes(inventory.classes, expected_classes, raw_dir)
    classes, paths, labels = inventory.classes, inventory.paths, inventory.labels
    train_idx, val_idx = split_indices(labels, params.split, params.seed)
    config = params.preprocess
    log(
        f"prepare: {len(paths)} images, {len(classes)} classes -> {config.image_size}x{config.image_size} "
        f"{config.color_mode}"
    )
    if inventory.skipped:
        names = ", ".join(p.relative_to(raw_dir).as_posix() for p in inventory.skipped)
        log(f"  skipped {len(inventory.skipped)} file(s) without an image suffix: {names}")
    pixels = preprocess_all(paths, config, log=log)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    for name, idx in zip(SPLITS, (train_idx, val_idx), strict=True):
        np.savez_compressed(out_dir / f"{name}.npz", x=pixels[idx], y=labels[idx])
        files[name] = [paths[i].relative_to(raw_dir).as_posix() for i in idx]
    manifest = {
        "classes": classes,
        "preprocess": config.to_dict(),
        "split": params.split,
        "seed": params.seed,
        "counts": {
            name: {c: int(np.sum(labels[idx] == k)) for k, c in enumerate(classes)}
            for name, idx in zip(SPLITS, (train_idx, val_idx), strict=True)
        },
        "files": files,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(prepared_dir: Path = PREPARED_DIR) -> dict:
    path = prepared_dir / MANIFEST
    if not path.is_file():
        raise PrepareError(f"{path} not found; run the prepare stage first (`dvc repro prepare`)")
    return json.loads(path.read_text())


def load_split(name: str, prepared_dir: Path = PREPARED_DIR) -> Split:
    """Load one split with pixels decoded to the float32 values preprocess produced."""
    manifest = read_manifest(prepared_dir)
    with np.load(prepared_dir / f"{name}.npz") as data:
        x, y = decode_pixels(data["x"]), data["y"]
    return Split(
        x, y, manifest["files"][name], manifest["classes"], PreprocessConfig.from_dict(manifest["preprocess"])
    )


def _summary(manifest: dict) -> str:
    classes = manifest["classes"]
    width = max(len(c) for c in classes)
    rows = [f"  {'class':<{width}}  train  val"]
    counts = manifest["counts"]
    rows += [f"  {c:<{width}}  {counts['train'][c]:>5}  {counts['val'][c]:>3}" for c in classes]
    n_train, n_val = len(manifest["files"]["train"]), len(manifest["files"]["val"])
    rows.append(f"  {'total':<{width}}  {n_train:>5}  {n_val:>3}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--raw", type=Path, default=RAW_DIR, help="folder of <Class>/<image> files")
    parser.add_argument("--out", type=Path, default=PREPARED_DIR)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params).prepare
        start = time.perf_counter()
        manifest = prepare(params, args.raw, args.out, expected_classes=CLASSES)
    except (ParamsError, PrepareError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(manifest))
    print(f"prepare: wrote {args.out}/ in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
