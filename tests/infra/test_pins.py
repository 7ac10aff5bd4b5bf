"""The pin files Dependabot updates (infra/pins) agree with the defaults the program deploys."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra.components.runners import CHARTS
from infra.config import KEYS

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "infra" / "pins"


def test_the_runner_image_pin_is_the_default_runner_image():
    pod = yaml.safe_load((PINS / "runner-image.yaml").read_text())
    (container,) = pod["spec"]["containers"]
    assert container["image"] == KEYS["orbit:runnerImage"].default


def test_both_arc_charts_are_pinned_at_the_default_chart_version():
    chart = yaml.safe_load((PINS / "Chart.yaml").read_text())
    pins = {d["name"]: (d["version"], d["repository"]) for d in chart["dependencies"]}
    version = KEYS["orbit:arcChartVersion"].default
    assert pins == {"gha-runner-scale-set-controller": (version, CHARTS),
                    "gha-runner-scale-set": (version, CHARTS)}


def test_dependabot_watches_actions_python_the_runner_image_and_the_charts():
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert watched == {("github-actions", "/"), ("pip", "/"), ("docker", "/infra/pins"),
                       ("helm", "/infra/pins")}
