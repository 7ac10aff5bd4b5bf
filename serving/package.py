"""Import the trained model into the BentoML model store, with what is needed to trust it later.

    python -m serving.package [--model-dir model] [--if-needed]

The stored model holds the bundle files the service needs (model.onnx, novelty.npz, meta.json and whatever
later work adds next to them) but not model.keras, which only training and evaluation read.
It carries labels (project, class names, git commit, data version) and metadata (classes, preprocessing,
embedding width, novelty summary, runtime versions, metrics, params, git commit, data version, hashes of the
ONNX file and of every served file), so a
running service or a bento can always say which training run and which data it came from.

This is a make target rather than a DVC stage: its output lives in the BentoML store ($BENTOML_HOME,
outside the workspace) and a new version is created on every import, which DVC can neither track nor cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ml.bundle import KERAS_FILE, MODEL_DIR, MODEL_NAME, ONNX_FILE, BundleError, bundle_file, read_bundle

UNKNOWN = "unknown"
METRICS_FILE = Path("evaluation/metrics.json")
DATA_DVC_FILE = Path("data/raw.dvc")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: Path) -> str:
    """HEAD's hash, with `-dirty` when tracked files differ from it; "unknown" outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return UNKNOWN
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def data_version(dvc_file: Path) -> str:
    """The md5 DVC recorded for data/raw: names the exact data the model was trained on."""
    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
        md5 = outs[0].get("md5") if outs else None
    except (OSError, yaml.YAMLError, AttributeError, IndexError):
        return UNKNOWN
    return str(md5) if md5 else UNKNOWN


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def bundle_sha256(model_dir: Path) -> str:
    """One hash over the names and contents of every served file: a new novelty model or meta.json is a new
    stored model even when model.onnx is unchanged (e.g. after a change of `novelty:` in params.yaml)."""
    digest = hashlib.sha256()
    for path in served_files(model_dir):
        digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def describe(model_dir: Path, root: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Labels and metadata for the stored model; raises :class:`BundleError` if files are missing."""
    model_path = bundle_file(model_dir, ONNX_FILE)
    meta = read_bundle(model_dir)
    commit = git_commit(root)
    data = data_version(root / DATA_DVC_FILE)
    metadata = {
        "classes": meta.classes,
        "preprocess": meta.preprocess.model_dump(),
        "params": meta.params,
        "embedding_dim": meta.embedding_dim,
        "novelty": meta.novelty.model_dump() if meta.novelty else None,
        "versions": meta.versions,
        "metrics": read_json(root / METRICS_FILE),
        "git_commit": commit,
        "data_version": data,
        "model_sha256": file_sha256(model_path),
        "bundle_sha256": bundle_sha256(model_dir),
    }
    labels = {
        "project": "orbit",
        "classes": ",".join(meta.classes),
        "git_commit": commit[:12] if commit != UNKNOWN else UNKNOWN,
        "data_version": data[:12] if data != UNKNOWN else UNKNOWN,
    }
    return labels, metadata


def latest_stored() -> Any | None:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{MODEL_NAME}:latest")
    except NotFound:
        return None


def package(model_dir: Path, root: Path, *, if_needed: bool = False) -> tuple[str, bool]:
    """Store the model; returns (tag, created). `if_needed` reuses the latest one with the same files."""
    import bentoml

    labels, metadata = describe(model_dir, root)
    if if_needed and (latest := latest_stored()) is not None:
        if latest.info.metadata.get("bundle_sha256") == metadata["bundle_sha256"]:
            return str(latest.tag), False
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as stored:
        for path in served_files(model_dir):
            shutil.copyfile(path, stored.path_of(path.name))
    return str(stored.tag), True


def served_files(model_dir: Path) -> list[Path]:
    """Every file of the bundle except the Keras model: serving runs model.onnx and reads meta.json."""
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != KERAS_FILE
                  and not p.name.startswith("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.package", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, default=MODEL_DIR, help=f"training output (default: {MODEL_DIR})"
    )
    parser.add_argument(
        "--if-needed", action="store_true", help="skip when the latest stored model is this file"
    )
    args = parser.parse_args(argv)
    try:
        tag, created = package(args.model_dir, Path.cwd(), if_needed=args.if_needed)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not created:
        print(f"model unchanged: {tag} already holds {args.model_dir / ONNX_FILE}")
        return 0
    import bentoml

    info = bentoml.models.get(tag).info
    metrics = info.metadata.get("metrics") or {}
    accuracy = metrics.get("accuracy")
    print(f"stored {tag}")
    print(f"  classes      {len(info.metadata['classes'])}: {info.labels['classes']}")
    print(f"  accuracy     {accuracy if accuracy is not None else 'unknown (no evaluation/metrics.json)'}")
    print(f"  git commit   {info.metadata['git_commit']}")
    print(f"  data version {info.metadata['data_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
