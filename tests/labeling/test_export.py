"""labeling.export: Label Studio's JSON export into data/raw, with provenance, conflicts and no overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labeling import export as ex
from ml import prepare as prep
from ml.params import parse_params
from ml.provenance import PROVENANCE_FILE, read_provenance, sha256_bytes
from ml.synthetic import generate_dataset
from tests.conftest import image_bytes, make_image

VERSION = "planet-classifier:abc123"


def _image(seed: int, fmt: str = "JPEG") -> bytes:
    return image_bytes(make_image(size=(40, 40), seed=seed), fmt)


def _annotation(choice=None, *, text=None, cancelled=False, by=7, aid=100, at="2026-11-30T10:00:00.000000Z"):
    result = []
    if choice is not None:
        result.append(
            {"from_name": "body", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}
        )
    if text is not None:
        result.append(
            {"from_name": "new_body", "to_name": "image", "type": "textarea", "value": {"text": [text]}}
        )
    return {
        "id": aid,
        "completed_by": by,
        "result": result,
        "was_cancelled": cancelled,
        "created_at": at,
        "updated_at": at,
    }


def _task(tid: int, url: str, *annotations, prelabel: str | None = "Mars", score: float = 0.62) -> dict:
    predictions = []
    if prelabel is not None:
        predictions.append(
            {
                "id": 900 + tid,
                "model_version": VERSION,
                "score": score,
                "result": [
                    {
                        "from_name": "body",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": [prelabel]},
                    }
                ],
            }
        )
    return {"id": tid, "data": {"image": url}, "annotations": list(annotations), "predictions": predictions}


class Media(dict):
    """url -> bytes, remembering what was fetched."""

    def __init__(self, *args):
        super().__init__(*args)
        self.fetched: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        return self[url]


@pytest.fixture
def raw(tmp_path) -> Path:
    root = tmp_path / "raw"
    generate_dataset(root, per_class=3, size=32, seed=1, classes=("Earth", "Mars"))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_labels_land_under_their_content_hash_with_provenance(raw):
    media = Media({"/data/upload/1/a.jpg": _image(1), "/data/upload/1/b.png": _image(2, "PNG")})
    tasks = [
        _task(1, "/data/upload/1/a.jpg", _annotation("Mars", by=7, aid=11)),  # pre-label accepted
        _task(
            2, "/data/upload/1/b.png", _annotation("Earth", by={"id": 8, "email": "ann@example.org"}, aid=12)
        ),
    ]
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    sha_a, sha_b = sha256_bytes(media["/data/upload/1/a.jpg"]), sha256_bytes(media["/data/upload/1/b.png"])
    assert result.files == [f"Mars/{sha_a}.jpg", f"Earth/{sha_b}.png"]
    assert (raw / "Mars" / f"{sha_a}.jpg").read_bytes() == media["/data/upload/1/a.jpg"]  # stored as sent
    assert result.before == {"Earth": 3, "Mars": 3} and result.after == {"Earth": 4, "Mars": 4}
    assert result.added == {"Mars": 1, "Earth": 1} and result.new_classes == [] and not result.conflicts
    records = {r.sha256: r for r in read_provenance(raw)}
    accepted, changed = records[sha_a], records[sha_b]
    assert (accepted.file, accepted.label, accepted.task_id, accepted.annotation_id) == (
        f"Mars/{sha_a}.jpg",
        "Mars",
        1,
        11,
    )
    assert accepted.annotator == "user 7" and changed.annotator == "ann@example.org"
    assert accepted.annotated_at.isoformat().startswith("2026-11-30T10:00:00")
    assert (accepted.prelabel, accepted.prelabel_score, accepted.model_version) == ("Mars", 0.62, VERSION)
    assert accepted.changed is False and changed.changed is True and changed.prelabel == "Mars"
    assert accepted.source == "/data/upload/1/a.jpg"
    lines = (raw / PROVENANCE_FILE).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["sha256"] == sha_a


def test_running_the_export_twice_adds_nothing(raw):
    media = Media({f"u{i}": _image(i) for i in range(3)})
    tasks = [_task(i, f"u{i}", _annotation(("Mars", "Earth", "Mars")[i])) for i in range(3)]
    first = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert sum(first.added.values()) == 3
    before = _tree(raw)
    again = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert again.added == {} and again.files == [] and again.skipped_existing == 3
    assert again.before == again.after == first.after
    assert _tree(raw) == before  # provenance.jsonl included: no second record


def test_an_image_already_in_the_dataset_is_skipped_and_counted(raw):
    stored = raw / "Earth" / "Earth_0.jpg"
    media = Media({"copy": stored.read_bytes(), "new": _image(5)})
    tasks = [_task(1, "copy", _annotation("Mars")), _task(2, "new", _annotation("Mars"))]
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert result.skipped_existing == 1 and result.added == {"Mars": 1}
    assert result.relabel_ignored == ["Earth/Earth_0.jpg (now labelled Mars)"]
    assert stored.is_file() and len(read_provenance(raw)) == 1


def test_none_of_these_with_a_name_creates_the_class(raw):
    media = Media({"c1": _image(1), "c2": _image(2), "c3": _image(3)})
    tasks = [
        _task(1, "c1", _annotation("none of these", text=" Ceres "), prelabel="Jupiter"),
        _task(2, "c2", _annotation("none of these", text="ceres"), prelabel="Jupiter"),  # same class
        _task(3, "c3", _annotation("Mars", text="ignored: a known body was chosen")),
    ]
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert result.new_classes == ["Ceres"] and result.added == {"Ceres": 2, "Mars": 1}
    assert sorted(p.name for p in raw.iterdir() if p.is_dir()) == ["Ceres", "Earth", "Mars"]
    assert result.after["Ceres"] == 2 and "Ceres" not in result.before
    records = [r for r in read_provenance(raw) if r.label == "Ceres"]
    assert len(records) == 2 and all(r.changed and r.prelabel == "Jupiter" for r in records)
    assert "(new class)" in result.table()


def test_a_task_without_pre_label_records_changed_as_unknown(raw):
    media = Media({"x": _image(9)})
    ex.export_tasks([_task(1, "x", _annotation("Earth"), prelabel=None)], raw_dir=raw, fetch=media)
    (record,) = read_provenance(raw)
    assert record.prelabel is None and record.changed is None and record.model_version is None


def test_conflicting_labels_of_one_image_are_refused_and_named(raw):
    shared, twice, fine = _image(1), _image(2), _image(3)
    media = Media({"a": shared, "b": shared, "c": twice, "d": fine})
    tasks = [
        _task(1, "a", _annotation("Mars", by=7, aid=11)),
        _task(2, "b", _annotation("Earth", by=8, aid=12)),  # same content as task 1, other label
        _task(3, "c", _annotation("Mars", by=7, aid=13), _annotation("Earth", by=9, aid=14)),  # two people
        _task(4, "d", _annotation("Earth")),
    ]
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert result.added == {"Earth": 1}  # the rest still comes in
    described = {c.sha256: c.describe() for c in result.conflicts}
    assert set(described) == {sha256_bytes(shared), sha256_bytes(twice)}
    one = described[sha256_bytes(shared)]
    assert (
        "task 1 (annotation 11 by user 7): Mars" in one and "task 2 (annotation 12 by user 8): Earth" in one
    )
    assert "task 3 (annotation 14 by user 9): Earth" in described[sha256_bytes(twice)]
    assert not list(raw.glob(f"*/{sha256_bytes(shared)}.*")) and not list(
        raw.glob(f"*/{sha256_bytes(twice)}.*")
    )
    assert "REFUSED 2 image(s)" in result.summary()


def test_agreeing_annotations_and_repeated_images_are_imported_once(raw):
    image = _image(4)
    media = Media({"a": image, "b": image})
    tasks = [
        _task(1, "a", _annotation("Mars", aid=1), _annotation("Mars", aid=2)),
        _task(2, "b", _annotation("Mars")),
    ]
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert result.added == {"Mars": 1} and result.duplicates == 1 and not result.conflicts
    assert len(read_provenance(raw)) == 1


def test_skipped_unlabelled_and_unnamed_tasks_are_counted_not_imported(raw):
    media = Media()  # nothing may be fetched
    tasks = [
        _task(1, "a", _annotation("Mars", cancelled=True)),
        _task(2, "b"),  # no annotation
        _task(3, "c", _annotation("none of these")),
        _task(4, "d", _annotation("none of these", text="   ")),
        _task(5, "e", _annotation(None)),  # submitted with an empty result
    ]
    before = _tree(raw)
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    assert result.not_imported == {ex.CANCELLED: 1, ex.UNLABELLED: 2, ex.UNNAMED: 2}
    assert media.fetched == [] and result.added == {} and _tree(raw) == before


@pytest.mark.parametrize(
    "name", ["../etc", "Ceres/..", ".hidden", "a/b", "x" * 65, "Ceres!", "None of these"]
)
def test_an_unsafe_class_name_refuses_the_export_before_anything_is_written(raw, name):
    media = Media({"good": _image(1), "bad": _image(2)})
    tasks = [_task(1, "good", _annotation("Mars")), _task(2, "bad", _annotation("none of these", text=name))]
    before = _tree(raw)
    with pytest.raises(ex.ExportError) as info:
        ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    message = str(info.value)
    assert "nothing was imported" in message and "task 2" in message and "class name" in message
    assert _tree(raw) == before


def test_non_image_corrupt_or_unreadable_bytes_are_refused_with_a_clear_error(raw):
    jpeg = _image(1)

    def fetch(url: str) -> bytes:
        if url == "gone":
            raise ConnectionError("HTTP 404")
        return {"ok": jpeg, "text": b"<html>login</html>", "cut": jpeg[:800], "empty": b""}[url]

    tasks = [
        _task(i, url, _annotation("Mars")) for i, url in enumerate(["ok", "text", "cut", "empty", "gone"])
    ]
    tasks.append({"id": 9, "data": {}, "annotations": [_annotation("Mars")]})
    before = _tree(raw)
    with pytest.raises(ex.ExportError) as info:
        ex.export_tasks(tasks, raw_dir=raw, fetch=fetch)
    message = str(info.value)
    assert "6 task(s)" not in message and "5 task(s) cannot be used" in message
    assert "task 1: not a recognised image format" in message
    assert "task 2: the image is corrupt or truncated" in message
    assert "task 3: the upload is empty" in message
    assert "task 4: cannot read gone: HTTP 404" in message
    assert "task 9: has no data.image" in message
    assert _tree(raw) == before  # the good image waits until the export is clean


def test_an_existing_file_is_never_overwritten(raw):
    image = _image(1)
    squatter = raw / "Mars" / f"{sha256_bytes(image)}.jpg"
    squatter.write_bytes((raw / "Mars" / "Mars_0.jpg").read_bytes())  # that name, other content
    with pytest.raises(ex.ExportError, match="exists with other content"):
        ex.export_tasks([_task(1, "a", _annotation("Mars"))], raw_dir=raw, fetch=Media({"a": image}))
    assert squatter.read_bytes() == (raw / "Mars" / "Mars_0.jpg").read_bytes()
    assert not (raw / PROVENANCE_FILE).exists()


def test_prepare_marks_the_exported_files_and_their_origin(tmp_path):
    raw = tmp_path / "raw"
    generate_dataset(raw, per_class=6, size=32, seed=1, classes=("Earth", "Mars"))
    media = Media({f"u{i}": _image(i) for i in range(4)})
    tasks = [_task(i, f"u{i}", _annotation(("Mars", "Earth")[i % 2])) for i in range(4)]  # pre-label Mars
    result = ex.export_tasks(tasks, raw_dir=raw, fetch=media)
    params = parse_params({"prepare": {"image_size": 8, "split": 0.5, "seed": 1, "min_images_per_class": 2}})
    manifest = prep.prepare(params.prepare, raw, tmp_path / "prepared", log=lambda *_: None)
    assert manifest["labelled"] == {f: not f.startswith("Mars/") for f in result.files}


def test_cli_reads_an_export_file_and_exits_1_on_conflicts(raw, tmp_path, capsys):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.jpg").write_bytes(_image(1))
    (media / "b.jpg").write_bytes(_image(1))
    export = tmp_path / "export.json"
    export.write_text(json.dumps([_task(1, "media/a.jpg", _annotation("Mars"))]))
    assert ex.main([str(export), "--raw", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "added 1 image(s)" in out and "next: dvc add" in out and "Mars" in out
    export.write_text(
        json.dumps(
            [_task(1, "media/a.jpg", _annotation("Earth")), _task(2, "media/b.jpg", _annotation("Mars"))]
        )
    )
    assert ex.main([str(export), "--raw", str(raw)]) == 1
    assert "REFUSED 1 image(s)" in capsys.readouterr().out
    export.write_text("{}")
    assert ex.main([str(export), "--raw", str(raw)]) == 2
    assert "not a JSON list" in capsys.readouterr().err
