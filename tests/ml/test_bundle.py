"""ml/bundle.py: meta.json round-trips, and a broken or outdated one names every problem and the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ml.bundle import META_FILE, BundleError, BundleMeta, read_bundle, write_bundle_meta
from tests.conftest import REPO_ROOT

META = {
    "classes": ["Mars", "Moon"],
    "preprocess": {"image_size": 32, "color_mode": "rgb"},
    "params": {"train": {"epochs": 3}},
    "versions": {"onnxruntime": "1.32.0"},
    "n_train": 40,
    "embedding_dim": 128,
}


def test_meta_round_trips_and_gives_the_preprocess_config(tmp_path):
    write_bundle_meta(tmp_path, BundleMeta.model_validate(META))
    meta = read_bundle(tmp_path)
    assert meta.model_dump(exclude={"novelty"}) == META and meta.novelty is None
    assert meta.preprocess_config.input_shape == (32, 32, 3)


def test_meta_of_an_older_run_names_every_problem_and_the_fix(tmp_path):
    old = {k: v for k, v in META.items() if k not in ("versions", "embedding_dim")} | {"keras_version": "3"}
    (tmp_path / META_FILE).write_text(json.dumps(old))
    with pytest.raises(BundleError) as caught:
        read_bundle(tmp_path)
    message = str(caught.value)
    assert "versions: missing" in message and "embedding_dim: missing" in message
    assert "keras_version: unknown key" in message and "`make repro`" in message


@pytest.mark.parametrize(
    "content,phrase", [(None, "not found"), ("{", "not valid JSON"), ("[]", "JSON object")]
)
def test_missing_or_unreadable_meta_says_to_run_the_pipeline(tmp_path, content, phrase):
    if content is not None:
        (tmp_path / META_FILE).write_text(content)
    with pytest.raises(BundleError, match=f"{phrase}.*make repro"):
        read_bundle(tmp_path)


def test_the_model_name_is_defined_only_in_the_bundle_module():
    """ml/, serving/, local/ and bench/ take MODEL_NAME from ml/bundle.py instead of spelling it out."""
    found = subprocess.run(
        ["git", "grep", "-l", "planet-classifier", "--", "ml", "serving", "local/*.py", "bench"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    if found.returncode not in (0, 1):
        pytest.skip(f"git grep unavailable: {found.stderr.strip()}")
    assert found.stdout.split() == ["ml/bundle.py"]


def test_importing_the_bundle_does_not_import_tensorflow():
    code = "import sys, ml.bundle; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
