"""`make demo` end to end on tiny synthetic data, in a throwaway orbit checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _git_env(tmp_path):
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "orbit"
    repo.mkdir()
    env = _git_env(tmp_path)
    dvc = str(Path(sys.executable).with_name("dvc"))
    for command in (
        ["git", "init", "-q"],
        [dvc, "init", "-q"],
        [dvc, "config", "core.autostage", "true"],
        [dvc, "config", "core.analytics", "false"],
        [dvc, "remote", "add", "-d", "storage", "gs://orbit-demo-test-google"],
    ):
        subprocess.run(command, cwd=repo, env=env, check=True)
    shutil.copy(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    for package in ("ml", "monitor", "serving"):  # dvc.yaml's stages run ml/ and monitor/ (the reference)
        shutil.copytree(REPO_ROOT / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    # 40 a class: at least prepare.min_images_per_class (20), and every class on both sides of the split
    params["data"].update(source="synthetic", synthetic_per_class=40, synthetic_size=48)
    params["train"]["epochs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    return repo, env


def _demo(repo, env):
    return subprocess.run(
        [sys.executable, "-m", "local.demo", "--repo", str(repo)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_runs_the_whole_loop_and_leaves_nothing_running(checkout):
    repo, env = checkout
    first = _demo(repo, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    for step in (
        "[1/6] Data",
        "[2/6] Bucket",
        "[3/6] Pipeline",
        "[4/6] Push",
        "[5/6] Serve",
        "[6/6] Summary",
    ):
        assert step in out
    assert "validation image" in out and "server stopped" in out
    assert "evaluation/report.html" in out
    assert (repo / "evaluation" / "metrics.json").is_file()
    assert (repo / "data" / "raw.dvc").is_file()
    pushed = [p for p in (repo / ".orbit" / "bucket").rglob("*") if p.is_file()]
    assert len(pushed) >= 100, "data and model must have been pushed to the emulated bucket"
    assert not (repo / ".orbit" / "bucket.json").exists(), "the demo stops the bucket it started"
    config_local = repo / ".dvc" / "config.local"
    assert not config_local.exists() or "endpointurl" not in config_local.read_text()

    second = _demo(repo, env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "data/raw is already here" in second.stdout
    assert "Running stage" not in second.stdout, "nothing changed, so dvc repro must run no stage"


def test_demo_reports_bad_params_without_a_traceback(checkout):
    repo, env = checkout
    (repo / "params.yaml").write_text("prepare:\n  split: 3\n")
    result = _demo(repo, env)
    assert result.returncode == 1
    assert "prepare.split" in result.stderr and "Traceback" not in result.stderr


def test_an_explicit_source_is_passed_to_ml_data(tmp_path, monkeypatch):
    # `make demo DATA_SOURCE=synthetic` (CI on macOS, arm64): no fallback through the folder or the URL.
    from local import demo

    commands = []
    monkeypatch.setattr(demo, "_run", lambda root, *args, **kwargs: commands.append(args))
    assert "(synthetic)" in demo.step_data(tmp_path, "synthetic")
    assert commands[0][1:] == ("-m", "ml.data", "fetch", "--source", "synthetic")
    commands.clear()
    demo.step_data(tmp_path)
    assert commands[0][1:] == ("-m", "ml.data", "fetch")
