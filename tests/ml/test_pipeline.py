"""`dvc repro` end to end in a throwaway git repository, on a tiny synthetic data set."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ml.synthetic import generate_dataset
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

CLASSES = ("Earth", "Mars", "Saturn")  # the classes are whatever folders data/raw holds
TINY = {
    "prepare": {"image_size": 16, "split": 0.25, "seed": 3, "batch_size": 8, "min_images_per_class": 4},
    "train": {"seed": 3, "epochs": 2, "conv_filters": [8], "dense_units": 16},
    "evaluate": {"preview_count": 6},
}
STAGES = ("prepare", "train", "evaluate", "reference")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` = this venv
    env.pop("PYTHONPATH", None)  # the stages must run from the copied package, as in a fresh clone
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "dvc", *args)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("pipeline")
    _run(repo, "git", "init", "-q")
    _dvc(repo, "init", "-q")
    shutil.copy(REPO_ROOT / "dvc.yaml", repo)
    for package in ("ml", "monitor", "serving"):  # the reference stage runs monitor/ (and serving.package)
        shutil.copytree(REPO_ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # 80 a class: the reference stage needs at least 50 validation images (monitor.reference.MIN_REFERENCE)
    generate_dataset(repo / "data" / "raw", per_class=100, size=32, seed=4, classes=CLASSES)
    return repo


@pytest.fixture(scope="module")
def first_run(repo):
    return _dvc(repo, "repro")


def test_repro_runs_every_stage_and_writes_the_contract_outputs(repo, first_run):
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first_run.stdout
    outputs = (
        "data/prepared/train.npz", "data/prepared/manifest.json", "model/model.keras", "model/meta.json",
        "evaluation/history.csv", "evaluation/metrics.json", "evaluation/report.html",
        "evaluation/plots/confusion_matrix.png",
    )
    for path in outputs:
        assert (repo / path).is_file(), path
    assert "report: " in first_run.stdout and "accuracy" in first_run.stdout  # the closing summary
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["evaluate"]["params"]["params.yaml"] == {"evaluate": TINY["evaluate"]}
    assert "data/prepared" in {d["path"] for d in lock["stages"]["evaluate"]["deps"]}


def test_second_repro_runs_nothing(repo, first_run):
    again = _dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout
    assert json.loads(_dvc(repo, "status", "--json").stdout) == {}


def test_plots_and_metrics_are_declared(repo, first_run):
    shown = json.loads(_dvc(repo, "plots", "show", "--json", "-o", str(repo / ".plots")).stdout)["data"]
    assert {"accuracy", "loss", "confusion", "evaluation/plots/misclassified.png"} <= set(shown)
    shown = json.loads(_dvc(repo, "metrics", "show", "--json").stdout)
    metrics = next(iter(shown.values()))["data"]["evaluation/metrics.json"]["data"]
    assert metrics == json.loads((repo / "evaluation" / "metrics.json").read_text())


def test_a_param_change_reruns_only_what_depends_on_it(repo, first_run):
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["preview_count"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert set(json.loads(_dvc(repo, "status", "--json").stdout)) == {"evaluate"}
    finally:
        (repo / "params.yaml").write_text(original)


def test_same_data_and_params_give_identical_metrics(repo, first_run):
    before = {p: (repo / p).read_bytes() for p in ("evaluation/metrics.json", "evaluation/history.csv")}
    forced = _dvc(repo, "repro", "--force")
    assert "Running stage 'train'" in forced.stdout
    for path, content in before.items():
        assert (repo / path).read_bytes() == content, f"{path} changed on an identical rerun"
