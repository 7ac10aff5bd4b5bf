"""ci.gate: the verdict from params.yaml's gate: section, on two metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import gate
from ci.metrics import MetricsError, MetricsPair
from ml.params import GateParams

CLASSES = ["Earth", "Jupiter", "Mars"]


def metrics(accuracy: float, per_class: dict[str, float] | None = None, **extra) -> dict:
    return {
        "accuracy": accuracy,
        "loss": 0.3,
        "precision_macro": accuracy,
        "recall_macro": accuracy,
        "f1_macro": extra.pop("f1_macro", accuracy),
        "per_class_accuracy": per_class or dict.fromkeys(CLASSES, accuracy),
        "n_val": 30,
        **extra,
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("gate:\n  metric: accuracy\n  max_drop: 0.02\n  min_value: 0.80\n")
    return path


GATE = GateParams(metric="accuracy", max_drop=0.02, min_value=0.80)


def test_small_drop_within_tolerance_passes():
    verdict = gate.decide(MetricsPair(base=metrics(0.95), head=metrics(0.94)), GATE)
    assert verdict.passed
    assert verdict.delta == pytest.approx(-0.01)
    assert "within gate.max_drop" in verdict.headline


def test_drop_of_exactly_max_drop_passes_despite_float_noise():
    # 0.95 - 0.93 = 0.020000000000000018 in floating point
    assert gate.decide(MetricsPair(base=metrics(0.95), head=metrics(0.93)), GATE).passed


def test_drop_beyond_tolerance_fails_and_says_why():
    verdict = gate.decide(MetricsPair(base=metrics(0.95), head=metrics(0.90)), GATE)
    assert not verdict.passed
    assert "dropped 0.0500" in verdict.headline
    assert "gate.max_drop 0.0200" in verdict.headline


def test_below_min_value_fails_even_when_better_than_main():
    verdict = gate.decide(MetricsPair(base=metrics(0.70), head=metrics(0.75)), GATE)
    assert not verdict.passed
    assert "below gate.min_value 0.8000" in verdict.headline


def test_no_baseline_applies_only_min_value():
    verdict = gate.decide(MetricsPair(base=None, head=metrics(0.85)), GATE)
    assert verdict.passed and verdict.base is None
    assert "no baseline" in verdict.headline


def test_gate_uses_the_configured_metric():
    pair = MetricsPair(base=metrics(0.95, f1_macro=0.95), head=metrics(0.95, f1_macro=0.85))
    assert gate.decide(pair, GATE).passed
    assert not gate.decide(pair, GATE.model_copy(update={"metric": "f1_macro"})).passed


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(MetricsError, match="'auc' is not in the candidate metrics.*fix gate.metric"):
        gate.decide(MetricsPair(base=None, head=metrics(0.9)), GATE.model_copy(update={"metric": "auc"}))


def test_lower_is_better_metric_is_refused():
    with pytest.raises(MetricsError, match="lower-is-better"):
        gate.decide(MetricsPair(base=None, head=metrics(0.9)), GATE.model_copy(update={"metric": "loss"}))


def test_cli_exit_codes(tmp_path: Path, params: Path, capsys):
    base = write(tmp_path / "base.json", metrics(0.95))
    good = write(tmp_path / "good.json", metrics(0.96))
    bad = write(tmp_path / "bad.json", metrics(0.85))
    assert gate.main(["--head", str(good), "--base", str(base), "--params", str(params)]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    assert gate.main(["--head", str(bad), "--base", str(base), "--params", str(params)]) == 1
    assert "gate: FAIL" in capsys.readouterr().out


def test_cli_cannot_decide_on_bad_input(tmp_path: Path, params: Path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert gate.main(["--head", str(broken), "--params", str(params)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert gate.main(["--head", str(tmp_path / "missing.json"), "--params", str(params)]) == 2
    assert "make repro" in capsys.readouterr().err
    wrong = write(tmp_path / "wrong.json", {"accuracy": "high"})
    assert gate.main(["--head", str(wrong), "--params", str(params)]) == 2
    assert "must be a number" in capsys.readouterr().err


def test_cli_reports_invalid_params(tmp_path: Path, capsys):
    head = write(tmp_path / "head.json", metrics(0.9))
    bad_params = tmp_path / "params.yaml"
    bad_params.write_text("gate:\n  max_drop: 2\n")
    assert gate.main(["--head", str(head), "--params", str(bad_params)]) == 2
    assert "gate.max_drop" in capsys.readouterr().err
