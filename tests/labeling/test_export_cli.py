"""`make label-export`'s half: annotated tasks come out of Label Studio with the model's pre-label in
full (the JSON export lists only prediction ids), and land in data/raw through labeling.export."""

from __future__ import annotations

import functools

import pytest

from labeling.export_cli import class_counts, counts_table
from labeling.project import ensure_project
from labeling.tasks import import_images, predict_batch
from tests.labeling.conftest import CLASSES, COLOURS, MODEL_TAG, disc


def test_counts_table_shows_before_after_and_a_new_class(tmp_path):
    for name, n in (("Mars", 2), ("Ceres", 1)):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / "provenance.jsonl").write_text("{}\n")
    after = class_counts(tmp_path)
    assert after == {"Ceres": 1, "Mars": 2}
    table = counts_table(after - after, after).splitlines()
    assert table[1].split() == ["Ceres", "0", "1", "+1"]
    assert table[-1].split() == ["total", "0", "3"]


def annotated_project(ls, title, model_service):
    project, _ = ensure_project(ls, CLASSES, title=title)
    items = [("mars.jpg", disc(COLOURS["Mars"], seed=21)), ("uranus.jpg", disc(COLOURS["Uranus"], seed=22))]
    import_images(
        ls,
        project["id"],
        items,
        predict=functools.partial(predict_batch, model_service.url),
        model_version=MODEL_TAG,
    )
    tasks = {t["data"]["source"]: t for t in ls.tasks(project["id"])}
    choice = {"from_name": "body", "to_name": "image", "type": "choices"}
    # a person confirms Mars, and calls the green one a new body
    ls.annotate(tasks["mars.jpg"]["id"], [{**choice, "value": {"choices": ["Mars"]}}])
    ls.annotate(
        tasks["uranus.jpg"]["id"],
        [
            {**choice, "value": {"choices": ["none of these"]}},
            {"from_name": "new_body", "to_name": "image", "type": "textarea", "value": {"text": ["Ceres"]}},
        ],
    )
    return project


@pytest.mark.slow
def test_the_export_carries_each_prediction_in_full(ls, title, model_service):
    project = annotated_project(ls, title, model_service)
    exported = {t["data"]["source"]: t for t in ls.export_with_predictions(project["id"])}
    assert set(exported) == {"mars.jpg", "uranus.jpg"}
    for source, expected in (("mars.jpg", "Mars"), ("uranus.jpg", "Uranus")):
        [prediction] = exported[source]["predictions"]
        assert prediction["model_version"] == MODEL_TAG
        assert prediction["result"][0]["value"]["choices"] == [expected]
        assert prediction["score"] > 0.5


@pytest.mark.slow
def test_label_export_writes_the_labels_into_raw(ls, title, model_service, tmp_path, capsys):
    pytest.importorskip(
        "labeling.export", reason="labeling/export.py (export_tasks) comes with the data work"
    )
    from labeling.export_cli import run_export

    project = annotated_project(ls, title, model_service)
    raw = tmp_path / "raw"
    (raw / "Mars").mkdir(parents=True)
    (raw / "Mars" / "old.jpg").write_bytes(disc(COLOURS["Mars"], seed=3))
    run_export(ls, raw_dir=raw, dvc=False, title=project["title"])
    assert class_counts(raw) == {"Ceres": 1, "Mars": 2}
    assert "Ceres" in capsys.readouterr().out
