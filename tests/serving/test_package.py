"""`python -m serving.package`: what the stored model carries, --if-needed, and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ml.bundle import BundleError
from serving.package import UNKNOWN, describe, file_sha256, main, package


@pytest.fixture
def project(tmp_path: Path, model_dir: Path) -> Path:
    """A workspace with the pipeline's outputs: model/, evaluation/metrics.json, data/raw.dvc."""
    shutil.copytree(model_dir, tmp_path / "model")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text(json.dumps({"accuracy": 0.93, "n_val": 40}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  size: 1000\n  nfiles: 10\n  path: raw\n"
    )
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    meta["params"] = {"train": {"epochs": 3}}
    (tmp_path / "model" / "meta.json").write_text(json.dumps(meta))
    return tmp_path


def test_stored_model_carries_labels_and_metadata(bentoml_home, project):
    import bentoml

    tag, created = package(project / "model", project)
    assert created
    stored = bentoml.models.get(tag)
    info = stored.info
    assert info.labels["classes"] == "Mars,Uranus,Neptune"
    assert info.labels["data_version"] == "0123456789ab"
    assert info.metadata["classes"] == ["Mars", "Uranus", "Neptune"]
    assert info.metadata["preprocess"] == {"image_size": 32, "color_mode": "rgb"}
    assert info.metadata["metrics"] == {"accuracy": 0.93, "n_val": 40}
    assert info.metadata["params"] == {"train": {"epochs": 3}}
    assert info.metadata["data_version"] == "0123456789abcdef0123456789abcdef.dir"
    assert info.metadata["git_commit"] == UNKNOWN  # tmp_path is not a git checkout
    assert info.metadata["embedding_dim"] == 3
    assert info.metadata["model_sha256"] == file_sha256(project / "model" / "model.onnx")
    assert file_sha256(Path(stored.path_of("model.onnx"))) == info.metadata["model_sha256"]
    assert sorted(p.name for p in Path(stored.path).iterdir() if p.suffix != ".yaml") == [
        "meta.json", "model.onnx", "novelty.npz"
    ], "every bundle file but the Keras model"
    assert file_sha256(Path(stored.path_of("novelty.npz"))) == file_sha256(project / "model" / "novelty.npz")
    assert info.metadata["novelty"]["threshold"] == json.loads(
        (project / "model" / "meta.json").read_text())["novelty"]["threshold"]
    assert json.loads(Path(stored.path_of("meta.json")).read_text())["classes"] == [
        "Mars",
        "Uranus",
        "Neptune",
    ]


def test_if_needed_reuses_the_same_file_and_stores_a_changed_one(bentoml_home, project):
    first, created = package(project / "model", project)
    assert created
    again, created = package(project / "model", project, if_needed=True)
    assert (again, created) == (first, False)
    with (project / "model" / "model.onnx").open("ab") as handle:
        handle.write(b"\0")  # any change of the file is a new model
    changed, created = package(project / "model", project, if_needed=True)
    assert created and changed != first
    with (project / "model" / "novelty.npz").open("ab") as handle:
        handle.write(b"\0")  # a refitted novelty model with the same model.onnx is a new model too
    refitted, created = package(project / "model", project, if_needed=True)
    assert created and refitted != changed


def test_git_commit_is_recorded_inside_a_checkout(project):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "evaluation"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=project, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True
    ).stdout.strip()
    labels, metadata = describe(project / "model", project)
    assert metadata["git_commit"] == head
    assert labels["git_commit"] == head[:12]
    (project / "evaluation" / "metrics.json").write_text("{}")
    assert describe(project / "model", project)[1]["git_commit"] == f"{head}-dirty"


def test_missing_model_says_to_run_the_pipeline(bentoml_home, tmp_path, capsys):
    assert main(["--model-dir", str(tmp_path / "model")]) == 1
    assert "run the train stage first: `make repro`" in capsys.readouterr().err


def test_missing_outputs_become_unknown_not_errors(bentoml_home, model_dir, tmp_path):
    labels, metadata = describe(model_dir, tmp_path)
    assert (
        metadata["metrics"] == {}
        and metadata["data_version"] == UNKNOWN
        and labels["data_version"] == UNKNOWN
    )


@pytest.mark.parametrize(
    "meta,phrase",
    [
        ("not json", "not valid JSON"),
        (json.dumps({"classes": [], "preprocess": {"image_size": 32, "color_mode": "rgb"}}), "classes"),
        (
            json.dumps({"classes": ["a", "a"], "preprocess": {"image_size": 32, "color_mode": "rgb"}}),
            "distinct",
        ),
        (
            json.dumps({"classes": ["a"], "preprocess": {"image_size": 32, "color_mode": "cmyk"}}),
            "color_mode",
        ),
    ],
)
def test_bad_meta_json_is_refused(tmp_path, model_dir, meta, phrase):
    shutil.copytree(model_dir, tmp_path / "model")
    (tmp_path / "model" / "meta.json").write_text(meta)
    with pytest.raises(BundleError, match=phrase):
        describe(tmp_path / "model", tmp_path)


@pytest.mark.parametrize(
    "change,phrase",
    [
        ({"preprocess": {"image_size": 48, "color_mode": "rgb"}}, "expects input"),
        ({"classes": ["Mars", "Uranus"]}, "3 outputs; meta.json names 2 classes"),
    ],
)
def test_model_and_meta_from_different_runs_are_refused(tmp_path, model_dir, change, phrase):
    from serving.classifier import Classifier

    shutil.copytree(model_dir, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    (tmp_path / "model" / "meta.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(BundleError, match=phrase):
        Classifier.load(tmp_path / "model")
