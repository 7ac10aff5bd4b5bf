import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import prepare as prep
from ml import train as tr
from ml.params import parse_params
from ml.synthetic import generate_dataset
from tests.conftest import REPO_ROOT

CLASSES = ("Earth", "Jupiter", "Mars")
TINY = {
    "prepare": {"image_size": 16, "split": 0.25, "seed": 2, "batch_size": 8, "min_images_per_class": 8},
    "train": {"seed": 4, "epochs": 3, "conv_filters": [8], "dense_units": 16, "lr": 0.01},
}

pytestmark = pytest.mark.slow


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    generate_dataset(root / "raw", per_class=12, size=32, seed=1, classes=CLASSES)
    prep.prepare(parse_params(TINY).prepare, root / "raw", root / "prepared", log=quiet)
    return root / "prepared"


def _train(prepared: Path, out: Path, raw: dict = TINY):
    return tr.train(parse_params(raw), prepared, out / "model", out / "history.csv", log=quiet)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return _train(prepared, out), out


def test_writes_model_meta_and_history(trained):
    _, out = trained
    assert (out / "model" / "model.keras").is_file() and (out / "model" / "model.onnx").is_file()
    meta = json.loads((out / "model" / "meta.json").read_text())
    assert meta["classes"] == list(CLASSES)
    assert meta["preprocess"] == {"image_size": 16, "color_mode": "rgb"}
    assert meta["params"]["train"]["epochs"] == 3 and meta["params"]["prepare"]["batch_size"] == 8
    with (out / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == set(tr.HISTORY_COLUMNS)
    assert all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in rows)


def test_outputs_are_probabilities_and_augmentation_is_off_at_inference(trained, prepared):
    model, _ = trained
    x = prep.load_split("val", prepared).x
    first = np.asarray(model(x, training=False))
    assert first.shape == (len(x), len(CLASSES))
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(first, np.asarray(model(x, training=False)))
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), first, rtol=1e-5, atol=1e-6)
    names = {type(layer).__name__ for layer in model.layers}
    assert {"RandomFlip", "RandomRotation"} <= names
    assert not np.allclose(np.asarray(model(x, training=True)), first)  # they do act while training


def test_same_data_and_params_give_the_same_weights(trained, prepared, tmp_path):
    model, _ = trained
    again = _train(prepared, tmp_path)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        assert np.array_equal(a, b)
    other = _train(prepared, tmp_path / "other", {**TINY, "train": {**TINY["train"], "seed": 5}})
    assert not np.array_equal(model.get_weights()[0], other.get_weights()[0])


def test_refuses_prepared_data_made_with_other_params(prepared, tmp_path):
    stale = {**TINY, "prepare": {**TINY["prepare"], "image_size": 24}}
    with pytest.raises(tr.TrainError, match="image_size.*dvc repro"):
        tr.train(parse_params(stale), prepared, tmp_path / "m", tmp_path / "h.csv", log=quiet)
    with pytest.raises(tr.TrainError, match="prepare stage first"):
        tr.train(parse_params(TINY), tmp_path / "missing", tmp_path / "m", tmp_path / "h.csv", log=quiet)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "params_text,key",
    [("train:\n  epochs: 0\n", "train.epochs"), ("prepare:\n  color_mode: hsv\n", "prepare.color_mode")],
)
def test_stage_with_bad_params_exits_non_zero_naming_the_key(tmp_path, params_text, key):
    (tmp_path / "params.yaml").write_text(params_text)
    result = subprocess.run(
        [sys.executable, "-m", "ml.train"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert key in result.stderr
    assert "prepare stage first" not in result.stderr  # failed on the params, before looking for data
    assert not (tmp_path / "model").exists()


def test_exports_onnx_with_probabilities_and_embedding_matching_keras(trained, prepared):
    import keras

    from ml.bundle import read_bundle
    from ml.inference import Predictor

    model, out = trained
    meta = read_bundle(out / "model")
    assert meta.embedding_dim == TINY["train"]["dense_units"]
    assert {"keras", "tf2onnx", "onnxruntime"} <= set(meta.versions)
    assert meta.n_train == len(prep.load_split("train", prepared).y)
    x = prep.load_split("val", prepared).x
    probabilities, embedding = Predictor.load(out / "model").run(x)
    np.testing.assert_allclose(probabilities, np.asarray(model.predict_on_batch(x)), atol=1e-5)
    penultimate = keras.Model(model.input, model.layers[-1].input)  # the input of the softmax Dense layer
    np.testing.assert_allclose(embedding, np.asarray(penultimate(x, training=False)), atol=1e-4)
    assert embedding.shape == (len(x), meta.embedding_dim)


def test_an_export_that_answers_differently_fails_naming_the_mismatch(trained, prepared, tmp_path):
    from ml.export import ExportError, check_parity
    from ml.inference import Predictor

    model, out = trained
    other = _train(prepared, tmp_path, {**TINY, "train": {**TINY["train"], "seed": 9}})
    x = prep.load_split("val", prepared).x
    assert check_parity(model, Predictor.load(out / "model"), x)["max_abs_diff"] <= 1e-4
    with pytest.raises(ExportError, match=r"differ by more than 0\.0001"):
        check_parity(other, Predictor.load(out / "model"), x)


def test_fits_the_novelty_model_on_the_exported_graphs_embeddings(trained, prepared):
    from ml.bundle import NOVELTY_FILE, read_bundle
    from ml.inference import Predictor
    from ml.novelty import load_from_bundle
    from ml.preprocess import preprocess
    from ml.synthetic import probe_images

    _, out = trained
    meta = read_bundle(out / "model")
    assert meta.novelty is not None and (out / "model" / NOVELTY_FILE).is_file()
    detector = load_from_bundle(out / "model", meta)
    predictor = Predictor.load(out / "model")
    train, val = prep.load_split("train", prepared), prep.load_split("val", prepared)
    assert (meta.novelty.n_train, meta.novelty.n_val) == (len(train.y), len(val.y))
    assert meta.novelty.false_unknown_rate == parse_params(TINY).novelty.false_unknown_rate
    # the threshold was set on the validation embeddings of model.onnx: the recorded share is theirs
    flagged = detector.is_unknown(predictor.run(val.x)[1])
    assert flagged.mean() == pytest.approx(meta.novelty.val_flagged_rate)
    noise = np.stack([preprocess(im, meta.preprocess_config)
                      for im in probe_images("noise", 20, np.random.default_rng(0))])
    # a 3-epoch model on 27 images flags little, but it already ranks pixel noise above known planets
    noise_scores = detector.score(predictor.run(noise)[1])
    val_scores = detector.score(predictor.run(val.x)[1])
    assert np.median(noise_scores) > np.median(val_scores)


def test_a_bundle_without_or_with_a_foreign_novelty_model_is_refused(trained, tmp_path):
    import shutil

    from ml.bundle import NOVELTY_FILE, BundleError, read_bundle, write_bundle_meta
    from ml.novelty import load_from_bundle

    _, out = trained
    folder = tmp_path / "model"
    shutil.copytree(out / "model", folder)
    meta = read_bundle(folder)
    write_bundle_meta(folder, meta.model_copy(update={"novelty": None}))
    with pytest.raises(BundleError, match=r"no novelty model.*make repro"):
        load_from_bundle(folder, read_bundle(folder))
    other = meta.novelty.model_copy(update={"threshold": meta.novelty.threshold + 1})
    with pytest.raises(BundleError, match="does not belong to meta.json"):
        load_from_bundle(folder, meta.model_copy(update={"novelty": other}))
    (folder / NOVELTY_FILE).unlink()
    with pytest.raises(BundleError, match=r"novelty.npz not found.*make repro"):
        load_from_bundle(folder, meta)
