"""The `reference` DVC stage (python -m monitor.reference build) and the deploy's publish step, on a tiny
bundle: the records are the ones the service would log, the file travels with the stored model, and the
published copy is named for the served model version and read by the drift check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.drift import load_reference
from monitor.reference import PUBLISHED, REFERENCE_FILE, Reference, main
from tests.serving.conftest import COLOURS, build_model_dir, disc, encode

pytestmark = pytest.mark.slow

N_PER_CLASS = 20


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A bundle, data/raw with coloured discs, and the prepare manifest naming the validation files."""
    root = tmp_path_factory.mktemp("project")
    model_dir = build_model_dir(root / "model")
    raw, prepared = root / "raw", root / "prepared"
    rng = np.random.default_rng(7)
    files = []
    for name, colour in COLOURS.items():
        (raw / name).mkdir(parents=True)
        for i in range(N_PER_CLASS):
            shade = tuple(int(c) for c in np.clip(np.add(colour, rng.integers(-20, 21, 3)), 0, 255))
            (raw / name / f"{i}.jpg").write_bytes(encode(disc(shade, size=(40 + i, 48))))
            files.append(f"{name}/{i}.jpg")
    (raw / "Mars" / "not-in-val.jpg").write_bytes(encode(disc((0, 0, 0))))  # only what the manifest names
    prepared.mkdir()
    (prepared / "manifest.json").write_text(json.dumps({"files": {"train": [], "val": files}}))
    return model_dir, raw, prepared


def test_build_makes_the_services_records_of_the_validation_files(pipeline, capsys):
    model_dir, raw, prepared = pipeline
    assert main(["build", "--model-dir", str(model_dir), "--raw", str(raw), "--prepared", str(prepared)]) == 0
    reference = Reference.load(model_dir / REFERENCE_FILE)
    assert len(reference) == 3 * N_PER_CLASS
    assert reference.model == "planet-classifier" and not reference.model_has_version
    counts = dict(zip(*np.unique(reference.predictions, return_counts=True), strict=True))
    assert counts == {"Mars": N_PER_CLASS, "Uranus": N_PER_CLASS, "Neptune": N_PER_CLASS}
    assert reference.unknown.mean() < 0.5, "known discs are mostly not unknown"
    assert np.all(reference.channel_mean[reference.predictions == "Mars", 0] > 0.1)
    assert f"{3 * N_PER_CLASS} validation records" in capsys.readouterr().out


def test_build_names_missing_validation_files(pipeline, tmp_path, capsys):
    model_dir, _, prepared = pipeline
    code = main(["build", "--model-dir", str(model_dir), "--raw", str(tmp_path / "empty"),
                 "--prepared", str(prepared), "--out", str(tmp_path / "ref.npz")])
    assert code == 1
    err = capsys.readouterr().err
    assert "not in" in err and "dvc pull" in err and "Traceback" not in err
    assert not (tmp_path / "ref.npz").exists()


def test_publish_stamps_the_stored_models_version_and_the_drift_check_reads_it(
    pipeline, bentoml_home, tmp_path, capsys
):
    import bentoml

    from serving.package import package

    model_dir, raw, prepared = pipeline
    if not (model_dir / REFERENCE_FILE).exists():
        main(["build", "--model-dir", str(model_dir), "--raw", str(raw), "--prepared", str(prepared)])
    tag, _ = package(model_dir, tmp_path)
    stored = bentoml.models.get(tag)
    assert Path(stored.path_of(REFERENCE_FILE)).is_file(), "the stored model carries its reference"

    bucket = tmp_path / "bucket"
    assert main(["publish", "--to", str(bucket), "--model", tag]) == 0
    version = tag.partition(":")[2]
    current = load_reference(str(bucket / PUBLISHED))
    kept = Reference.load(bucket / "monitoring" / "reference" / "planet-classifier" / f"{version}.npz")
    assert current.model == kept.model == str(stored.tag)
    assert len(current) == 3 * N_PER_CLASS
    np.testing.assert_array_equal(current.embeddings, Reference.load(model_dir / REFERENCE_FILE).embeddings)
    assert str(bucket / PUBLISHED) in capsys.readouterr().out

    assert main(["publish", "--to", str(bucket), "--model", "planet-classifier:doesnotexist"]) == 1
    assert "make bento" in capsys.readouterr().err
