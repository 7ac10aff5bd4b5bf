"""ci.platforms: every extra resolves to wheels on each supported platform; a pin that drops one is named."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from ci import platforms
from ci.platforms import ENVIRONMENTS, PLATFORMS, Platform, explain, index_args, parse_pip_config

ROOT = Path(__file__).resolve().parents[2]
LINUX_X86, LINUX_ARM, MAC_ARM = PLATFORMS

#: uv 0.13's answer for the marker-less `tensorflow-cpu` pin on arm64 Linux, as printed on this project.
UV_NO_WHEEL = """error: No solution found when resolving dependencies
  cause: Because tensorflow-cpu==2.21.0 has no wheels with a matching platform tag \
(e.g., `manylinux_2_28_aarch64`) and orbit depends on tensorflow-cpu==2.21.0, we can conclude that your \
requirements are unsatisfiable.

hint: Wheels are available for `tensorflow-cpu` (v2.21.0) on the following platforms: \
`manylinux_2_27_x86_64`, `win_amd64`
"""


def write_pyproject(folder: Path, extras: dict[str, list[str]], base: list[str] | None = None) -> Path:
    lines = ["[project]", 'name = "probe"', 'version = "0"', f"dependencies = {json.dumps(base or [])}"]
    lines.append("[project.optional-dependencies]")
    lines += [f"{name} = {json.dumps(reqs)}" for name, reqs in extras.items()]  # a JSON list is TOML
    path = folder / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_check(pyproject: Path, targets=PLATFORMS) -> list[platforms.Failure]:
    """The real check against the real index; skipped only off CI when the index cannot be reached."""
    try:
        return platforms.check(pyproject, targets)
    except platforms.IndexUnreachable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the package index is unreachable from here, so no pin can be checked: {exc}")


# --- offline: what is resolved, how the index is found, how a failure reads -----------------------------


def test_environments_are_what_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    installed = re.findall(r"pip install --quiet -e '\.\[([a-z,]+)\]'", makefile)
    assert sorted(tuple(extras.split(",")) for extras in installed) == sorted(ENVIRONMENTS.values())


def test_every_extra_is_resolved_and_one_outside_the_environments_alone(tmp_path):
    pyproject = write_pyproject(
        tmp_path,
        {"ml": ["a==1; sys_platform == 'linux'"], "test": ["b==2"], "infra": ["c==3"], "labeling": ["d==4"]},
        base=["numpy==2.4.6"],
    )
    sets = platforms.requirement_sets(pyproject)
    assert sets == {
        ".venv [ml,test]": ["numpy==2.4.6", "a==1; sys_platform == 'linux'", "b==2"],
        ".venv-infra [infra,test]": ["numpy==2.4.6", "c==3", "b==2"],
        "extra [labeling]": ["numpy==2.4.6", "d==4"],
    }


def test_the_real_extras_are_all_covered():
    sets = platforms.requirement_sets(ROOT / "pyproject.toml")
    assert set(sets) >= {".venv [ml,serving,monitor,test,dev]", ".venv-infra [infra,test]"}


def test_pip_settings_become_uv_options_with_pips_precedence():
    listing = "\n".join(
        [
            "global.index-url='https://mirror.example/simple'",
            "global.extra-index-url='file:///srv/a/simple file:///srv/b/simple'",
            "install.find-links='/srv/wheels'",
            ":env:.index-url='https://env.example/simple'",
            "global.cert='/etc/ca.pem'",
        ]
    )
    settings = parse_pip_config(listing)
    assert settings["index-url"] == "https://env.example/simple"
    assert index_args(settings, environ={}) == [
        "--default-index", "https://env.example/simple",
        "--index", "file:///srv/a/simple", "--index", "file:///srv/b/simple",
        "--find-links", "/srv/wheels",
        "--index-strategy", "unsafe-best-match",
    ]  # fmt: skip


def test_uv_settings_of_its_own_win_over_pips():
    settings = {"index-url": "https://mirror.example/simple"}
    assert index_args(settings, environ={"UV_DEFAULT_INDEX": "https://uv.example/simple"}) == []
    assert index_args({}, environ={}) == []  # nothing configured: uv's default index, as pip's


def test_a_missing_wheel_is_explained_by_package_and_platform():
    message = explain(UV_NO_WHEEL, LINUX_ARM)
    assert "tensorflow-cpu==2.21.0" in message
    assert "aarch64-unknown-linux-gnu" in message
    assert "manylinux_2_27_x86_64" in message  # where it does have wheels


def test_an_unknown_error_keeps_uvs_own_words():
    message = explain("error: something new went wrong\n  cause: details here\n", MAC_ARM)
    assert "something new went wrong" in message and "details here" in message


def test_unsupported_platforms_are_not_claimed():
    assert {p.target for p in PLATFORMS} == {
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "aarch64-apple-darwin",
    }
    assert MAC_ARM.env == {"MACOSX_DEPLOYMENT_TARGET": "14.0"}


# --- against the package index -------------------------------------------------------------------------


def test_every_environment_of_orbit_installs_on_every_supported_platform():
    failures = run_check(ROOT / "pyproject.toml")
    assert failures == [], "\n".join(map(str, failures))


def test_a_pin_without_arm_wheels_is_reported_by_package_and_platform(tmp_path):
    # The pin before issue 14: tensorflow-cpu for everyone. onnxruntime only has macOS 14+ wheels, which the
    # macOS target must admit, so it must not be reported.
    pyproject = write_pyproject(
        tmp_path, {"ml": ["tensorflow-cpu==2.21.0"], "serving": ["onnxruntime==1.32.0"]}
    )
    failures = run_check(pyproject)
    assert {(f.environment, f.platform.target) for f in failures} == {
        (".venv [ml,serving]", LINUX_ARM.target),
        (".venv [ml,serving]", MAC_ARM.target),
    }
    for failure in failures:
        assert "tensorflow-cpu==2.21.0" in failure.message and "onnxruntime" not in failure.message
        assert failure.platform.target in str(failure)


def test_intel_macs_fail_on_tensorflow():
    # README says Intel Macs are unsupported because TensorFlow 2.21 has no wheel there: keep that true.
    intel_mac = Platform("x86_64-apple-darwin", "macOS on Intel", {"MACOSX_DEPLOYMENT_TARGET": "14.0"})
    pyproject = ROOT / "pyproject.toml"
    failures = [f for f in run_check(pyproject, (intel_mac,)) if f.environment.startswith(".venv [")]
    assert len(failures) == 1 and "tensorflow==2.21.0" in failures[0].message, failures


def test_an_unreachable_index_is_not_mistaken_for_a_missing_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    pyproject = write_pyproject(tmp_path, {"ml": ["orbit-probe-package==1.0"]})
    with pytest.raises(platforms.IndexUnreachable, match="could not reach the package index"):
        platforms.check(pyproject, (LINUX_X86,), extra_args=[])


# --- the Makefile and scripts a Mac runs -----------------------------------------------------------------

#: GNU make features newer than the 3.81 that macOS ships, and GNU-only flags of the tools recipes call.
NEWER_THAN_MAKE_381 = {
    ".ONESHELL": "3.82",
    ".RECIPEPREFIX": "3.82",
    "undefine ": "3.82",
    "private ": "3.82",
    "$(file ": "4.0",
    "::=": "4.0",
    "!=": "4.0 (shell assignment)",
    "&:": "4.3 (grouped targets)",
    "$(guile ": "4.0",
    "--output-sync": "4.0",
}
GNU_ONLY = ("sed -i", "readlink -f", "grep -P", "xargs -r", "date -d", "stat -c", "find -printf", "/proc/")


@pytest.mark.parametrize("path", ["Makefile", ".ci/run"])
def test_make_and_scripts_keep_to_what_macos_ships(path):
    text = (ROOT / path).read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if path == "Makefile":  # make's own syntax is outside the recipes (a recipe's `!=` is the shell's)
        syntax = "\n".join(line for line in code.splitlines() if not line.startswith("\t"))
        newer = {feature: since for feature, since in NEWER_THAN_MAKE_381.items() if feature in syntax}
        assert newer == {}, f"GNU make 3.81 (macOS) lacks these; they came in: {newer}"
    assert [flag for flag in GNU_ONLY if flag in code] == []


def test_readme_platform_table_names_what_ci_and_the_makefile_use():
    """The commands, variables and runner labels the README's "Supported platforms" gives can drift."""
    from ci.check_workflows import make_targets
    from tests.markdown import section

    text = section((ROOT / "README.md").read_text(), "## Supported platforms")
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())["jobs"]
    for job in jobs.values():
        assert f"`{job['runs-on']}`" in text or job["runs-on"].startswith("ubuntu-latest")
    makefile = (ROOT / "Makefile").read_text()
    for variable in re.findall(r"make \w+ ([A-Z_]+)=", text):
        assert re.search(rf"^{variable} \??=", makefile, re.M), f"README sets {variable}; Makefile has none"
    for target in re.findall(r"`make ([a-z-]+)", text):
        assert target in make_targets(ROOT / "Makefile"), target
    assert "python -m ci.platforms" in text and (ROOT / "ci" / "platforms.py").is_file()
