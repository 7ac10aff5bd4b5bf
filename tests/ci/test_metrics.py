"""ci.metrics: the same pair of metrics whether it comes from files, a git revision or `dvc metrics diff`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci.metrics import METRICS_PATH, MetricsError, from_dvc_diff, load_pair, load_revision

BASE = {"accuracy": 0.9, "loss": 0.3, "per_class_accuracy": {"Earth": 0.8, "Mars": 1.0}, "n_val": 20}
HEAD = {
    "accuracy": 0.95,
    "loss": 0.2,
    "per_class_accuracy": {"Earth": 0.9, "Mars": 1.0, "Moon": 0.5},
    "n_val": 30,
}
DVC = Path(sys.executable).with_name("dvc")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose HEAD commit holds BASE and whose workspace holds HEAD."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "dvc.yaml").write_text(f"metrics:\n  - {METRICS_PATH}\n")
    (tmp_path / METRICS_PATH).write_text(json.dumps(BASE))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    (tmp_path / METRICS_PATH).write_text(json.dumps(HEAD))
    return tmp_path


def test_dvc_diff_is_split_into_nested_base_and_head():
    diff = {
        METRICS_PATH: {
            "accuracy": {"old": 0.9, "new": 0.95, "diff": 0.05},
            "per_class_accuracy.Earth": {"old": 0.8, "new": 0.9, "diff": 0.1},
            "per_class_accuracy.Moon": {"old": None, "new": 0.5},
            "n_val": {"old": 20, "new": 30, "diff": 10},
        }
    }
    base, head = from_dvc_diff(diff)
    assert base == {"accuracy": 0.9, "per_class_accuracy": {"Earth": 0.8}, "n_val": 20}
    assert head == {"accuracy": 0.95, "per_class_accuracy": {"Earth": 0.9, "Moon": 0.5}, "n_val": 30}


def test_dvc_diff_without_old_values_means_no_baseline():
    base, head = from_dvc_diff({METRICS_PATH: {"accuracy": {"old": None, "new": 0.9}}})
    assert base is None and head == {"accuracy": 0.9}


def test_dvc_diff_without_new_values_is_an_error():
    with pytest.raises(MetricsError, match="dvc repro"):
        from_dvc_diff({METRICS_PATH: {"accuracy": {"old": 0.9, "new": None}}})


def test_revision_loading_and_first_run(repo: Path):
    assert load_revision("HEAD", cwd=repo) == BASE
    (repo / "other.txt").write_text("x")
    git(repo, "rm", "-q", "--cached", METRICS_PATH)
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "no metrics")
    assert load_revision("HEAD", cwd=repo) is None  # main has no metrics yet: first model
    with pytest.raises(MetricsError, match="not found; fetch it first"):
        load_revision("origin/nowhere", cwd=repo)
    with pytest.raises(MetricsError, match="invalid git revision"):
        load_revision("--output=/tmp/x", cwd=repo)


def test_pair_from_files_and_conflicting_options(tmp_path: Path):
    (tmp_path / "b.json").write_text(json.dumps(BASE))
    (tmp_path / "h.json").write_text(json.dumps(HEAD))
    pair = load_pair(head=tmp_path / "h.json", base=tmp_path / "b.json")
    assert (pair.base, pair.head) == (BASE, HEAD)
    with pytest.raises(MetricsError, match="not both"):
        load_pair(head=tmp_path / "h.json", base=tmp_path / "b.json", base_rev="main")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(MetricsError, match="expected a JSON object"):
        load_pair(head=tmp_path / "list.json")


@pytest.mark.slow
@pytest.mark.skipif(not DVC.exists() or not shutil.which("git"), reason="needs dvc next to python and git")
def test_real_dvc_metrics_diff_output_round_trips(repo: Path, tmp_path: Path):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([str(DVC), "init", "-q"], cwd=repo, check=True, env=env)
    out = subprocess.run(
        [str(DVC), "metrics", "diff", "--all", "--json", "HEAD"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    diff_file = tmp_path / "diff.json"
    diff_file.write_text(out)
    pair = load_pair(dvc_diff=diff_file)
    assert pair.base == BASE
    assert pair.head == HEAD
