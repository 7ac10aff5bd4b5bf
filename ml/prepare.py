"""DVC stage `prepare`: find the classes in data/raw, split it by content hash and store preprocessed arrays.

The classes are the sub-folders of data/raw, sorted (the order Keras uses); `prepare.classes` may pin them and
a class with fewer than `prepare.min_images_per_class` images is refused. Each image's split is decided by
its content hash and the seed alone (:func:`split_of`), so adding images never moves an existing one between
train and validation, and "before vs after" a data change compares two models on the same old images.

Every image goes through :func:`ml.preprocess.preprocess`, the same function serving calls, so training
and serving see identical pixels. Pixels are stored as uint8 (4x smaller than float32): preprocess yields
exact multiples of 1/255, so :func:`load_split` restores its float32 output bit for bit, and
:func:`encode_pixels` refuses anything that would not round-trip.

Layout of ``data/prepared/``: ``train.npz`` and ``val.npz`` (``x`` uint8 (N, H, W, C), ``y`` int64) and
``manifest.json`` (classes, preprocess config, split params, the source files of each split and, for the
files added by labelling, whether the person changed the model's pre-label: see ml/provenance.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.params import DEFAULT_PARAMS_PATH, ParamsError, PrepareParams, load_params
from ml.preprocess import InvalidImageError, PreprocessConfig, preprocess
from ml.provenance import ProvenanceError, by_sha256, read_provenance, sha256_file

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
    for index, name in enumerate(classes):
        files = sorted(p for p in (raw_dir / name).iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        paths += images
        labels += [index] * len(images)
    return Inventory(classes, paths, np.asarray(labels, dtype=np.int64), skipped)


def check_minimum(inventory: Inventory, minimum: int, raw_dir: Path) -> None:
    """Refuse classes too small to learn or to validate, saying how many images each one still needs."""
    counts = np.bincount(inventory.labels, minlength=len(inventory.classes))
    short = [(name, int(n)) for name, n in zip(inventory.classes, counts, strict=True) if n < minimum]
    if short:
        listing = "; ".join(f"{name} has {n}, needs {minimum - n} more" for name, n in short)
        raise PrepareError(
            f"class folder(s) in {raw_dir} with fewer than prepare.min_images_per_class={minimum} images: "
            f"{listing}. Label more images of them (`make label-export`), or move the folder out of "
            f"{raw_dir} until it has enough"
        )


def split_of(sha256: str, seed: int) -> float:
    """A number in [0, 1) fixed by the image's content and the seed: the image is in validation when it is
    below `prepare.split`. Nothing else enters, so adding or removing other images never moves this one,
    and two copies of one image always land on the same side (no train/validation leak)."""
    digest = hashlib.sha256(f"orbit-split:{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_indices(
    hashes: Sequence[str], labels: np.ndarray, classes: Sequence[str], split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train/val indices by content hash (:func:`split_of`); every class must have images on both sides."""
    in_val = np.fromiter((split_of(h, seed) < split for h in hashes), dtype=bool, count=len(hashes))
    one_sided = []
    for index, name in enumerate(classes):
        mine = labels == index
        n_val, n_train = int(np.sum(in_val & mine)), int(np.sum(~in_val & mine))
        if n_val == 0 or n_train == 0:
            side = "validation" if n_val == 0 else "training"
            one_sided.append(f"{name} ({int(np.sum(mine))} images, none in {side})")
    if one_sided:
        raise PrepareError(
            f"every class needs images on both sides of the split (prepare.split={split}, seed={seed}); "
            f"not so for: {'; '.join(one_sided)}. Each image goes to validation with probability {split}, "
            "decided by its content: add images to these classes. Changing prepare.seed also works but "
            "reshuffles every image, so metrics are no longer comparable with the previous data version"
        )
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


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
    """With `prepare.classes` pinned, refuse other class folders: an extra folder would silently become
    an extra class, a missing one would silently shrink the model."""
    extra = sorted(set(found) - set(expected))
    missing = sorted(set(expected) - set(found))
    if extra or missing:
        parts = [f"extra folder(s): {', '.join(extra)}"] * bool(extra)
        parts += [f"missing folder(s): {', '.join(missing)}"] * bool(missing)
        raise PrepareError(
            f"the class folders in {raw_dir} do not match prepare.classes in params.yaml "
            f"({'; '.join(parts)}). Update prepare.classes (or set it to [] to take the classes from the "
            "folders), or fix the folders"
        )


def labelled_files(raw_dir: Path, paths: Sequence[Path], hashes: Sequence[str]) -> dict[str, bool | None]:
    """Files added by labelling (they have a provenance record) -> whether the person changed the
    model's pre-label (None: the task had no pre-label). Files absent here were in the dataset before."""
    try:
        records = by_sha256(read_provenance(raw_dir))
    except ProvenanceError as exc:
        raise PrepareError(str(exc)) from None
    return {
        path.relative_to(raw_dir).as_posix(): records[sha].changed
        for path, sha in zip(paths, hashes, strict=True)
        if sha in records
    }


def prepare(
    params: PrepareParams,
    raw_dir: Path = RAW_DIR,
    out_dir: Path = PREPARED_DIR,
    *,
    log=print,
) -> dict:
    """Write the two splits and the manifest; return the manifest."""
    inventory = list_images(raw_dir)
    if params.classes:
        check_classes(inventory.classes, params.classes, raw_dir)
    check_minimum(inventory, params.min_images_per_class, raw_dir)
    classes, paths, labels = inventory.classes, inventory.paths, inventory.labels
    hashes = [sha256_file(p) for p in paths]
    train_idx, val_idx = split_indices(hashes, labels, classes, params.split, params.seed)
    labelled = labelled_files(raw_dir, paths, hashes)
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
        "labelled": labelled,
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
        manifest = prepare(params, args.raw, args.out)
    except (ParamsError, PrepareError) as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    print(_summary(manifest))
    print(f"prepare: wrote {args.out}/ in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
