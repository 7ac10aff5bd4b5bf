"""ORBIT_* settings and the bento build configuration."""

from __future__ import annotations

import os

import pytest
import yaml

from serving.config import DEFAULT_MODEL_TAG, ServingSettingsError
from serving.config import load_settings as load_from_environment
from tests.conftest import REPO_ROOT


@pytest.fixture
def load_settings(monkeypatch):
    """load_settings() with exactly the given ORBIT_* variables in the environment."""

    def load(env):
        for name in [n for n in os.environ if n.startswith("ORBIT_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_from_environment()

    return load


def test_defaults_without_environment(load_settings):
    settings = load_settings({})
    assert settings.model_tag == DEFAULT_MODEL_TAG
    assert settings.max_upload_bytes == 10 * 1024 * 1024


def test_environment_overrides_are_parsed(load_settings):
    settings = load_settings(
        {
            "ORBIT_MODEL_TAG": "planet-classifier:abc",
            "ORBIT_MAX_UPLOAD_BYTES": "2048",
            "ORBIT_MAX_BATCH_FILES": "8",
            "ORBIT_MAX_PIXELS": " ",
        }
    )
    assert (settings.model_tag, settings.max_upload_bytes, settings.max_batch_files) == (
        "planet-classifier:abc",
        2048,
        8,
    )


@pytest.mark.parametrize(
    "var,value",
    [("ORBIT_MAX_UPLOAD_BYTES", "ten"), ("ORBIT_MAX_BATCH_SIZE", "0"), ("ORBIT_MAX_PIXELS", "-5")],
)
def test_invalid_values_name_the_variable(var, value, load_settings):
    with pytest.raises(ServingSettingsError, match=var):
        load_settings({var: value})


def test_every_bad_variable_is_reported_at_once_with_its_value(load_settings):
    with pytest.raises(ServingSettingsError) as error:
        load_settings({"ORBIT_WORKERS": "0", "ORBIT_ACCESS_LOG": "maybe", "ORBIT_MODEL_TAG": "m:1"})
    message = str(error.value)
    assert "ORBIT_WORKERS='0'" in message and "ORBIT_ACCESS_LOG='maybe'" in message
    assert "ORBIT_MODEL_TAG" not in message


def test_the_edge_s_default_body_cap_is_the_service_s_own_upload_limit():
    """infra cannot import serving (nor does .venv-infra hold its packages): the seam is checked here."""
    from infra.config import KEYS, SERVICE_MAX_UPLOAD_BYTES
    from serving.config import ServingSettings

    assert ServingSettings.model_fields["max_upload_bytes"].default == SERVICE_MAX_UPLOAD_BYTES
    assert KEYS["orbit:edgeMaxBodyBytes"].default == SERVICE_MAX_UPLOAD_BYTES


def test_bentofile_has_only_the_serving_dependencies_and_builds_offline():
    from serving.build import bentofile

    config = bentofile("registry.example/python:3.11")
    packages = {p.split("==")[0].lower() for p in config["python"]["packages"]}
    assert {"bentoml", "onnxruntime", "numpy", "pillow", "pydantic", "pyyaml"} <= packages
    assert not packages & {"dvc", "dvc-gs", "pulumi", "matplotlib", "scikit-learn", "pytest"}
    assert not packages & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx"}, "serving runs no TF"
    assert all("==" in p for p in config["python"]["packages"]), "every dependency pinned"
    assert config["python"]["lock_packages"] is False
    assert config["docker"]["base_image"] == "registry.example/python:3.11"
    yaml.safe_load(yaml.safe_dump(config))  # serialisable as the bentofile.yaml it becomes
    for pattern in config["include"]:
        assert list(REPO_ROOT.glob(pattern)), f"include pattern {pattern} matches nothing"


def test_inference_threads_default_to_one_and_are_applied_by_the_loader(model_dir, load_settings):
    """A fresh process (as a server worker is) gets onnxruntime's pool set by Classifier.load."""
    import subprocess
    import sys

    assert load_settings({}).inference_threads == 1
    assert load_settings({"ORBIT_INFERENCE_THREADS": "3"}).inference_threads == 3
    with pytest.raises(ServingSettingsError, match="ORBIT_INFERENCE_THREADS"):
        load_settings({"ORBIT_INFERENCE_THREADS": "0"})
    probe = (
        "import sys\n"
        "from serving.classifier import Classifier\n"
        "options = Classifier.load(sys.argv[1], threads=2).predictor.session.get_session_options()\n"
        "print(options.intra_op_num_threads, options.inter_op_num_threads)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(model_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["2", "1"]


def test_workers_are_a_number_or_one_per_cpu(load_settings):
    from infra.config import SERVICE_WORKERS  # what the GKE Deployment sets

    assert load_settings({}).workers == 1
    assert load_settings({"ORBIT_WORKERS": SERVICE_WORKERS}).workers == "cpu_count"
    assert load_settings({"ORBIT_WORKERS": "3"}).workers == 3
    assert load_settings({"ORBIT_WORKERS": " cpu_count "}).workers == "cpu_count"
    for value in ("0", "65", "2.5", "auto", "-1"):
        with pytest.raises(ServingSettingsError) as error:
            load_settings({"ORBIT_WORKERS": value})
        assert str(error.value).count("ORBIT_WORKERS") == 1, "one message, not one per form accepted"
        assert "cpu_count" in str(error.value)


def test_the_prediction_log_is_off_unless_set_and_its_location_is_checked(load_settings):
    assert load_settings({}).prediction_log == ""
    assert load_settings({"ORBIT_PREDICTION_LOG": " gs://orbit-data "}).prediction_log == "gs://orbit-data"
    assert load_settings({"ORBIT_PREDICTION_LOG": ".orbit/log"}).prediction_log == ".orbit/log"
    assert load_settings({"ORBIT_LOG_IMAGE_SHARE": "0.5"}).log_image_share == 0.5
    for var, value in (
        ("ORBIT_PREDICTION_LOG", "gs://bucket/monitoring"),
        ("ORBIT_PREDICTION_LOG", "gs://"),
        ("ORBIT_LOG_IMAGE_SHARE", "1.5"),
        ("ORBIT_LOG_IMAGE_SHARE", "some"),
    ):
        with pytest.raises(ServingSettingsError, match=var):
            load_settings({var: value})
