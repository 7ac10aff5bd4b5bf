"""Turn the bento that `make bento` built into an image in Artifact Registry, tagged with the commit SHA.

    python -m ci.image --image europe-west6-docker.pkg.dev/proj/orbit/planet-classifier:3f2c1ab...

It takes the newest bento in $BENTOML_HOME (or --bento NAME:VERSION), builds it with `bentoml containerize`
on whichever OCI builder the runner has (docker, else buildah, else podman) and pushes it. If the tag is
already in the registry (a re-run of the same commit, and the registry's tags are immutable) it builds
nothing and says so: the same commit always means the same model, because dvc.lock pins it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

BACKENDS = ("docker", "buildah", "podman")
_REF = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

#: run(cmd, capture): capture=False streams the output to the log (builds are long and people watch them).
Runner = Callable[[Sequence[str], bool], subprocess.CompletedProcess]
Which = Callable[[str], str | None]


class ImageError(RuntimeError):
    """The image could not be built or pushed; the message says what to do."""


def _run(cmd: Sequence[str], capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=capture, text=True, check=False)


def _bentoml() -> str:
    beside = Path(sys.executable).with_name("bentoml")
    return str(beside) if beside.exists() else "bentoml"


def valid_ref(ref: str) -> str:
    if not _REF.fullmatch(ref or ""):
        raise ImageError(f"{ref!r} is not a full image reference REGISTRY/PATH/NAME:TAG")
    return ref


def newest_bento(run: Runner = _run) -> str:
    """The most recently built bento of the local store (`bentoml list` sorts newest first)."""
    result = run([_bentoml(), "list", "-o", "json"], True)
    if result.returncode != 0:
        raise ImageError(f"`bentoml list` failed: {result.stderr.strip()[-500:]}")
    try:
        bentos = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise ImageError(f"`bentoml list -o json` printed no JSON: {result.stdout[:200]!r}") from None
    if not bentos:
        raise ImageError("no bento in the BentoML store ($BENTOML_HOME): run `make bento` first")
    return str(bentos[0]["tag"])


def pick_backend(requested: str = "auto", which: Which = shutil.which) -> str:
    candidates = BACKENDS if requested == "auto" else (requested,)
    for name in candidates:
        if which(name):
            return name
    raise ImageError(
        f"no OCI builder found (looked for {', '.join(candidates)}); install docker or buildah "
        "on the runner, or pass --backend"
    )


def exists(ref: str, backend: str, run: Runner = _run, which: Which = shutil.which) -> bool:
    """Whether the registry already holds this tag (credentials come from the backend's login)."""
    if backend == "docker":
        return run(["docker", "manifest", "inspect", ref], True).returncode == 0
    if which("skopeo"):
        return run(["skopeo", "inspect", "--raw", f"docker://{ref}"], True).returncode == 0
    return False


def build_and_push(
    ref: str,
    bento: str | None = None,
    backend: str = "auto",
    run: Runner = _run,
    which: Which = shutil.which,
) -> str:
    """Build and push `ref`; returns what happened, in words, for the log."""
    valid_ref(ref)
    builder = pick_backend(backend, which)
    if exists(ref, builder, run, which):
        return f"{ref} is already in the registry: nothing to build"
    bento = bento or newest_bento(run)
    print(f"image: building {ref} from bento {bento} with {builder}", flush=True)
    steps = (
        [_bentoml(), "containerize", bento, "--backend", builder, "--image-tag", ref],
        [builder, "push", ref],
    )
    for cmd in steps:
        if run(cmd, False).returncode != 0:
            hint = "is the builder logged in to the registry? (`gcloud auth configure-docker HOST`)"
            if cmd[1] != "push":
                hint = "its output is above"
            raise ImageError(f"`{' '.join(cmd[:2])}` failed: {hint}")
    return f"pushed {ref} (bento {bento})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="REGISTRY_PATH/NAME:TAG to build and push")
    parser.add_argument("--bento", help="bento to containerize (default: the newest in the store)")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    args = parser.parse_args(argv)
    try:
        print(f"image: {build_and_push(args.image, args.bento, args.backend)}")
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
