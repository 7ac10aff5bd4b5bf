from pathlib import Path

import numpy as np
import pytest

from ml import prepare as prep
from ml.classes import CLASSES as ALL_CLASSES
from ml.params import parse_params
from ml.preprocess import preprocess
from ml.synthetic import generate_dataset

CLASSES = ("Earth", "Mars", "Saturn", "Neptune")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate_dataset(root, per_class=10, size=40, seed=3, classes=CLASSES)
    return root


def _params(**prepare):
    return parse_params({"prepare": {"image_size": 16, "split": 0.3, "seed": 5, **prepare}}).prepare


def _run(raw_dir, tmp_path, **prepare):
    out = tmp_path / "prepared"
    manifest = prep.prepare(_params(**prepare), raw_dir, out, log=lambda *_: None)
    return manifest, out


def test_split_is_stratified_disjoint_and_complete(raw_dir, tmp_path):
    manifest, out = _run(raw_dir, tmp_path)
    train, val = set(manifest["files"]["train"]), set(manifest["files"]["val"])
    assert not train & val
    every_file = {p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*.jpg")}
    assert train | val == every_file
    assert manifest["classes"] == sorted(CLASSES)
    for name in CLASSES:  # 30 % of 10 images per class, on every class
        assert manifest["counts"]["val"][name] == 3
        assert sum(f.startswith(f"{name}/") for f in val) == 3
        assert manifest["counts"]["train"][name] == 7


def test_split_depends_on_the_seed_only(raw_dir, tmp_path):
    first, _ = _run(raw_dir, tmp_path / "a", seed=5)
    again, _ = _run(raw_dir, tmp_path / "b", seed=5)
    other, _ = _run(raw_dir, tmp_path / "c", seed=6)
    assert first["files"] == again["files"]
    assert first["files"]["val"] != other["files"]["val"]


@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1)])
def test_splits_hold_exactly_what_preprocess_returns(raw_dir, tmp_path, color_mode, channels):
    _, out = _run(raw_dir, tmp_path, color_mode=color_mode)
    for name in prep.SPLITS:
        split = prep.load_split(name, out)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.x.shape == (len(split.files), 16, 16, channels)
        assert split.config.color_mode == color_mode
        for i, rel in enumerate(split.files):
            expected = preprocess(raw_dir / rel, split.config)
            assert np.array_equal(split.x[i], expected), rel  # bit for bit, not approximately
            assert split.classes[split.y[i]] == rel.split("/")[0]
    with np.load(out / "train.npz") as stored:
        assert stored["x"].dtype == np.uint8  # compact on disk


def test_encode_refuses_values_that_would_not_round_trip():
    exact = np.arange(256, dtype=np.float32) / np.float32(255.0)
    assert np.array_equal(prep.decode_pixels(prep.encode_pixels(exact)), exact)
    with pytest.raises(prep.PrepareError, match="not a multiple of 1/255"):
        prep.encode_pixels(np.array([0.5], dtype=np.float32))


def test_every_bad_file_is_named_and_nothing_is_written(raw_dir, tmp_path):
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=4, size=24, classes=CLASSES[:2])
    (raw / "Earth" / "notes.jpg").write_text("not an image")
    (raw / "Mars" / "cut.jpg").write_bytes((raw / "Mars" / "Mars_0.jpg").read_bytes()[:200])
    out = tmp_path / "prepared"
    with pytest.raises(prep.PrepareError) as info:
        prep.prepare(_params(split=0.5), raw, out, log=lambda *_: None)
    message = str(info.value)
    assert "2 file(s)" in message and "notes.jpg" in message and "cut.jpg" in message
    assert not out.exists()
    assert (raw / "Earth" / "notes.jpg").exists()  # nothing deleted behind the user's back


def test_files_that_are_not_images_are_reported_not_dropped_silently(tmp_path):
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=4, size=24, classes=CLASSES[:2])
    (raw / "Mars" / "README.txt").write_text("notes")
    lines = []
    manifest = prep.prepare(_params(split=0.5), raw, tmp_path / "prepared", log=lines.append)
    assert any("skipped 1 file" in line and "Mars/README.txt" in line for line in lines)
    assert len(manifest["files"]["train"]) + len(manifest["files"]["val"]) == 8


def test_missing_or_unsplittable_data_say_what_to_do(tmp_path):
    with pytest.raises(prep.PrepareError, match="make data"):
        prep.list_images(tmp_path / "nowhere")
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=1, size=24, classes=CLASSES[:2])
    with pytest.raises(prep.PrepareError, match="prepare.split"):
        prep.prepare(_params(), raw, tmp_path / "out", log=lambda *_: None)
    (raw / "Moon").mkdir()
    with pytest.raises(prep.PrepareError, match="without images.*Moon"):
        prep.list_images(raw)


def test_cli_rejects_bad_params_before_reading_data(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare:\n  split: 2\n")
    argv = ["--params", str(bad), "--raw", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]
    assert prep.main(argv) == 2
    err = capsys.readouterr().err
    assert "prepare.split" in err and "make data" not in err
    assert not (tmp_path / "o").exists()


def test_class_folders_other_than_the_expected_ones_stop_the_stage(tmp_path, capsys):
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=2, size=24, classes=ALL_CLASSES)
    (raw / "Venus").rename(raw / "Ceres")
    argv = ["--raw", str(raw), "--out", str(tmp_path / "out")]
    assert prep.main(argv) == 2
    message = capsys.readouterr().err
    assert "unexpected: Ceres" in message and "missing: Venus" in message
    assert not (tmp_path / "out").exists()
