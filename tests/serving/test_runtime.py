"""The served process runs the exported graph with onnxruntime only: it never imports TensorFlow or Keras, nor
the drift check's statistics and plots (scipy, scikit-learn, matplotlib), which the serving image lacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PROBE = """
import json, sys
import ml.inference, serving.service, serving.classifier, serving.prediction_log
from serving.classifier import Classifier
Classifier.load(sys.argv[1]).classify([open(sys.argv[2], "rb").read()])
FORBIDDEN = {"tensorflow", "keras", "tf2onnx", "scipy", "sklearn", "matplotlib"}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)))
"""


@pytest.mark.slow
def test_serving_imports_and_inference_load_no_tensorflow(model_dir, tmp_path):
    from tests.serving.conftest import COLOURS, disc, encode

    image = tmp_path / "mars.jpg"
    image.write_bytes(encode(disc(COLOURS["Mars"])))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "BENTOML_HOME": str(tmp_path / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run([sys.executable, "-c", PROBE, str(model_dir), str(image)], capture_output=True,
                            text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_probe_would_see_tensorflow_if_it_were_imported(tmp_path):
    """The check above is not vacuous: the same listing names keras (and scipy) once they are imported."""
    probe = "import json, sys, keras, scipy.stats\n" + "\n".join(PROBE.strip().splitlines()[-2:])
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(result.stdout.splitlines()[-1])
    assert "keras" in listed and "scipy.stats" in listed
