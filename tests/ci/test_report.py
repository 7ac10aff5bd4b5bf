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


def class_rows(body: str) -> list[list[str]]:
    """The cells of the per-class table, in order."""
    table = body.split("| class |", 1)[1].split("\n\n", 1)[0]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:]]


def test_per_class_table_shows_both_sides_with_the_largest_change_first():
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE)
    assert "**Per-class accuracy**: 2 of 3 classes changed; worse: Mars" in body
    assert class_rows(body) == [
        ["Mars", "0.9500", "0.8500", "-0.1000 ▼"],
        ["Earth", "0.9000", "0.9700", "+0.0700 ▲"],
        ["Moon", "0.8000", "0.8000", "±0"],
    ]
    assert "<details>" not in body.split("**Per-class accuracy**", 1)[1].split("**Plots**")[0]  # not hidden


def test_a_class_without_validation_images_is_missing_not_a_crash():
    """ml/evaluate.py writes null for a class with no validation images."""
    base = {**BASE, "per_class_accuracy": {**BASE["per_class_accuracy"], "Pluto": None}}
    head = {**HEAD, "per_class_accuracy": {**HEAD["per_class_accuracy"], "Pluto": None, "Moon": None}}
    body, verdict = report.build(MetricsPair(base=base, head=head), GATE)
    assert verdict is not None and verdict.passed
    rows = class_rows(body)
    assert [r[0] for r in rows] == ["Mars", "Earth", "Moon", "Pluto"]  # unknown changes last
    assert rows[2] == ["Moon", "0.8000", "–", "–"] and rows[3] == ["Pluto", "–", "–", "–"]
    assert "No validation images in this PR for: Moon, Pluto" in body
    body, _ = report.build(MetricsPair(base=None, head=head), GATE)  # first model, nulls too
    assert "**Per-class accuracy** (4 classes)" in body


def write_predictions(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["file,actual,predicted,confidence"]
    lines += [f"{a}/{a}_{i}.jpg,{a},{p},0.9000" for i, (a, p) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_top_confusions_come_from_the_predictions_of_this_pr(tmp_path: Path):
    rows = [("Mars", "Mars")] * 6 + [("Mars", "Moon")] * 3 + [("Mars", "Earth")]
    rows += [("Earth", "Earth")] * 9 + [("Earth", "Moon")] + [("Moon", "Moon")] * 10
    predictions = write_predictions(tmp_path / "predictions.csv", rows)
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE, predictions=predictions)
    assert "**Top confusions** of this PR (5 of 30 validation images wrong)" in body
    table = body.split("| actual | predicted as | images | share of the class |", 1)[1].split("\n\n")[0]
    assert [line for line in table.splitlines()[2:]] == [
        "| Mars | Moon | 3 | 30% |",
        "| Earth | Moon | 1 | 10% |",
        "| Mars | Earth | 1 | 10% |",
    ]
    perfect = write_predictions(tmp_path / "perfect.csv", [("Moon", "Moon")] * 4)
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE, predictions=perfect)
    assert "**Top confusions**: none, all 4 validation images are classified correctly." in body
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE, predictions=tmp_path / "absent.csv")
    assert "Top confusions" not in body


def test_a_malformed_predictions_file_is_named_in_the_report(tmp_path: Path, capsys):
    bad = tmp_path / "predictions.csv"
    bad.write_text("file,label,guess\nMars/Mars_0.jpg,Mars,Moon\n")
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE, predictions=bad)
    assert "_Top confusions unavailable:" in body and "lacks the column(s) actual, predicted" in body
    assert "re-run the evaluate stage" in body
    assert "lacks the column(s)" in capsys.readouterr().err


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
    run = "https://github.example/o/r/actions/runs/1"
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE, plots_dir=tmp_path, run_url=run)
    assert "`confusion_matrix.png`" in body and "notes.txt" not in body
    assert f"the artifact **evaluation** of [this run]({run})" in body
    artifact = f"{run}/artifacts/42"
    body, _ = report.build(
        MetricsPair(base=BASE, head=HEAD), GATE, plots_dir=tmp_path, run_url=run, artifact_url=artifact
    )
    assert f"[the **evaluation** artifact]({artifact}) of [this run]({run})" in body


def test_cli_writes_the_file_from_a_dvc_diff(tmp_path: Path, capsys):
    diff = {
        "evaluation/metrics.json": {
            "accuracy": {"old": 0.92, "new": 0.94, "diff": 0.02},
            "per_class_accuracy.Earth": {"old": 0.9, "new": 0.97, "diff": 0.07},
            "per_class_accuracy.Pluto": {"old": None, "new": None},
        }
    }
    predictions = write_predictions(tmp_path / "predictions.csv", [("Earth", "Mars"), ("Earth", "Earth")])
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
            "--predictions",
            str(predictions),
            "--artifact-url",
            "https://github.example/o/r/actions/runs/7/artifacts/9",
        ]
    )
    assert code == 0
    assert "gate FAIL" in capsys.readouterr().out  # 0.94 < min_value 0.95; the report itself still succeeds
    text = out.read_text()
    assert text.startswith("### Model report for abc1234")
    assert "| Earth | 0.9000 | 0.9700 | +0.0700 ▲ |" in text
    assert "| Earth | Mars | 1 | 50% |" in text
    assert "(https://github.example/o/r/actions/runs/7/artifacts/9)" in text


def test_the_cli_reads_null_per_class_values_from_a_metrics_file(tmp_path: Path):
    head = tmp_path / "metrics.json"
    head.write_text(json.dumps({**HEAD, "per_class_accuracy": {"Earth": 0.9, "Pluto": None}}))
    base = tmp_path / "base.json"
    base.write_text(json.dumps({**BASE, "per_class_accuracy": {"Earth": None, "Pluto": 0.5}}))
    out = tmp_path / "report.md"
    args = [
        "--head",
        str(head),
        "--base",
        str(base),
        "--out",
        str(out),
        "--predictions",
        str(tmp_path / "no"),
    ]
    assert report.main(args) == 0
    assert "| Earth | – | 0.9000 | new |" in out.read_text()


def test_cli_fails_clearly_without_metrics(tmp_path: Path, capsys):
    assert report.main(["--head", str(tmp_path / "none.json")]) == 2
    assert "make repro" in capsys.readouterr().err


def _with_origins(metrics: dict, original: float, labelled: float | None, n_labelled: int) -> dict:
    return {
        **metrics,
        "accuracy_original": original,
        "n_val_original": 300,
        "accuracy_labelled": labelled,
        "n_val_labelled": n_labelled,
        "accuracy_changed": labelled,
        "n_val_changed": n_labelled // 2,
        "accuracy_accepted": None if labelled is None else 1.0,
        "n_val_accepted": n_labelled - n_labelled // 2,
    }


def test_accuracy_by_origin_has_its_own_table_with_counts():
    base = _with_origins(BASE, 0.92, None, 0)
    head = _with_origins(HEAD, 0.93, 0.75, 40)
    body, _ = report.build(MetricsPair(base=base, head=head), GATE)
    assert "**Accuracy by origin**" in body
    assert row(body, "images main already had (same split: like with like)") == (
        "| images main already had (same split: like with like) | 0.9200 | 0.9300 | +0.0100 ▲ | 300 |"
    )
    assert row(body, "images added by labelling") == "| images added by labelling | – | 0.7500 | new | 40 |"
    assert row(body, "labelled, pre-label accepted unchanged").endswith("| 20 |")
    assert "| accuracy_original |" not in body and "| n_val_labelled |" not in body  # not twice


def test_origin_groups_are_the_ones_evaluate_writes():
    from ml import origin

    assert tuple(report.ORIGINS) == origin.ORIGINS
    assert report.ORIGIN_KEYS == set(origin.METRIC_KEYS)


def test_metrics_without_origins_have_no_origin_table():
    body, _ = report.build(MetricsPair(base=BASE, head=HEAD), GATE)
    assert "Accuracy by origin" not in body
