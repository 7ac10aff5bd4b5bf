"""ci.report: the Markdown a reviewer reads on the pull request."""

from __future__ import annotations

import json
from pathlib import Path

from ci import report
from ci.metrics import MetricsPair
from ml.params import GateParams

GATE = GateParams(metric="accuracy", max_drop=0.01, min_value=0.8)
BASE = {
    "accuracy": 0.92,
    "loss": 0.30,
    "f1_macro": 0.91,
    "n_val": 300,
    "per_class_accuracy": {"Earth": 0.90, "Mars": 0.95, "Moon": 0.80},
}
HEAD = {
    "accuracy": 0.94,
    "loss": 0.25,
    "f1_macro": 0.93,
    "n_val": 300,
    "per_class_accuracy": {"Earth": 0.97, "Mars": 0.85, "Moon": 0.80},
}


def row(body: str, first_cell: str) -> str:
    return next(line for line in body.splitlines() if line.startswith(f"| {first_cell} |"))


def test_table_has_both_sides_and_signed_deltas():
    body, verdict = report.build(MetricsPair(base=BASE, head=HEAD), GATE)
    assert verdict is not None and verdict.passed
    assert row(body, "accuracy") == "| accuracy | 0.9200 | 0.9400 | +0.0200 ▲ |"
    # loss went down: that is an improvement, so the arrow points up
    assert row(body, "loss") == "| loss | 0.3000 | 0.2500 | -0.0500 ▲ |"
    assert row(body, "n_val") == "| n_val | 300 | 300 | 0 |"
    assert "**Gate: ✅ pass**" in body


def test_per_class_section_names_the_classes_that_got_worse_first():
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE)
    assert "2 of 3 classes changed, worse: Mars" in body
    lines = [line for line in body.splitlines() if line.startswith(("| Earth", "| Mars", "| Moon"))]
    assert [line.split("|")[1].strip() for line in lines] == ["Mars", "Moon", "Earth"]
    assert row(body, "Mars") == "| Mars | 0.9500 | 0.8500 | -0.1000 ▼ |"


def test_failed_gate_is_shown_with_the_reason():
    worse = {**HEAD, "accuracy": 0.88}
    body, verdict = report.build(MetricsPair(base=BASE, head=worse), GATE)
    assert verdict is not None and not verdict.passed
    assert "**Gate: ❌ fail**" in body
    assert "dropped 0.0400" in body


def test_first_model_has_no_baseline():
    body, verdict = report.build(MetricsPair(base=None, head=HEAD), GATE)
    assert "first model" in body
    assert row(body, "accuracy") == "| accuracy | – | 0.9400 | new |"
    assert verdict is not None and verdict.passed


def test_gate_that_cannot_be_applied_does_not_break_the_report():
    body, verdict = report.build(MetricsPair(base=BASE, head=HEAD), GATE.model_copy(update={"metric": "auc"}))
    assert verdict is None
    assert "**Gate: cannot decide**" in body and "'auc'" in body


def test_plots_are_listed_with_the_run_link(tmp_path: Path):
    (tmp_path / "confusion_matrix.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("not a plot")
    body, _ = report.build(
        MetricsPair(base=BASE, head=HEAD),
        GATE,
        plots_dir=tmp_path,
        run_url="https://github.example/o/r/actions/runs/1",
    )
    assert "`confusion_matrix.png`" in body and "notes.txt" not in body
    assert "[this run](https://github.example/o/r/actions/runs/1)" in body


def test_cli_writes_the_file_from_a_dvc_diff(tmp_path: Path, capsys):
    diff = {
        "evaluation/metrics.json": {
            "accuracy": {"old": 0.92, "new": 0.94, "diff": 0.02},
            "per_class_accuracy.Earth": {"old": 0.9, "new": 0.97, "diff": 0.07},
        }
    }
    (tmp_path / "diff.json").write_text(json.dumps(diff))
    (tmp_path / "params.yaml").write_text("gate:\n  metric: accuracy\n  max_drop: 0.01\n  min_value: 0.95\n")
    out = tmp_path / "out" / "report.md"
    code = report.main(
        [
            "--dvc-diff",
            str(tmp_path / "diff.json"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(out),
            "--title",
            "Model report for abc1234",
        ]
    )
    assert code == 0
    assert "gate FAIL" in capsys.readouterr().out  # 0.94 < min_value 0.95; the report itself still succeeds
    text = out.read_text()
    assert text.startswith("### Model report for abc1234")
    assert "| Earth | 0.9000 | 0.9700 | +0.0700 ▲ |" in text


def test_cli_fails_clearly_without_metrics(tmp_path: Path, capsys):
    assert report.main(["--head", str(tmp_path / "none.json")]) == 2
    assert "make repro" in capsys.readouterr().err
