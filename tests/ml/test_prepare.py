import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ml import prepare as prep
from ml.params import parse_params
from ml.preprocess import preprocess
from ml.provenance import PROVENANCE_FILE, ProvenanceRecord, append_provenance, sha256_file
from ml.synthetic import generate_dataset

CLASSES = ("Earth", "Mars", "Saturn", "Neptune")
PER_CLASS = 20


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate_dataset(root, per_class=PER_CLASS, size=40, seed=3, classes=CLASSES)
    return root


def _params(**prepare):
    raw = {"image_size": 16, "split": 0.3, "seed": 5, "min_images_per_class": 2, **prepare}
    return parse_params({"prepare": raw}).prepare


def _run(raw_dir, tmp_path, **prepare):
    out = tmp_path / "prepared"
    manifest = prep.prepare(_params(**prepare), raw_dir, out, log=quiet)
    return manifest, out


def _side(manifest: dict) -> dict[str, str]:
    return {f: name for name in prep.SPLITS for f in manifest["files"][name]}


def test_classes_are_the_sorted_folders_and_the_split_is_disjoint_and_complete(raw_dir, tmp_path):
    manifest, _ = _run(raw_dir, tmp_path)
    train, val = set(manifest["files"]["train"]), set(manifest["files"]["val"])
    assert not train & val
    every_file = {p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*.jpg")}
    assert train | val == every_file
    assert manifest["classes"] == sorted(CLASSES)
    for name in CLASSES:
        n_val = sum(f.startswith(f"{name}/") for f in val)
        assert manifest["counts"]["val"][name] == n_val >= 1
        assert manifest["counts"]["train"][name] == PER_CLASS - n_val >= 1
    assert 0.1 < len(val) / len(every_file) < 0.5  # 0.3 expected; 80 draws


def test_each_file_is_in_validation_exactly_when_its_content_hash_says_so(raw_dir, tmp_path):
    manifest, _ = _run(raw_dir, tmp_path)
    for rel, side in _side(manifest).items():
        below = prep.split_of(sha256_file(raw_dir / rel), 5) < 0.3
        assert side == ("val" if below else "train"), rel


def test_split_of_is_uniform_and_depends_on_the_seed():
    hashes = [f"{i:064x}" for i in range(4000)]
    draws = np.array([prep.split_of(h, 1) for h in hashes])
    assert ((0 <= draws) & (draws < 1)).all()
    assert abs(np.mean(draws < 0.2) - 0.2) < 0.03
    assert not np.array_equal(draws, [prep.split_of(h, 2) for h in hashes])


def test_split_depends_on_the_seed_only(raw_dir, tmp_path):
    first, _ = _run(raw_dir, tmp_path / "a", seed=5)
    again, _ = _run(raw_dir, tmp_path / "b", seed=5)
    other, _ = _run(raw_dir, tmp_path / "c", seed=6)
    assert first["files"] == again["files"]
    assert first["files"]["val"] != other["files"]["val"]


def test_adding_images_and_a_class_never_moves_an_existing_image(raw_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    before, _ = _run(raw, tmp_path / "before")
    more = tmp_path / "more"
    generate_dataset(more, per_class=PER_CLASS, size=40, seed=11, classes=(*CLASSES, "Pluto"))
    for path in more.rglob("*.jpg"):
        (raw / path.parent.name).mkdir(exist_ok=True)
        shutil.copy(path, raw / path.parent.name / f"new_{path.name}")
    after, _ = _run(raw, tmp_path / "after")
    old, new = _side(before), _side(after)
    assert len(new) == len(old) + 5 * PER_CLASS and after["classes"] == sorted((*CLASSES, "Pluto"))
    moved = [f for f, side in old.items() if new[f] != side]
    assert moved == []
    added = [f for f in new if f not in old]
    assert {new[f] for f in added} == {"train", "val"}  # the new images land on both sides


def test_copies_of_one_image_land_on_the_same_side(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    for path in sorted((raw / "Mars").glob("*.jpg"))[:8]:
        shutil.copy(path, raw / "Mars" / f"copy_{path.name}")
    sides = _side(_run(raw, tmp_path)[0])
    for rel in [f for f in sides if "/copy_" in f]:
        assert sides[rel] == sides[rel.replace("copy_", "")]


def test_a_class_below_the_minimum_is_refused_with_what_it_needs(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    for path in sorted((raw / "Mars").glob("*.jpg"))[:13]:
        path.unlink()
    (raw / "Ceres").mkdir()
    with pytest.raises(prep.PrepareError) as info:
        prep.prepare(_params(min_images_per_class=10), raw, tmp_path / "out", log=quiet)
    message = str(info.value)
    assert "prepare.min_images_per_class=10" in message
    assert "Ceres has 0, needs 10 more" in message and "Mars has 7, needs 3 more" in message
    assert "Earth" not in message.split(":", 1)[1]
    assert not (tmp_path / "out").exists()
    assert parse_params({}).prepare.min_images_per_class == 20


def test_pinned_classes_must_match_the_folders(raw_dir, tmp_path):
    manifest, _ = _run(raw_dir, tmp_path / "ok", classes=["Saturn", "Earth", "Mars", "Neptune"])
    assert manifest["classes"] == sorted(CLASSES)  # the pin checks; the order is the folders' order
    with pytest.raises(prep.PrepareError) as info:
        _run(raw_dir, tmp_path / "bad", classes=["Earth", "Mars", "Saturn", "Venus"])
    message = str(info.value)
    assert "extra folder(s): Neptune" in message and "missing folder(s): Venus" in message
    assert "prepare.classes" in message and not (tmp_path / "bad" / "prepared").exists()


def test_pin_must_be_distinct_names():
    from ml.params import ParamsError

    with pytest.raises(ParamsError, match="prepare.classes"):
        parse_params({"prepare": {"classes": ["Mars", "Mars"]}})


def test_a_class_with_no_image_on_one_side_is_a_clear_error(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    manifest, _ = _run(raw, tmp_path / "first")
    for rel in manifest["files"]["val"]:
        if rel.startswith("Mars/"):
            (raw / rel).unlink()
    with pytest.raises(prep.PrepareError) as info:
        _run(raw, tmp_path / "second")
    message = str(info.value)
    assert "Mars (" in message and "none in validation" in message and "add images" in message
    assert "Earth" not in message


def test_files_added_by_labelling_are_marked_in_the_manifest(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    picked = {"Mars/Mars_1.jpg": True, "Earth/Earth_2.jpg": False, "Saturn/Saturn_3.jpg": None}
    now = datetime.now(UTC)
    records = [
        ProvenanceRecord(
            file="Elsewhere/moved.jpg" if rel.startswith("Saturn") else rel,  # matched by content, not path
            sha256=sha256_file(raw / rel), label=rel.split("/")[0], task_id=i, changed=changed,
            prelabel=None if changed is None else "Jupiter", exported_at=now,
        )
        for i, (rel, changed) in enumerate(picked.items())
    ]
    append_provenance(raw, records)
    manifest, out = _run(raw, tmp_path)
    assert manifest["labelled"] == picked
    assert json.loads((out / prep.MANIFEST).read_text())["labelled"] == picked
    (raw / PROVENANCE_FILE).write_text("{not json\n")
    with pytest.raises(prep.PrepareError, match="line 1"):
        _run(raw, tmp_path / "broken")


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
    shutil.copytree(raw_dir, raw)
    (raw / "Earth" / "notes.jpg").write_text("not an image")
    (raw / "Mars" / "cut.jpg").write_bytes((raw / "Mars" / "Mars_0.jpg").read_bytes()[:200])
    out = tmp_path / "prepared"
    with pytest.raises(prep.PrepareError) as info:
        prep.prepare(_params(), raw, out, log=quiet)
    message = str(info.value)
    assert "2 file(s)" in message and "notes.jpg" in message and "cut.jpg" in message
    assert not out.exists()
    assert (raw / "Earth" / "notes.jpg").exists()  # nothing deleted behind the user's back


def test_files_that_are_not_images_are_reported_not_dropped_silently(tmp_path, raw_dir):
    raw = tmp_path / "raw"
    shutil.copytree(raw_dir, raw)
    (raw / "Mars" / "README.txt").write_text("notes")
    lines = []
    manifest = prep.prepare(_params(), raw, tmp_path / "prepared", log=lines.append)
    assert any("skipped 1 file" in line and "Mars/README.txt" in line for line in lines)
    assert len(manifest["files"]["train"]) + len(manifest["files"]["val"]) == len(CLASSES) * PER_CLASS


def test_missing_data_or_a_single_class_say_what_to_do(tmp_path):
    with pytest.raises(prep.PrepareError, match="make data"):
        prep.list_images(tmp_path / "nowhere")
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=1, size=24, classes=CLASSES[:1])
    with pytest.raises(prep.PrepareError, match="at least 2"):
        prep.list_images(raw)


def test_cli_rejects_bad_params_before_reading_data(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare:\n  split: 2\n")
    argv = ["--params", str(bad), "--raw", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]
    assert prep.main(argv) == 2
    err = capsys.readouterr().err
    assert "prepare.split" in err and "make data" not in err
    assert not (tmp_path / "o").exists()


def test_cli_takes_the_pin_from_params_yaml(tmp_path, raw_dir, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("prepare:\n  min_images_per_class: 5\n  classes: [Earth, Mars, Saturn, Venus]\n")
    argv = ["--params", str(params), "--raw", str(raw_dir), "--out", str(tmp_path / "out")]
    assert prep.main(argv) == 2
    message = capsys.readouterr().err
    assert "extra folder(s): Neptune" in message and "missing folder(s): Venus" in message
    assert not (tmp_path / "out").exists()
