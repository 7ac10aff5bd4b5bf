"""Build the bento: the service code, the stored model and the serving dependencies, ready to containerize.

    python -m serving.build [--base-image IMAGE]      (or ORBIT_BASE_IMAGE; default python:3.11-slim)

The Python dependencies are read from pyproject.toml (the base dependencies, which `ml/preprocess.py`
needs, plus the `serving` extra), so the image gets exactly the pins the tests ran with and nothing of
DVC, Pulumi or the plotting stack. `lock_packages` is off because locking would query the package index:
the build works offline, and the pins are already exact. The Dockerfile comes from BentoML's base template
with orbit's install step (DOCKERFILE_TEMPLATE): no compilers, no apt lists, no pip in the image.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from ml.bundle import MODEL_NAME
from serving.config import load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE_IMAGE = "python:3.11-slim"  # Docker Hub: pullable by CI, not on the offline build machine
SERVICE = "serving.service:PlanetClassifier"
# The service's imports: preprocessing, the bundle contract, the onnxruntime predictor and the novelty model
# with its params (no TensorFlow); tests/serving/test_build.py checks it against what the service imports.
INCLUDE = ["serving/*.py", "ml/__init__.py", "ml/preprocess.py", "ml/bundle.py", "ml/inference.py",
           "ml/novelty.py", "ml/params.py"]
IMAGE_ENV = [
    {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},  # no usage analytics sent from production
]
# The prediction log's writer (serving/prediction_log.py); the drift check and its plots stay out.
MONITOR_INCLUDE = ["monitor/__init__.py", "monitor/log.py", "monitor/records.py", "monitor/sinks.py"]
EXCLUDE = ["serving/build.py", "serving/package.py"]  # build-time tools, not needed in the image
#: Relative to the build context (BentoML refuses absolute paths); it replaces BentoML's install step, which
#: apt-installs build-essential and git (see the file). Setting it makes BentoML write a spec-1 bento.
DOCKERFILE_TEMPLATE = "serving/Dockerfile.j2"


class BuildError(RuntimeError):
    pass


def serving_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies plus the `serving` extra, as pinned in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    serving = project.get("optional-dependencies", {}).get("serving")
    if not serving:
        raise BuildError(f"{pyproject} has no [project.optional-dependencies] serving list")
    return [*project.get("dependencies", []), *serving]


def bentofile(base_image: str) -> dict[str, Any]:
    """The bentofile.yaml this project builds with (kept in code so the pins come from pyproject.toml)."""
    return {
        "service": SERVICE,
        "name": MODEL_NAME,
        "labels": {"project": "orbit"},
        "include": [*INCLUDE, *MONITOR_INCLUDE],
        "exclude": EXCLUDE,
        "envs": IMAGE_ENV,
        "python": {"packages": serving_requirements(), "lock_packages": False},
        "docker": {"base_image": base_image, "dockerfile_template": DOCKERFILE_TEMPLATE},
    }


def build(base_image: str) -> tuple[str, Path]:
    """Build into the BentoML store; returns the bento tag and the path of its generated Dockerfile."""
    import bentoml
    import yaml
    from bentoml.exceptions import BentoMLException, NotFound

    tag = load_settings().model_tag  # the model the service declares, packed by reference into the bento
    try:
        bentoml.models.get(tag)
    except NotFound:
        raise BuildError(
            f"model {tag} is not in the BentoML store; run `python -m serving.package` first"
        ) from None
    with tempfile.TemporaryDirectory(prefix="orbit-bentofile-") as tmp:
        config_path = Path(tmp) / "bentofile.yaml"
        config_path.write_text(yaml.safe_dump(bentofile(base_image), sort_keys=False))
        try:
            bento = bentoml.bentos.build_bentofile(str(config_path), build_ctx=str(REPO_ROOT))
        except BentoMLException as exc:
            raise BuildError(str(exc)) from None
    dockerfile = Path(bento.path_of("env/docker/Dockerfile"))
    if not dockerfile.is_file():
        raise BuildError(f"bento {bento.tag} has no Dockerfile at {dockerfile}")
    return str(bento.tag), dockerfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.build", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base-image",
        default=os.environ.get("ORBIT_BASE_IMAGE") or DEFAULT_BASE_IMAGE,
        help=f"base image of the container (env ORBIT_BASE_IMAGE; default {DEFAULT_BASE_IMAGE})",
    )
    args = parser.parse_args(argv)
    print(f"==> building the bento for {SERVICE} (base image {args.base_image})", flush=True)
    try:
        tag, dockerfile = build(args.base_image)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bento:      {tag}")
    print(f"dockerfile: {dockerfile}")
    # from the temp folder: BentoML refuses the bento's Dockerfile template otherwise (bentoml/BentoML#5566)
    print(f"next:       cd {tempfile.gettempdir()} && bentoml containerize {tag} --backend buildah   "
          "(or docker, podman, buildx)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
