"""The drift check: calibrated on in-distribution windows, finds planted shifts, never alarms on too few."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from scipy import stats

from monitor import drift
from monitor.log import PredictionLog
from monitor.reference import Records
from monitor.sinks import DirSink
from tests.monitor.support import MODEL, synthetic_records

ALPHA = 0.05


@pytest.fixture(scope="module")
def reference() -> Records:
    return Records.from_records(synthetic_records(300, seed=0))


def test_false_alarm_rate_on_in_distribution_windows_is_within_alpha(reference):
    """80 independent windows from the reference's distribution. Ten tests at 0.05 each without a
    correction would alarm on about 40 % of them; the check promises at most alpha overall."""
    windows = 80
    alarms = sum(
        drift.check(reference, synthetic_records(150, seed=1000 + i), alpha=ALPHA, n_permutations=299)[
            "drift"
        ]
        for i in range(windows)
    )
    # the count of alarms is at most Binomial(80, 0.05); its 99.9 % quantile is 11
    assert alarms <= stats.binom.ppf(0.999, windows, ALPHA), f"{alarms}/{windows} false alarms"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"shift": 0.8}, "embedding_mmd"),
        ({"dark": 0.7}, "ks_mean_r"),
        ({"unknown_rate": 0.25}, "unknown_rate"),
        ({"blur": 0.7}, "ks_sharpness"),
    ],
)
def test_a_planted_shift_is_found_by_the_check_that_should_see_it(reference, change, expected):
    result = drift.check(reference, synthetic_records(150, seed=7, **change), n_permutations=499)
    assert result["drift"] is True
    assert result["checks"][expected]["verdict"] == "drift"
    assert result["checks"][expected]["p_value"] <= result["checks"][expected]["threshold"]


def test_small_or_empty_window_is_null_never_an_alarm(reference):
    shifted = synthetic_records(40, seed=8, shift=5.0)  # obvious drift, but too few to judge
    result = drift.check(reference, shifted, min_n=100)
    assert result["drift"] is None and result["n"] == 40 and not result["checks"]
    assert "too few" in result["reason"]
    assert drift.check(reference, [])["reason"] == "no traffic in the window"


def test_holm_steps_down():
    levels, rejected = drift.holm([0.01, 0.04, 0.03, 0.2], 0.1)
    assert levels == [0.025, 0.05, 0.1 / 3, 0.1]
    assert rejected == [True, True, True, False]
    assert drift.holm([0.03, 0.001], 0.05)[1] == [True, True], "0.03 > 0.05/2 but <= 0.05 once 0.001 is out"


def test_holm_stops_at_the_first_acceptance():
    assert drift.holm([0.02, 0.021, 0.9], 0.05)[1] == [False, False, False]


@pytest.fixture
def logged(tmp_path, reference):
    """A folder log with 150 shifted records of MODEL and 150 of another model, and the reference file."""
    sink = DirSink(tmp_path / "log")
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    for model, shift in ((MODEL, 1.0), ("planet-classifier:other", 0.0)):
        log = PredictionLog(sink, model=model, flush_interval_s=3600)
        for rec in synthetic_records(150, seed=20, model=model, start=start, shift=shift):
            log.record(rec)
        log.close()
    reference.save(tmp_path / "reference.npz")
    return tmp_path


def test_cli_prints_one_json_object_and_writes_the_report(logged, capsys):
    args = ["--log", str(logged / "log"), "--reference", str(logged / "reference.npz"), "--json"]
    args += ["--since", "2026-11-29", "--until", "2026-12-01", "--report", str(logged / "r.html")]
    assert drift.main([*args, "--permutations", "499"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["drift"] is True and result["n"] == 150 and result["model"] == MODEL
    assert {"window", "checks", "report"} <= result.keys()
    assert set(result["checks"]["embedding_mmd"]) >= {"statistic", "p_value", "threshold", "verdict"}
    page = (logged / "r.html").read_text()
    assert result["report"] == str(logged / "r.html") and "Drift found" in page and "data:image/png" in page

    assert drift.main([*args, "--last", "20"]) == 0, "below min_n: still exit 0"
    small = json.loads(capsys.readouterr().out)
    assert small["drift"] is None and small["n"] == 20 and small["window"]["last"] == 20


def test_cli_fails_clearly_when_it_cannot_run(logged, capsys):
    assert drift.main(["--log", str(logged / "log"), "--reference", str(logged / "missing.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    args = ["--log", str(logged / "log"), "--reference", str(logged / "reference.npz")]
    assert drift.main([*args, "--model", "planet-classifier:other"]) == 2
    assert "build the reference of this model version" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        drift.main([*args, "--alpha", "2"])
    assert drift.main([*args, "--since", "2026-11-30", "--permutations", "99"]) == 2
    assert "use at least 219" in capsys.readouterr().err


def test_a_reference_without_version_needs_the_model_named(logged, capsys):
    records = synthetic_records(150, seed=0, model="planet-classifier")
    Records.from_records(records).save(logged / "unversioned.npz")
    args = ["--log", str(logged / "log"), "--reference", str(logged / "unversioned.npz"), "--json"]
    args += ["--since", "2026-11-29", "--until", "2026-12-01", "--report", str(logged / "u.html")]
    assert drift.main(args) == 2
    assert "pass --model NAME:VERSION" in capsys.readouterr().err
    assert drift.main([*args, "--model", MODEL, "--permutations", "499"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == MODEL and result["n"] == 150
