"""local/supported.py: `make setup` stops before creating .venv where orbit cannot run, and says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from local.supported import problem
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("system", "machine"), [("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64")]
)
def test_supported_platforms_pass(system, machine):
    assert problem((3, 11, 9), system, machine) is None
    assert problem((3, 13, 1), system, machine) is None


def test_intel_macs_are_refused_naming_tensorflow_and_rosetta():
    message = problem((3, 11, 9), "darwin", "x86_64")
    assert "TensorFlow 2.21" in message and "Intel" in message and "Rosetta" in message


def test_an_old_python_is_refused_with_the_version_and_the_fix():
    message = problem((3, 9, 6), "darwin", "arm64")  # Apple's python3 of the command line tools
    assert "3.9.6" in message and "python.org" in message and "PYTHON=python3.11" in message
    assert "PYTHON=python3.11" in problem((3, 10, 12), "linux", "x86_64")


def test_windows_is_sent_to_wsl():
    assert "WSL" in problem((3, 11, 9), "win32", "AMD64")


def test_it_runs_as_a_plain_script_as_the_makefile_calls_it():
    result = subprocess.run(
        [sys.executable, "local/supported.py"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_linux_only_tests_are_skipped_with_a_reason_off_linux():
    from tests.conftest import linux_only_skip

    assert linux_only_skip("linux") is None
    skip = linux_only_skip("darwin")
    assert skip.mark.name == "skip" and "darwin" in skip.mark.kwargs["reason"]
