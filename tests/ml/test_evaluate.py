import base64
import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ml import evaluate as ev
from ml import origin, plots, report
from ml import prepare as prep
from ml import train as tr
from ml.params import parse_params
from ml.preprocess import preprocess_batch
from ml.synthetic import generate_dataset

CLASSES = ("Moon", "Saturn", "Uranus")
TINY = {
    "prepare": {"image_size": 16, "split": 0.4, "seed": 2, "batch_size": 8, "min_images_per_class": 5},
    "train": {"seed": 4, "epochs": 2, "conv_filters": [8], "dense_units": 16, "lr": 0.01},
}


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    generate_dataset(root / "raw", per_class=12, size=32, seed=2, classes=CLASSES)
    params = parse_params(TINY)
    prep.prepare(params.prepare, root / "raw", root / "prepared", log=quiet)
    tr.train(params, root / "prepared", root / "model", root / "history.csv", log=quiet)
    return root


@pytest.fixture(scope="module")
def evaluated(workspace):
    metrics, report_path = ev.evaluate(
        9, workspace / "prepared", workspace / "model", workspace / "evaluation", workspace / "history.csv"
    )
    return metrics, report_path, workspace / "evaluation"


def test_metrics_follow_the_contract(evaluated, workspace):
    metrics, _, out = evaluated
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(ev.METRIC_KEYS) - set(origin.METRIC_KEYS) <= set(metrics) <= set(ev.METRIC_KEYS)
    assert metrics["n_val"] == len(prep.read_manifest(workspace / "prepared")["files"]["val"]) > 0
    assert list(metrics["per_class_accuracy"]) == list(CLASSES)
    # no provenance: every validation image is "original", none was labelled
    assert metrics["n_val_original"] == metrics["n_val"]
    assert metrics["accuracy_original"] == metrics["accuracy"]
    assert metrics["n_val_labelled"] == 0 and "accuracy_labelled" not in metrics
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["loss"] > 0
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["n_val"]
    right = sum(r["actual"] == r["predicted"] for r in rows)
    assert right / len(rows) == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert {r["file"] for r in rows} == set(prep.read_manifest(workspace / "prepared")["files"]["val"])


def test_metric_values_match_a_hand_computation():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([
        [0.8, 0.1, 0.1], [0.4, 0.5, 0.1],  # second one wrong (class 1)
        [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
        [0.1, 0.1, 0.8], [0.3, 0.1, 0.6],
    ])
    m = ev.compute_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 6, abs=1e-6)
    assert m["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert m["recall_macro"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-6)
    assert m["precision_macro"] == pytest.approx((1 + 2 / 3 + 1) / 3, abs=1e-6)
    expected_loss = -np.mean(np.log([0.8, 0.4, 0.7, 0.8, 0.8, 0.6]))
    assert m["loss"] == pytest.approx(expected_loss, abs=1e-5)


def test_predict_files_is_preprocess_then_the_model(workspace):
    import keras

    model = keras.models.load_model(workspace / "model" / "model.keras")
    split = prep.load_split("val", workspace / "prepared")
    paths = [workspace / "raw" / f for f in split.files]
    from_files = ev.predict_files(model, paths, split.config, batch_size=4)  # 6 files: two batches
    assert from_files.shape == (len(paths), len(CLASSES))
    np.testing.assert_allclose(from_files, np.asarray(model(split.x, training=False)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        from_files, ev.predict_arrays(model, preprocess_batch(paths, split.config)), rtol=1e-5, atol=1e-6
    )
    assert ev.predict_files(model, [], split.config).shape == (0, len(CLASSES))


def test_report_is_one_self_contained_file_with_every_plot(evaluated):
    _, report_path, out = evaluated
    text = report_path.read_text()
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.name for p in pngs} == {
        plots.HISTORY_PNG, plots.CONFUSION_PNG, plots.PREVIEW_PNG, plots.MISCLASSIFIED_PNG, plots.NOVELTY_PNG
    }
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in pngs)
    for pattern in (r"(src|href)\s*=\s*[\"']?(https?:)?//", r"<script", r"<link", r"@import", r"url\("):
        assert not re.search(pattern, text, re.IGNORECASE), pattern
    for name in CLASSES:
        assert f"<td>{name}</td>" in text
    assert "accuracy" in text and "Misclassified" in text
    assert "Unknown images" in text and "novelty" in text


def test_novelty_numbers_are_those_of_the_served_model(evaluated, workspace):
    """metrics.json's novelty keys come from model.onnx + novelty.npz, as the service computes them."""
    from ml import novelty_eval
    from ml.bundle import read_bundle
    from ml.inference import Predictor
    from ml.novelty import load_from_bundle

    metrics, _, _ = evaluated
    assert set(novelty_eval.METRIC_KEYS) <= set(metrics)
    meta = read_bundle(workspace / "model")
    val = prep.load_split("val", workspace / "prepared")
    probabilities, embeddings = Predictor.load(workspace / "model").run(val.x)
    detector = load_from_bundle(workspace / "model", meta)
    assert metrics["accuracy_served"] == pytest.approx(metrics["accuracy"], abs=1e-6)  # exported = Keras
    assert metrics["novelty_threshold"] == pytest.approx(meta.novelty.threshold, abs=1e-6)
    assert metrics["novelty_val_flagged"] == pytest.approx(detector.is_unknown(embeddings).mean(), abs=1e-6)
    noise = novelty_eval.unknown_inputs(meta.preprocess_config, n=20)["noise"]
    flagged = detector.is_unknown(Predictor.load(workspace / "model").run(noise)[1]).mean()
    assert flagged == pytest.approx(metrics["novelty_flagged_noise"], abs=0.25)  # 20 of the same 100
    for name in novelty_eval.UNKNOWN_SETS:
        assert 0.0 <= metrics[f"novelty_flagged_{name}"] <= 1.0
        assert 0.0 <= metrics[f"novelty_auroc_{name}"] <= 1.0
    # even a two-epoch model on 16-pixel images ranks pixel noise above planets
    assert metrics["novelty_auroc_noise"] > 0.8


def test_unknown_sets_are_deterministic():
    from ml import novelty_eval
    from ml.preprocess import PreprocessConfig

    config = PreprocessConfig(16, "rgb")
    a, b = novelty_eval.unknown_inputs(config, n=6), novelty_eval.unknown_inputs(config, n=6)
    assert list(a) == list(novelty_eval.UNKNOWN_SETS)
    for name in a:
        assert a[name].shape == (6, 16, 16, 3)
        np.testing.assert_array_equal(a[name], b[name])


def test_a_perfect_model_gets_a_clear_none_image_and_table(tmp_path):
    x = np.zeros((4, 8, 8, 3), dtype=np.float32)
    split = prep.Split(x, np.array([0, 1, 0, 1]), ["a/1", "b/1", "a/2", "b/2"], ["a", "b"], None)
    perfect = np.eye(2, dtype=np.float32)[split.y]
    figures = plots.draw_all(tmp_path, split, perfect, tmp_path / "absent.csv", preview_count=4)
    titles = [t for t, _ in figures]
    assert "Misclassified images" in titles and "Training history" not in titles  # no history, no plot
    assert (tmp_path / plots.MISCLASSIFIED_PNG).stat().st_size > 0
    metrics = ev.compute_metrics(split.y, perfect, split.classes)
    html = report.render(metrics=metrics, per_class=ev.per_class_table(split.y, split.y, split.classes),
                         figures=figures, meta={}, mistakes=[])
    assert '<td colspan="3">none</td>' in html


def test_preview_covers_every_class_when_there_is_room():
    y = np.repeat(np.arange(10), 30)  # the split is sorted by class
    assert set(y[plots.preview_indices(len(y), 25)]) == set(range(10))
    assert len(plots.preview_indices(5, 25)) == 5


def test_missing_or_mismatched_inputs_say_which_stage_to_run(workspace, tmp_path):
    with pytest.raises(ev.EvaluateError, match="train stage first.*make repro"):
        ev.evaluate(4, workspace / "prepared", tmp_path / "no-model", tmp_path / "out")
    with pytest.raises(ev.EvaluateError, match="prepare stage first"):
        ev.evaluate(4, tmp_path / "no-data", workspace / "model", tmp_path / "out")
    other = tmp_path / "model"
    other.mkdir()
    (other / "model.keras").write_bytes((workspace / "model" / "model.keras").read_bytes())
    meta = json.loads((workspace / "model" / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "classes": ["x", "y", "z"]}))
    with pytest.raises(ev.EvaluateError, match="dvc repro"):
        ev.evaluate(4, workspace / "prepared", other, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_summary_counts_the_wrong_images():
    metrics = {"accuracy": 0.99, "loss": 0.1, "precision_macro": 1, "recall_macro": 1, "f1_macro": 1,
               "per_class_accuracy": {"a": 1.0, "b": 0.98}, "n_val": 300}
    text = ev.summary(metrics)
    assert "3 wrong" in text and "b 0.980" in text
    assert math.isclose(metrics["accuracy"], 0.99)
