"""What is generated from infra/config.py (the key table, Pulumi.yaml's `config:`) is current and valid."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from infra import config_docs
from infra.config import KEYS, PROJECT_NAME, REPO_ROOT, parse, read_stack_file
from tests.infra.support import FIXTURES

SECRET = {"orbit:githubAppPrivateKey": "fake"}
DECLARED = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]


def test_the_generated_table_and_project_config_are_current():
    assert config_docs.stale() == [], "run make config-docs"


def test_the_table_lists_every_key_once():
    rows = [line for line in config_docs.table().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(KEYS)


def test_only_the_project_s_own_keys_are_declared_as_pulumi_allows():
    """Pulumi refuses a type or default on another namespace's key, and an array without `items`; a
    declared key without default would be required by the engine itself, so none is declared."""
    for name, declaration in DECLARED.items():
        assert name.startswith(f"{PROJECT_NAME}:") and name in KEYS
        assert declaration["type"] in ("string", "integer", "boolean", "array")
        items = declaration.get("items", {}).get("type")
        assert declaration["type"] != "array" or items in ("string", "integer", "boolean")
        assert "default" in declaration and not KEYS[name].required and not KEYS[name].secret


def _conforms(value, declaration) -> bool:
    """Pulumi's own check (sdk/go/common/workspace/project.go, ValidateConfigValue): a string must be a
    string; an integer may be a whole number or its digits; a boolean true/false or "true"/"false"."""
    kind = declaration["type"]
    if kind == "array":
        return isinstance(value, list) and all(_conforms(v, declaration["items"]) for v in value)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and value.lstrip("-").isdigit())
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    return isinstance(value, str)


@pytest.mark.parametrize("root", [REPO_ROOT, FIXTURES], ids=["repository", "fixtures"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_hold_values_of_the_declared_types(root, stack):
    values = read_stack_file(stack, root)
    wrong = {k: v for k, v in values.items() if k in DECLARED and not _conforms(v, DECLARED[k])}
    assert wrong == {}, "Pulumi refuses a stack value of another type than Pulumi.yaml declares"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_engine_applying_the_project_defaults_changes_nothing(stack):
    """Pulumi hands a declared default to the program as if the stack had set it; a stack value wins."""
    values = read_stack_file(stack, FIXTURES)
    with_defaults = {**{k: d["default"] for k, d in DECLARED.items()}, **values}
    assert parse(with_defaults, stack, SECRET) == parse(values, stack, SECRET)


def test_the_config_module_needs_no_pulumi_sdk():
    """ci/ reads stack files through infra/config.py in .venv, which has no Pulumi SDK."""
    code = "import sys, infra.config, infra.config_docs; sys.exit('pulumi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
