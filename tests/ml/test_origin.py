"""Accuracy by origin of the validation images (ml/origin.py) and its place in the HTML report."""

import numpy as np

from ml import origin, report

FILES = ["Mars/a.jpg", "Mars/b.jpg", "Ceres/c.jpg", "Ceres/d.jpg", "Earth/e.jpg", "Earth/f.jpg"]
# labelled: c (pre-label changed), d (accepted), f (no pre-label); a, b, e were there before
LABELLED = {"Ceres/c.jpg": True, "Ceres/d.jpg": False, "Earth/f.jpg": None, "Venus/gone.jpg": True}


def test_each_group_is_scored_on_its_own_images():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 2, 0, 1, 2, 2])  # wrong: b (original), c (changed)
    metrics = origin.origin_metrics(FILES, y_true, y_pred, LABELLED)
    assert set(metrics) == set(origin.METRIC_KEYS)
    assert metrics["n_val_original"] == 3 and metrics["accuracy_original"] == round(2 / 3, 6)
    assert metrics["n_val_labelled"] == 3 and metrics["accuracy_labelled"] == round(2 / 3, 6)
    assert metrics["n_val_changed"] == 1 and metrics["accuracy_changed"] == 0.0
    assert metrics["n_val_accepted"] == 1 and metrics["accuracy_accepted"] == 1.0


def test_empty_groups_have_no_accuracy_and_no_provenance_means_all_original():
    y = np.array([0, 1, 1, 0, 1, 0])
    metrics = origin.origin_metrics(FILES, y, y, {})
    assert metrics["n_val_original"] == 6 and metrics["accuracy_original"] == 1.0
    for group in ("labelled", "changed", "accepted"):
        assert metrics[f"n_val_{group}"] == 0 and f"accuracy_{group}" not in metrics
    assert None not in metrics.values()


def test_the_html_report_shows_the_groups_when_metrics_have_them():
    metrics = origin.origin_metrics(FILES, np.zeros(6), np.zeros(6), LABELLED)
    table = report.origin_table(metrics)
    assert "By origin" in table and table.count("<tr>") == 5
    assert "accepted unchanged" in table and '<td class="n">1.0000</td>' in table
    assert report.origin_table({"accuracy": 1.0, "n_val": 3}) == ""  # older metrics.json


def test_the_architecture_page_lists_every_origin_key():
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    keys_paragraph = text.split("`evaluation/metrics.json` keys:", 1)[1].split("\n\n", 1)[0]
    for key in origin.METRIC_KEYS:
        assert f"`{key}`" in keys_paragraph, key
