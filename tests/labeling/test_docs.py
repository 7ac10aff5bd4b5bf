"""docs/labeling.md: the commands and names it gives are the ones the code has (what can drift)."""

from __future__ import annotations

import re

from labeling import __main__ as cli
from labeling import project
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "labeling.md").read_text()
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def test_every_make_target_named_exists():
    named = set(re.findall(r"make ([a-z][a-z-]+)", DOC))
    assert {"label", "label-stop", "label-import", "label-export", "label-demo"} <= named
    for target in named:
        assert re.search(rf"^{target}:", MAKEFILE, re.M), target


def test_every_labeling_subcommand_named_exists():
    named = set(re.findall(r"python -m labeling (\w+)", DOC))
    assert named and named <= cli.subcommands()


def test_the_names_table_matches_the_project_config():
    for name in (project.IMAGE_NAME, project.CHOICES_NAME, project.NEW_BODY_NAME, project.NONE_OF_THESE):
        assert f"`{name}`" in DOC
    assert f'"{project.PROJECT_TITLE}"' in DOC.replace("**", "")
