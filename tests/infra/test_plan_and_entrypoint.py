"""`make plan` (infra/plan.py) and the entry point Pulumi runs (Pulumi.yaml -> infra/__main__.py)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pulumi
import pytest
import yaml
from pulumi.runtime import config as runtime_config

from infra import mocks, plan
from infra.config import read_stack_file
from tests.infra.support import FIXTURES

REPO = Path(__file__).resolve().parents[2]


def test_plan_says_it_is_not_a_preview_and_lists_every_resource(dev_run):
    text = plan.render(dev_run)
    assert "THIS IS NOT `pulumi preview`" in text.splitlines()[2]
    for r in dev_run.registrations:
        assert f"{r.type}  {r.name}" in text or f"[{r.type}]  {r.name}" in text, r.type
    assert f"Summary: {len(dev_run.resources)} resources" in text
    assert "0 protected" in text
    assert "publicAccessPrevention: enforced" in text
    assert "member: principalSet://iam.googleapis.com/projects/123456789012/locations/global/" in text
    assert "kubeconfig: [secret]" in text
    assert "PRIVATE KEY" not in text


def test_plan_of_prod_marks_protected_resources(prod_run):
    text = plan.render(prod_run)
    assert text.count("[protected]") == 3  # bucket, registry, cluster
    assert "3 protected" in text


def test_plan_main_renders_the_dev_stack(capsys):
    assert plan.main([]) == 0
    out, err = capsys.readouterr()
    assert "orbit plan for stack 'dev'" in out and "bucket_url" in out
    assert "no cloud calls" in err


def test_plan_main_explains_a_missing_stack_file(capsys):
    assert plan.main(["--stack", "staging"]) == 2
    assert "Pulumi.staging.yaml not found" in capsys.readouterr().err


def test_pulumi_yaml_points_at_the_program_and_the_infra_venv():
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["name"] == "orbit"
    assert project["runtime"] == {"name": "python",
                                  "options": {"toolchain": "pip", "virtualenv": ".venv-infra"}}
    assert (REPO / project["main"] / "__main__.py").is_file()


@pulumi.runtime.test
def test_entrypoint_exports_every_output_from_engine_config(monkeypatch, dev_run):
    """Runs infra/__main__.py as the first `pulumi up` would: the committed file's config from the engine
    (no image tag, service off), outputs exported."""
    values = {k: json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool)
              else str(v) for k, v in read_stack_file("dev", FIXTURES).items()}
    values["orbit:githubAppPrivateKey"] = mocks.FAKE_PRIVATE_KEY
    exported: dict = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    token = runtime_config.CONFIG.set(values)
    try:
        runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")
    finally:
        runtime_config.CONFIG.reset(token)
    assert tuple(exported) == tuple(dev_run.platform.outputs)

    def check(resolved):
        assert resolved["bucket_url"] == "gs://my-gcp-project-orbit-data"
        assert resolved["cluster_location"] == "europe-west1-b"
        assert resolved["service_url"] == resolved["service_image"] == ""

    return pulumi.Output.all(**exported).apply(check)


def test_entrypoint_reports_config_problems_without_a_stack_trace():
    """A ConfigError becomes pulumi.RunError, which the engine prints as a plain message."""
    values = {k: str(v) for k, v in read_stack_file("dev", FIXTURES).items() if not isinstance(v, dict)}
    values.pop("orbit:githubRepo")
    token = runtime_config.CONFIG.set(values)
    try:
        with pytest.raises(pulumi.RunError) as info:
            runpy.run_path(str(REPO / "infra" / "__main__.py"), run_name="__main__")
    finally:
        runtime_config.CONFIG.reset(token)
    assert "orbit:githubRepo: missing" in str(info.value)
    assert "fix: pulumi config set orbit:githubRepo orbit" in str(info.value)


#: Set only under optional config that the committed stacks leave off (tests/infra/test_edge.py covers it).
OPTIONAL_PATHS = {("kubernetes:networking.gke.io/v1:GCPBackendPolicy", "spec.default.iap.enabled")}


def test_every_key_property_of_the_plan_is_one_the_program_sets(dev_run, prod_run):
    """The plan's table is kept by hand: a type the program no longer creates, or a path it no longer sets,
    fails here instead of silently vanishing from `make plan`."""
    from infra.plan import KEY_PROPERTIES, _at

    registered = [r for run in (dev_run, prod_run) for r in run.registrations]
    stale = []
    for typ, paths in KEY_PROPERTIES.items():
        of_type = [r.inputs for r in registered if r.type == typ]
        stale += [(typ, "*")] if not of_type else [
            (typ, path) for path in paths
            if (typ, path) not in OPTIONAL_PATHS and all(_at(inputs, path) is None for inputs in of_type)
        ]
    assert stale == []
