"""Turn the bento that `make bento` built into an image in Artifact Registry, tagged with the commit SHA.

    python -m ci.image --image europe-west6-docker.pkg.dev/proj/orbit/planet-classifier:3f2c1ab...
    python -m ci.image --repository "$REGISTRY_PATH" --stack dev --tag "$GITHUB_SHA"

The second form names the image as the stack serves it (`orbit:serviceImageName` of Pulumi.<stack>.yaml, read
and validated by infra/config.py without the engine), so that the job building it needs no Pulumi state.

It takes the newest bento in $BENTOML_HOME (or --bento NAME:VERSION), builds it with `bentoml containerize`
on whichever OCI builder the runner has (docker, else buildah, else podman), always for linux/amd64 (GKE's
nodes, whatever the machine building it), and pushes it. If the tag is already in the registry (a re-run of
the same commit, and the registry's tags are immutable) and its image is linux/amd64, it builds nothing and
says so: the same commit always means the same model, because dvc.lock pins it; an existing image of another
platform is an error, never deployed. Either way it prints the image's digest (and writes `digest=` to
--github-output): the release deploys `name:tag@digest`, so moving the tag afterwards changes nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.config import ConfigError, from_stack_file

BACKENDS = ("docker", "buildah", "podman")
_REF = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

#: run(cmd, capture): capture=False streams the output to the log (builds are long and people watch them).
Runner = Callable[[Sequence[str], bool], subprocess.CompletedProcess]
Which = Callable[[str], str | None]


class ImageError(RuntimeError):
    """The image could not be built or pushed; the message says what to do."""


def _run(cmd: Sequence[str], capture: bool = True) -> subprocess.CompletedProcess:
    # From the temp folder: `bentoml containerize` copies the bento there and, since BentoML 1.4.36, refuses
    # the bento's Dockerfile template (serving/Dockerfile.j2) unless that copy lies under the working
    # directory (bentoml/BentoML#5566, open). BENTOML_HOME and the tools' paths are absolute.
    return subprocess.run(list(cmd), capture_output=capture, text=True, check=False,
                          cwd=tempfile.gettempdir())


def _bentoml() -> str:
    beside = Path(sys.executable).with_name("bentoml")
    return str(beside) if beside.exists() else "bentoml"


def valid_ref(ref: str) -> str:
    if not _REF.fullmatch(ref or ""):
        raise ImageError(f"{ref!r} is not a full image reference REGISTRY/PATH/NAME:TAG")
    return ref


def image_name(stack: str, root: Path = Path(".")) -> str:
    """The image name the stack deploys: `orbit:serviceImageName` of its valid Pulumi.<stack>.yaml."""
    try:
        return from_stack_file(stack, root).service.image_name
    except FileNotFoundError as exc:
        raise ImageError(f"{exc}: is PULUMI_STACK={stack!r} right?") from None
    except ConfigError as exc:
        raise ImageError(f"Pulumi.{stack}.yaml is not a valid stack file, fix it first:\n{exc}") from None


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


PLATFORM = "linux/amd64"  # GKE's node pools (infra/components/cluster.py): x86 machine types only
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Remote:
    """What the registry holds under a tag: the digest to deploy and the platforms it is built for."""

    digest: str
    platforms: tuple[str, ...]


def _platform(entry: dict) -> str:
    plat = entry.get("platform") or {}
    return f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"


def inspect(ref: str, backend: str, run: Runner = _run, which: Which = shutil.which) -> Remote | None:
    """The registry's image at `ref` (None: not there). Credentials come from the backend's login."""
    if backend == "docker":
        result = run(["docker", "manifest", "inspect", "--verbose", ref], True)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout or "null")
        entries = [e["Descriptor"] for e in (data if isinstance(data, list) else [data])]
        # An index (e.g. buildx attestations): deploy the amd64 manifest's own digest.
        chosen = next((e for e in entries if _platform(e) == PLATFORM), entries[0])
        return Remote(chosen["digest"], tuple(_platform(e) for e in entries))
    if not which("skopeo"):
        print(f"image: no skopeo beside {backend}: cannot look into the registry, building", flush=True)
        return None
    result = run(["skopeo", "inspect", f"docker://{ref}"], True)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout or "{}")
    return Remote(data["Digest"], (f"{data.get('Os', '?')}/{data.get('Architecture', '?')}",))


def build_and_push(
    ref: str,
    bento: str | None = None,
    backend: str = "auto",
    run: Runner = _run,
    which: Which = shutil.which,
) -> str:
    """Build and push `ref` for linux/amd64 unless it is there already; returns what happened, in words."""
    valid_ref(ref)
    builder = pick_backend(backend, which)
    remote = inspect(ref, builder, run, which)
    if remote is not None:
        if PLATFORM not in remote.platforms:
            raise ImageError(f"{ref} is already in the registry but built for {', '.join(remote.platforms)}, "
                             f"not {PLATFORM}: GKE cannot run it. Delete that tag (gcloud artifacts docker "
                             "images delete REF) and run again")
        return f"{ref} is already in the registry ({PLATFORM}): nothing to build"
    bento = bento or newest_bento(run)
    print(f"image: building {ref} ({PLATFORM}) from bento {bento} with {builder}", flush=True)
    steps = (
        [_bentoml(), "containerize", bento, "--backend", builder, "--opt", f"platform={PLATFORM}",
         "--image-tag", ref],
        [builder, "push", ref],
    )
    for cmd in steps:
        if run(cmd, False).returncode != 0:
            hint = "is the builder logged in to the registry? (`gcloud auth configure-docker HOST`)"
            if cmd[1] != "push":
                hint = "its output is above"
            raise ImageError(f"`{' '.join(cmd[:2])}` failed: {hint}")
    return f"pushed {ref} (bento {bento})"


def registry_digest(ref: str, backend: str = "auto", run: Runner = _run, which: Which = shutil.which) -> str:
    """The digest the registry holds for `ref` (of its linux/amd64 manifest): what the release deploys."""
    remote = inspect(ref, pick_backend(backend, which), run, which)
    if remote is None:
        raise ImageError(f"{ref} is not in the registry (or it cannot be read: docker, or skopeo, needed)")
    if not _DIGEST.fullmatch(remote.digest or ""):
        raise ImageError(f"the registry reports no sha256 digest for {ref} ({remote.digest!r})")
    return remote.digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.image", description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--image", help="REGISTRY_PATH/NAME:TAG to build and push")
    target.add_argument("--repository", help="REGISTRY_PATH; NAME comes from the stack file (needs --tag)")
    parser.add_argument("--stack", default="dev", help="stack whose image name to use (default dev)")
    parser.add_argument("--tag", help="image tag with --repository, e.g. the commit SHA")
    parser.add_argument("--bento", help="bento to containerize (default: the newest in the store)")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    parser.add_argument("--github-output", type=Path, help="append digest=... to this file ($GITHUB_OUTPUT)")
    args = parser.parse_args(argv)
    if args.repository and not args.tag:
        parser.error("--repository needs --tag")
    try:
        ref = args.image or f"{args.repository.rstrip('/')}/{image_name(args.stack)}:{args.tag}"
        what = build_and_push(ref, args.bento, args.backend)
        digest = registry_digest(ref, args.backend)
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    print(f"image: {what}; digest {digest}")
    if args.github_output:
        with args.github_output.open("a") as out:
            out.write(f"digest={digest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
