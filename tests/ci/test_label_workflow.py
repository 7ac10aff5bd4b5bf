"""The label workflow (issue 11): by hand only, on the cluster's runner, as the CI account, its one secret
kept out of scripts and logs, and the export code it runs exists and compiles."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ci.check_workflows import check
from ci.preflight import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "label.yml"


def load() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def job() -> dict:
    [only] = load()["jobs"].values()
    return only


def test_it_runs_only_by_hand():
    assert set(load()["on"]) == {"workflow_dispatch"}
    # No URL input: the token is sent only to the address of the repository variable.
    assert set(load()["on"]["workflow_dispatch"]["inputs"]) == {"project"}
    assert job()["env"]["LABEL_STUDIO_URL"] == "${{ vars.LABEL_STUDIO_URL }}"


def test_it_runs_on_the_cluster_runner_as_the_ci_account():
    assert job()["runs-on"] == "${{ vars.LABEL_RUNNER || 'orbit-cpu' }}"
    assert check(ROOT).identities["label.yml:export"] == "CI_SERVICE_ACCOUNT"
    assert job()["permissions"] == {"contents": "write", "pull-requests": "write", "id-token": "write"}


def test_the_token_is_only_an_environment_variable_of_the_steps_that_need_it():
    text = WORKFLOW.read_text()
    assert set(re.findall(r"secrets\.([A-Z_]+)", text)) == {"LABEL_STUDIO_TOKEN"}
    holders = [s for s in job()["steps"] if "secrets." in str(s)]
    assert [s["name"] for s in holders] == ["Check the Label Studio token",
                                            "Export the completed annotations into data/raw"]
    for step in holders:
        assert "secrets." not in step["run"] and "LABEL_STUDIO_TOKEN" in step["env"]
        for line in step["run"].splitlines():  # the value is never echoed or printed, only its name
            if re.search(r"\b(echo|print|printf)\b", line):
                assert not re.search(r"\$\{?LABEL_STUDIO_TOKEN|environ\[\"LABEL_STUDIO_TOKEN", line), line


def test_every_preflighted_variable_is_known():
    [preflight] = [s["run"] for s in job()["steps"] if "ci.preflight" in s.get("run", "")]
    names = preflight.split("ci.preflight", 1)[1].split()
    assert set(names) <= set(VARIABLES) and "LABEL_STUDIO_URL" in names


def heredocs(script: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"<<'PY'\n(.*?)\n\s*PY\n", script, re.S)]


def test_the_inline_python_compiles_and_uses_names_the_labeling_code_has():
    import textwrap

    import labeling.export
    import labeling.export_cli
    import labeling.project

    scripts = [textwrap.dedent(code) for s in job()["steps"] for code in heredocs(s.get("run", ""))]
    assert len(scripts) == 2
    for code in scripts:
        compile(code, "label.yml", "exec")
    export = scripts[0]
    for module, names in ((labeling.export_cli, ("class_counts", "counts_table", "find_project")),
                          (labeling.export, ("export_tasks",)), (labeling.project, ("PROJECT_TITLE",))):
        for name in names:
            assert f"{name}" in export and hasattr(module, name), name


def test_no_pull_request_without_new_data_and_the_data_is_pushed_first():
    names = [s.get("name", "") for s in job()["steps"]]
    assert names.index("dvc add and dvc push") < names.index("Open the pull request")
    [pr] = [s for s in job()["steps"] if s.get("name") == "Open the pull request"]
    assert pr["if"] == "steps.data.outputs.changed == 'true'"
