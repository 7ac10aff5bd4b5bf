"""Check that every extra of pyproject.toml installs from wheels on each platform orbit supports.

A pin that publishes wheels for x86_64 Linux only (as `tensorflow-cpu` does) breaks `make setup` on Apple
Silicon and arm64 Linux, and nobody on an x86_64 machine notices. This resolves each environment orbit
installs (`.venv`, `.venv-infra`, and any extra outside them on its own) for every platform in PLATFORMS with
`uv pip compile --python-platform ... --python-version 3.11 --only-binary :all:`, and names the package and
platform of every failure. uv reaches the package index the way pip does on this machine: the index, extra
indexes and find-links of pip's configuration (`pip config list`, PIP_* variables) are passed on, unless
uv's own UV_* index variables are set.

    python -m ci.platforms             # exit 1 lists every environment and platform that does not resolve
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"


@dataclass(frozen=True)
class Platform:
    target: str  # uv's --python-platform
    label: str
    env: Mapping[str, str] = field(default_factory=dict)


#: What README's "Supported platforms" promises. macOS 14: the oldest Apple Silicon release with wheels for
#: everything (onnxruntime 1.32 publishes macosx_14_0_arm64 only); uv would otherwise assume 13.0.
PLATFORMS = (
    Platform("x86_64-unknown-linux-gnu", "Linux x86_64"),
    Platform("aarch64-unknown-linux-gnu", "Linux arm64"),
    Platform("aarch64-apple-darwin", "macOS 14+ on Apple Silicon", {"MACOSX_DEPLOYMENT_TARGET": "14.0"}),
)
#: The extras each environment installs together (the Makefile's `pip install -e '.[...]'` lines).
ENVIRONMENTS = {".venv": ("ml", "serving", "monitor", "test", "dev"), ".venv-infra": ("infra", "test")}
#: uv's own index settings: when one is set, the user has configured uv and pip's settings stay out of it.
UV_INDEX_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")
#: What uv prints when it cannot reach an index, as opposed to an index that lacks a wheel.
_UNREACHABLE = re.compile(
    r"Failed to fetch|error sending request|dns error|Could not connect|Connection refused|timed out|"
    r"Network is unreachable|failed to lookup address",
    re.IGNORECASE,
)
_NO_WHEEL = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?:\{[^}]*\})?==(?P<version>[^\s,]+) "
    r"has no (?P<what>[^.(]*?wheels[^.(,]*)"
)
_AVAILABLE = re.compile(
    r"Wheels are available for `(?P<name>[^`]+)` \(v(?P<version>[^)]+)\) on the following "
    r"platforms?: (?P<tags>.+)"
)


class PlatformsError(RuntimeError):
    """The check could not run (no uv, an unreadable pyproject.toml); the message says how to fix it."""


class IndexUnreachable(PlatformsError):
    """uv could not reach the package index, so nothing was learnt about the pins."""


@dataclass
class Failure:
    environment: str
    platform: Platform
    message: str

    def __str__(self) -> str:
        return f"{self.platform.label} ({self.platform.target}), {self.environment}: {self.message}"


def requirement_sets(pyproject: Path) -> dict[str, list[str]]:
    """Requirements of each environment, plus any extra no environment installs, by a readable name."""
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise PlatformsError(f"cannot read [project] from {pyproject}: {exc}") from None
    base = list(project.get("dependencies", []))
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    sets = {}
    for name, wanted in ENVIRONMENTS.items():
        present = [extra for extra in wanted if extra in extras]
        if present:
            sets[f"{name} [{','.join(present)}]"] = base + [r for extra in present for r in extras[extra]]
    covered = {extra for wanted in ENVIRONMENTS.values() for extra in wanted}
    for extra in sorted(set(extras) - covered):
        sets[f"extra [{extra}]"] = base + extras[extra]
    return sets


def pip_settings(python: str = sys.executable) -> dict[str, str]:
    """pip's effective index settings (`pip config list` covers files and PIP_* variables), by option."""
    result = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    return parse_pip_config(result.stdout if result.returncode == 0 else "")


def parse_pip_config(listing: str) -> dict[str, str]:
    """Options of `pip config list` output; environment beats `install.` beats `global.`, as in pip."""
    rank = {":env:": 3, "install": 2, "global": 1}
    best: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        match = re.match(r"^(?P<section>[^.]+)\.(?P<option>[a-z-]+)='(?P<value>.*)'$", line.strip())
        if not match or match["section"] not in rank:
            continue
        level = rank[match["section"]]
        if level >= best.get(match["option"], (0, ""))[0]:
            best[match["option"]] = (level, match["value"])
    return {option: value for option, (_, value) in best.items()}


def index_args(settings: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """uv options that reach the same indexes as pip; none when uv has index settings of its own."""
    if any(environ.get(name) for name in UV_INDEX_VARIABLES):
        return []
    args: list[str] = []
    if settings.get("no-index", "").lower() in {"1", "true", "yes", "on"}:
        args.append("--no-index")
    if settings.get("index-url"):
        args += ["--default-index", settings["index-url"]]
    extra = settings.get("extra-index-url", "").split()
    for url in extra:
        args += ["--index", url]
    for location in settings.get("find-links", "").split():
        args += ["--find-links", location]
    if extra:
        # pip pools all indexes and takes the best match; uv's default stops at the first index that has
        # the package, which a partial mirror would turn into a false "no wheel".
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def find_uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise PlatformsError("uv not found next to this Python or on PATH; `make setup` installs it")
    return found


def explain(output: str, platform: Platform) -> str:
    """The package and version that has no wheel for `platform`, from uv's resolver error."""
    available = {m["name"].lower(): m["tags"].strip() for m in _AVAILABLE.finditer(output)}
    reasons = []
    for match in _NO_WHEEL.finditer(output):
        name, version = match["name"], match["version"]
        reason = f"{name}=={version} has no {match['what'].strip()} for {platform.target}"
        if name.lower() in available:
            reason += f" (wheels: {available[name.lower()]})"
        if reason not in reasons:
            reasons.append(reason)
    if reasons:
        return "; ".join(reasons)
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "does not resolve: " + " | ".join(lines[-6:])


def resolve(
    requirements: Sequence[str], platform: Platform, *, uv: str, extra_args: Sequence[str] = ()
) -> str | None:
    """None if `requirements` resolve to wheels on `platform`, else uv's error output."""
    with tempfile.TemporaryDirectory(prefix="orbit-platforms-") as folder:
        source = Path(folder) / "requirements.in"
        source.write_text("\n".join(requirements) + "\n")
        command = [uv, "pip", "compile", str(source), "--python-platform", platform.target]
        command += ["--python-version", PYTHON_VERSION, "--only-binary", ":all:", "--no-header", "--quiet"]
        command += ["--output-file", str(Path(folder) / "requirements.txt"), *extra_args]
        env = {**os.environ, **platform.env}
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode == 0:
        return None
    output = result.stderr + result.stdout
    if _UNREACHABLE.search(output) and "No solution found" not in output:
        raise IndexUnreachable(f"uv could not reach the package index: {output.strip()[-600:]}")
    return output


def check(
    pyproject: Path = ROOT / "pyproject.toml",
    platforms: Sequence[Platform] = PLATFORMS,
    *,
    uv: str | None = None,
    extra_args: Sequence[str] | None = None,
) -> list[Failure]:
    """Every (environment, platform) pair that does not resolve, with the package to blame."""
    uv = uv or find_uv()
    extra_args = index_args(pip_settings()) if extra_args is None else list(extra_args)
    jobs = [
        (env, reqs, platform) for env, reqs in requirement_sets(pyproject).items() for platform in platforms
    ]
    # uv spends its time waiting on the index (cached pages are revalidated): run the resolutions at once.
    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        outputs = list(pool.map(lambda job: resolve(job[1], job[2], uv=uv, extra_args=extra_args), jobs))
    return [
        Failure(env, platform, explain(output, platform))
        for (env, _, platform), output in zip(jobs, outputs, strict=True)
        if output is not None
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.platforms", description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    try:
        failures = check(args.pyproject)
    except PlatformsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(p.label for p in PLATFORMS)
    if failures:
        print(f"{len(failures)} environment/platform pair(s) do not install from wheels:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    sets = ", ".join(requirement_sets(args.pyproject))
    print(f"every environment ({sets}) resolves to wheels on {names} with Python {PYTHON_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
