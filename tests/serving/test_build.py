"""`python -m serving.build`: an offline bento with the model, the service code and a Dockerfile."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from serving.build import main
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_build_prints_tag_and_dockerfile_and_packs_what_the_image_needs(
    stored_tag, bentoml_home, capsys, monkeypatch
):
    monkeypatch.setenv("ORBIT_BASE_IMAGE", "127.0.0.1:5000/orbit/python:3.11")
    monkeypatch.setenv("ORBIT_MODEL_TAG", stored_tag)
    assert main([]) == 0
    out = capsys.readouterr().out
    tag = out.split("bento:", 1)[1].split()[0]
    dockerfile = Path(out.split("dockerfile:", 1)[1].split()[0])
    assert tag.startswith("planet-classifier:")
    assert dockerfile.is_file() and dockerfile.is_relative_to(bentoml_home)
    assert "FROM 127.0.0.1:5000/orbit/python:3.11" in dockerfile.read_text()
    assert_orbits_install_step(dockerfile.read_text())

    bento = dockerfile.parents[2]
    sources = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert {"serving/service.py", "serving/middleware.py", "ml/preprocess.py", "ml/__init__.py"} <= sources
    assert not any(s.startswith("tests/") or s in {"serving/build.py", "serving/package.py"} for s in sources)
    served_ml = {"ml/preprocess.py", "ml/__init__.py", "ml/bundle.py", "ml/inference.py", "ml/novelty.py",
                 "ml/params.py"}
    assert {s for s in sources if s.startswith("ml/")} == served_ml

    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    models = [m["tag"] for service in manifest["services"] for m in service["models"]]
    assert models == [stored_tag]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "dvc" not in requirements
    assert "tensorflow" not in requirements and "keras" not in requirements and "tf2onnx" not in requirements


def assert_orbits_install_step(dockerfile: str) -> None:
    """serving/Dockerfile.j2's install step, not BentoML's: no compilers or apt lists, no uv, no pip kept."""
    for absent in ("apt-get", "build-essential", "git ", "uv venv", "--require-hashes"):
        assert absent not in dockerfile, absent
    assert "python3 -m venv /app/.venv" in dockerfile
    assert "pip install --no-cache-dir" in dockerfile
    assert "pip uninstall --yes --quiet pip setuptools" in dockerfile
    assert "-name tests -prune -exec rm -rf" in dockerfile
    # the pod runs as infra's UID, not the image's user: the model's 0700 folder must become readable
    copied = dockerfile.index("COPY --chown=bentoml:bentoml . ./")
    assert dockerfile.index('chmod -R a+rX,go-w "$BENTO_PATH"') > copied
    # what infra/components/service.py expects of the image: BentoML's port and entrypoint, a non-root user
    assert "EXPOSE 3000" in dockerfile and "USER bentoml" in dockerfile
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in dockerfile


def test_containerize_renders_orbits_dockerfile_from_where_ci_image_runs_it(
    stored_tag, bentoml_home, monkeypatch
):
    """`bentoml containerize` renders the Dockerfile again from the bento (CI's path, not the one `build`
    wrote); since BentoML 1.4.36 it refuses the template unless run from above its temp copy (#5566)."""
    import tempfile

    import bentoml
    from bentoml._internal.container import construct_containerfile

    from ci.image import _run
    from serving.build import build

    monkeypatch.setenv("ORBIT_MODEL_TAG", stored_tag)
    tag, _ = build("python:3.11-slim")
    assert Path(_run(["pwd"]).stdout.strip()).resolve() == Path(tempfile.gettempdir()).resolve()
    monkeypatch.chdir(tempfile.gettempdir())
    with construct_containerfile(bentoml.bentos.get(tag), enable_buildkit=False) as (context, dockerfile):
        text = Path(dockerfile).read_text()
        assert (Path(context) / "models").is_dir()
    assert "FROM python:3.11-slim" in text
    assert_orbits_install_step(text)


def test_build_without_a_stored_model_says_to_package_first(bentoml_home):
    # A fresh process: this one may already hold serving.service imported with another model tag.
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "ORBIT_MODEL_TAG": "planet-classifier:doesnotexist",
    }
    result = subprocess.run(
        [sys.executable, "-m", "serving.build"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "python -m serving.package" in result.stderr
    assert "Traceback" not in result.stderr


def test_pipeline_checks_the_export_with_the_runtime_serving_installs():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pin = [r for r in project["serving"] if r.startswith("onnxruntime==")]
    assert pin and pin[0] in project["ml"]


def test_the_bento_carries_every_orbit_module_the_service_imports():
    """A module the service imports but the bento leaves out fails only in the image, at start-up."""
    from fnmatch import fnmatch

    from serving.build import EXCLUDE, INCLUDE, MONITOR_INCLUDE

    probe = (
        "import sys, serving.service\n"
        "print('\\n'.join(sorted(m.__file__ for n, m in list(sys.modules.items())\n"
        "    if n.split('.')[0] in ('ml', 'serving', 'monitor') and getattr(m, '__file__', None))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True).stdout
    imported = [Path(line).resolve().relative_to(REPO_ROOT).as_posix() for line in out.split()]
    assert "serving/service.py" in imported
    packed = [*INCLUDE, *MONITOR_INCLUDE]
    missing = [f for f in imported
               if not any(fnmatch(f, p) for p in packed) or any(fnmatch(f, p) for p in EXCLUDE)]
    assert missing == [], f"add to serving/build.py's INCLUDE: {missing}"
