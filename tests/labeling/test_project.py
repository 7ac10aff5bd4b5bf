"""The labelling config from the class list, and the project created once and updated in place."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from labeling.project import (
    NONE_OF_THESE,
    ClassListError,
    ensure_project,
    label_config,
    model_classes,
)
from ml.bundle import BundleMeta, write_bundle_meta
from tests.labeling.conftest import CLASSES


def test_config_has_one_choice_per_class_none_of_these_and_the_new_body_field():
    root = ET.fromstring(label_config(["Earth", "Moon & Sun", 'Io "1"']))
    choices = root.find("Choices")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("body", "image", "single")
    assert [c.get("value") for c in choices.findall("Choice")] == [
        "Earth",
        "Moon & Sun",
        'Io "1"',
        NONE_OF_THESE,
    ]
    assert root.find("Image").get("name") == "image" and root.find("Image").get("value") == "$image"
    assert (root.find("TextArea").get("name"), root.find("TextArea").get("toName")) == ("new_body", "image")


@pytest.mark.parametrize("classes", [["Earth", "Earth"], ["Earth", NONE_OF_THESE]])
def test_config_refuses_a_repeated_or_reserved_class_name(classes):
    with pytest.raises(ValueError):
        label_config(classes)


def test_class_list_comes_from_the_model_bundle(tmp_path):
    meta = {"classes": ["Ceres", "Earth"], "preprocess": {"image_size": 32, "color_mode": "rgb"},
            "params": {}, "versions": {}, "n_train": 3, "embedding_dim": 8}
    write_bundle_meta(tmp_path, BundleMeta.model_validate(meta))
    assert model_classes(tmp_path) == ["Ceres", "Earth"]


def test_an_outdated_bundle_is_refused_with_the_fix(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"classes": ["Ceres", "Earth"], "n_train": 3}))
    with pytest.raises(ClassListError, match="make repro"):
        model_classes(tmp_path)


def test_a_missing_model_says_which_command_makes_it(tmp_path):
    with pytest.raises(ClassListError, match="make repro"):
        model_classes(tmp_path)


@pytest.mark.slow
def test_rerunning_never_creates_a_second_project_and_a_new_class_updates_the_choices(ls, title):
    first, action = ensure_project(ls, CLASSES, title=title)
    assert action == "created"
    again, action = ensure_project(ls, CLASSES, title=title)
    assert (again["id"], action) == (first["id"], "unchanged")
    grown, action = ensure_project(ls, [*CLASSES, "Ceres"], title=title)
    assert (grown["id"], action) == (first["id"], "choices updated")
    assert [p["id"] for p in ls.projects() if p["title"] == title] == [first["id"]]
    assert 'value="Ceres"' in next(p for p in ls.projects() if p["id"] == first["id"])["label_config"]
    # Label Studio serves media only under a local-files storage: exactly one, on the media folder
    storages = ls.local_storages(first["id"])
    assert [s["path"] for s in storages] == [str(ls.files_root / "media")]
