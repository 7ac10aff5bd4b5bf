"""The label demo's own knowledge: the guide's hidden class names, and a held-out set kept apart."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from labeling.demo import DemoError, pick, true_class


def hidden(name: str) -> str:
    """A file name the way the guide hides its class: base64 of `<Class>_<n>`, unpadded, reversed."""
    return base64.b64encode(name.encode()).decode().rstrip("=")[::-1] + ".jpg"


def test_true_class_decodes_the_guides_file_names_and_nothing_else():
    assert true_class(Path(hidden("Ceres_104"))) == "Ceres"
    assert true_class(Path(hidden("Makemake_4"))) == "Makemake"
    assert true_class(Path("Ceres_104.jpg")) is None
    assert true_class(Path(hidden("no-number"))) is None


def test_pick_keeps_the_held_out_images_apart_from_the_labelled_ones(tmp_path):
    for name in ("Eris", "Ceres"):
        for n in range(7):
            (tmp_path / hidden(f"{name}_{n}")).write_bytes(b"x")
    (tmp_path / "other.jpg").write_bytes(b"x")
    label, test = pick(tmp_path, 4, 2)
    assert list(label) == ["Ceres", "Eris"]
    for name in label:
        assert len(label[name]) == 4 and len(test[name]) == 2
        assert not set(label[name]) & set(test[name])
        assert {true_class(p) for p in label[name] + test[name]} == {name}


def test_pick_without_hidden_names_says_what_to_pass(tmp_path):
    with pytest.raises(DemoError, match="--extra"):
        pick(tmp_path, 4, 2)
