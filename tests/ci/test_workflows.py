"""The real workflows: security lint (zizmor), the GitHub schema, existing targets, and orbit's own rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ci.check_workflows import check, commands
from ci.preflight import VARIABLES
from ci.rollback import ROLLBACK_MESSAGE

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
NAMES = ("test", "train", "deploy", "infra")


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (make setup installs it)")
    return str(path)


def steps(name: str) -> list[tuple[str, dict]]:
    return [(job_id, step) for job_id, job in load(name)["jobs"].items() for step in job.get("steps", [])]


def test_all_four_workflows_exist():
    assert set(NAMES) <= {p.stem for p in WORKFLOWS.glob("*.yml")}


def test_zizmor_finds_nothing():
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--persona=pedantic", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


SHA = "1af3b93b6815bc44a9784bd300feb67ff0d1eeb3"
#: Generic hygiene ci/check_workflows.py leaves to zizmor: each defect and the audit that must report it.
ZIZMOR_OWNS = {
    "unpinned-uses": ("uses: actions/checkout@v6", "run: make test"),
    "template-injection": (f"uses: actions/checkout@{SHA} # v6.0.0", "run: echo ${{ github.head_ref }}"),
    "artipacked": (f"uses: actions/checkout@{SHA} # v6.0.0", "run: make test"),
    "excessive-permissions": (f"uses: actions/checkout@{SHA} # v6.0.0", "run: make test"),
}


@pytest.mark.parametrize("audit", sorted(ZIZMOR_OWNS))
def test_zizmor_reports_the_hygiene_the_orbit_checker_leaves_to_it(tmp_path: Path, audit: str):
    """If an upgrade drops one of these audits, the rule must come back to ci/check_workflows.py."""
    uses, run = ZIZMOR_OWNS[audit]
    persist = "" if audit == "artipacked" else "\n        with:\n          persist-credentials: false"
    top = "permissions: read-all" if audit == "excessive-permissions" else "permissions: {}"
    (tmp_path / "w.yml").write_text(
        f"name: w\non: pull_request\n{top}\njobs:\n  j:\n    runs-on: ubuntu-latest\n"
        f"    steps:\n      - {uses}{persist}\n      - {run}\n"
    )
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--persona=pedantic", str(tmp_path / "w.yml")],
        capture_output=True,
        text=True,
    )
    assert f"[{audit}]" in result.stdout, result.stdout + result.stderr


def test_workflows_match_the_github_schema():
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_called_target_and_script_exists():
    report = check(ROOT)
    assert report.problems == []
    assert {"test", "bento", "setup"} <= report.make_targets  # only on GitHub-hosted runners
    modules = {"ci.report", "ci.gate", "ci.comment", "ci.smoke", "ci.rollback", "ci.image", "ci.preflight"}
    assert modules <= report.modules


def test_id_token_only_where_google_auth_is_used():
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            uses_auth = any(s.get("uses", "").startswith("google-github-actions/auth@") for s in job["steps"])
            assert (job["permissions"].get("id-token") == "write") == uses_auth, f"{name}.yml:{job_id}"


def test_google_auth_is_keyless():
    for name in NAMES:
        for job_id, step in steps(name):
            if step.get("uses", "").startswith("google-github-actions/auth@"):
                # An ID-token step (the smoke test of an iap stack) adds only options of the same identity.
                id_token = {"token_format", "id_token_audience", "id_token_include_email",
                            "create_credentials_file", "export_environment_variables"}
                assert set(step["with"]) - id_token == {"workload_identity_provider", "service_account"}, (
                    f"{name}:{job_id}"
                )
                assert step["with"]["workload_identity_provider"] == "${{ vars.WIF_PROVIDER }}"


def test_nothing_reads_repository_secrets():
    for name in NAMES:
        assert "secrets." not in (WORKFLOWS / f"{name}.yml").read_text(), name


def test_deploys_and_infra_updates_share_one_uncancellable_group():
    deploy = load("deploy")["concurrency"]
    infra_up = load("infra")["jobs"]["up"]["concurrency"]
    assert deploy == infra_up
    assert deploy["group"].startswith("pulumi-") and deploy["cancel-in-progress"] is False


def test_training_is_per_pull_request_and_cancels_stale_runs():
    train = load("train")
    assert train["concurrency"] == {
        "group": "train-${{ github.event.pull_request.number }}",
        "cancel-in-progress": True,
    }
    assert set(train["on"]) == {"pull_request"}
    assert {"params.yaml", "dvc.yaml", "ml/**", "data/**"} <= set(train["on"]["pull_request"]["paths"])


def test_fork_pull_requests_never_reach_the_runner_or_google():
    for name, job_id in (("train", "train"), ("infra", "preview")):
        condition = load(name)["jobs"][job_id]["if"]
        assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "github.actor != 'github-actions[bot]'" in load("train")["jobs"]["train"]["if"]


def test_train_runs_on_the_self_hosted_scale_set():
    assert load("train")["jobs"]["train"]["runs-on"] == "${{ vars.TRAIN_RUNNER || 'orbit-cpu' }}"


def test_deploy_rolls_back_only_after_pulumi_up_started():
    release = load("deploy")["jobs"]["release"]
    names = [s.get("name", "") for s in release["steps"]]
    gate, up = names.index("Regression gate against the live model"), names.index("pulumi up")
    assert gate < up  # a failed gate ships nothing
    rollback = release["steps"][-1]
    # A step timeout or a cancellation after `pulumi up` started rolls back too, not only a failure.
    assert rollback["if"] == "(failure() || cancelled()) && steps.up.outcome != 'skipped'"
    steps = {s.get("id"): s for s in release["steps"]}
    budget = steps["up"]["timeout-minutes"] + steps["smoke"]["timeout-minutes"] + rollback["timeout-minutes"]
    assert budget < release["timeout-minutes"]
    for part in ("ci.rollback target", "--config", "ci.smoke"):
        assert part in rollback["run"], part
    # the message ci.rollback reads back to know which release was bad
    assert ROLLBACK_MESSAGE.format(bad="$TAG", good="$target") in rollback["run"]


def test_each_job_authenticates_as_the_identity_it_needs():
    """The stack touched only by the deployer; the image built by the CI account; docs/cicd.md#identities."""
    assert check(ROOT).identities == {
        "deploy.yml:build": "CI_SERVICE_ACCOUNT",
        "deploy.yml:release": "DEPLOYER_SERVICE_ACCOUNT",
        "drift.yml:check": "MONITOR_SERVICE_ACCOUNT",
        "infra.yml:preview": "PREVIEW_SERVICE_ACCOUNT",
        "infra.yml:up": "DEPLOYER_SERVICE_ACCOUNT",
        "test.yml:test": "",
        "test.yml:macos-arm": "",
        "test.yml:linux-arm": "",
        "deploy.yml:tested": "",
        "infra.yml:tested": "",
        "train.yml:train": "CI_SERVICE_ACCOUNT",
        "label.yml:export": "CI_SERVICE_ACCOUNT",
    }


def test_the_suite_and_the_demo_run_on_apple_silicon_and_arm64_linux():
    """Issue 14: the laptops users carry; same actions at the same pins as the x86_64 job, read-only."""
    jobs = load("test")["jobs"]
    assert jobs["macos-arm"]["runs-on"] == "macos-15"
    assert jobs["linux-arm"]["runs-on"] == "ubuntu-24.04-arm"
    for name in ("macos-arm", "linux-arm"):
        job = jobs[name]
        assert job["permissions"] == {"contents": "read"}
        assert [s["uses"] for s in job["steps"] if "uses" in s] == [
            s["uses"] for s in jobs["test"]["steps"] if "uses" in s
        ]
        runs = [s["run"] for s in job["steps"] if "run" in s]
        assert runs == ["make test", "make demo DATA_SOURCE=synthetic"]
        assert job["steps"][-1]["if"] == "${{ !cancelled() }}"  # the demo runs even when a test failed


def test_deploy_builds_the_image_then_releases_the_tag_the_build_pushed():
    jobs = load("deploy")["jobs"]
    build, release = jobs["build"], jobs["release"]
    assert set(jobs) == {"tested", "build", "release"}
    assert build["needs"] == "tested"
    build_steps = {s.get("name") or s.get("id") or s["uses"]: s for s in build["steps"]}
    push = build_steps["Build and push the image"]
    assert build["outputs"]["tag"] == "${{ steps.push.outputs.tag }}" and push["id"] == "push"
    assert 'echo "tag=$TAG" >> "$GITHUB_OUTPUT"' in push["run"] and build["env"]["TAG"] == "${{ github.sha }}"
    assert "ci.image --repository" in push["run"]
    assert [s for s in build_steps if "pulumi" in s.lower()] == []
    assert "dvc pull train" in build_steps["Fetch the model that dvc.lock names"]["run"]
    assert build_steps["Build the bento"]["run"] == "make bento"
    assert release["needs"] == "build" and release["env"]["TAG"] == "${{ needs.build.outputs.tag }}"
    up = next(s["run"] for s in release["steps"] if s.get("id") == "up")
    assert "orbit:serviceImageTag=$TAG" in up and "orbit:serviceImageDigest=$DIGEST" in up
    assert "--github-output \"$GITHUB_OUTPUT\"" in push["run"]
    assert build["outputs"]["digest"] == "${{ steps.push.outputs.digest }}"
    assert release["env"]["DIGEST"] == "${{ needs.build.outputs.digest }}"


def test_the_deployer_only_runs_in_protected_environments():
    """The environments the deployer's WIF binding names (docs/deploy.md, step 6)."""
    deploy_environment = "${{ vars.DEPLOY_ENVIRONMENT || 'production' }}"
    assert load("deploy")["jobs"]["release"]["environment"]["name"] == deploy_environment
    assert load("infra")["jobs"]["up"]["environment"] == deploy_environment
    assert load("infra")["jobs"]["preview"]["environment"] == "${{ vars.PREVIEW_ENVIRONMENT || 'preview' }}"
    assert "environment" not in load("deploy")["jobs"]["build"]


def preflight_calls(job: dict) -> list[list[str]]:
    """The arguments of each `python -m ci.preflight` (any interpreter) a job runs."""
    return [
        words[3:]
        for step in job["steps"]
        for words in commands(step.get("run", ""))
        if Path(words[0]).name == "python" and words[1:3] == ["-m", "ci.preflight"]
    ]


def test_preflight_knows_every_variable_and_each_job_checks_its_identity():
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            checked = [w for args in preflight_calls(job) for w in args if not w.startswith(("-", "$"))]
            assert set(checked) <= set(VARIABLES), f"{name}.yml:{job_id}: {set(checked) - set(VARIABLES)}"
            identity = check(ROOT).identities[f"{name}.yml:{job_id}"]
            if identity:
                assert {"WIF_PROVIDER", identity} <= set(checked), f"{name}.yml:{job_id}"


def test_jobs_that_use_the_stack_file_check_it_for_placeholders_before_google():
    for name, job_id in (("deploy", "build"), ("deploy", "release"), ("infra", "preview"), ("infra", "up")):
        job = load(name)["jobs"][job_id]
        assert ["--stack", "$PULUMI_STACK"] in [args[:2] for args in preflight_calls(job)], f"{name}:{job_id}"
        uses = [s.get("uses", "") or s.get("run", "") for s in job["steps"]]
        preflight = next(i for i, u in enumerate(uses) if "ci.preflight" in u)
        auth = next(i for i, u in enumerate(uses) if u.startswith("google-github-actions/auth@"))
        assert preflight < auth, f"{name}:{job_id}"


def makefile_extras() -> dict[str, str]:
    """venv -> the `pip install -e '.[...]'` argument of its recipe in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    return {
        ".venv": re.search(r"\$\(PY\) -m pip install --quiet -e '(\.\[[a-z,]+\])'", text).group(1),
        ".venv-infra": re.search(r"\$\(INFRA_PY\) -m pip install --quiet -e '(\.\[[a-z,]+\])'", text).group(
            1
        ),
    }


def test_jobs_on_self_hosted_runners_run_what_the_make_targets_run_without_make():
    """The ARC runner image has git but no make and no Python: setup-python, then the targets' commands."""
    extras = makefile_extras()
    jobs = {
        ("train", "train"): [".venv"],
        ("deploy", "release"): [".venv", ".venv-infra"],
        ("infra", "preview"): [".venv-infra"],
        ("infra", "up"): [".venv-infra"],
    }
    for (name, job_id), venvs in jobs.items():
        job = load(name)["jobs"][job_id]
        assert job["runs-on"].startswith("${{ vars."), f"{name}:{job_id} may run self-hosted"
        script = "\n".join(s.get("run", "") for s in job["steps"])
        assert "make " not in script, f"{name}:{job_id}"
        for venv in venvs:
            assert f"python -m venv {venv}\n" in script, f"{name}:{job_id}: {venv}"
            assert f"{venv}/bin/python -m pip install --quiet -e '{extras[venv]}'" in script, (
                f"{name}:{job_id}"
            )
    train = "\n".join(s.get("run", "") for s in load("train")["jobs"]["train"]["steps"])
    for command in ("dvc pull --allow-missing", "dvc repro", "dvc push"):
        assert f"run: {command}" in (WORKFLOWS / "train.yml").read_text(), command
    # dvc.yaml's `python -m ml.*` must find .venv's python, as the Makefile's `export PATH` arranges
    assert 'echo "$PWD/.venv/bin" >> "$GITHUB_PATH"' in train


def test_one_pin_of_setup_python_everywhere_and_before_any_python():
    pins = set()
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            uses = [s.get("uses", "") for s in job["steps"]]
            setup = [u for u in uses if u.startswith("actions/setup-python@")]
            assert len(setup) == 1, f"{name}:{job_id}"
            pins |= set(setup)
            first_run = next(i for i, s in enumerate(job["steps"]) if "run" in s)
            assert uses.index(setup[0]) < first_run, f"{name}:{job_id}"
    assert pins == {"actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c"}


def test_every_job_that_runs_pulumi_runs_on_the_infra_runner():
    runs_on = "${{ vars.INFRA_RUNNER || 'ubuntu-latest' }}"
    assert load("deploy")["jobs"]["release"]["runs-on"] == runs_on
    assert load("infra")["jobs"]["preview"]["runs-on"] == runs_on
    assert load("infra")["jobs"]["up"]["runs-on"] == runs_on
    assert "DEPLOY_RUNNER" not in "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))


def test_previews_run_as_the_read_only_account_and_never_see_the_deployer_token():
    preview = load("infra")["jobs"]["preview"]
    auth = [s for s in preview["steps"] if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert [s["with"]["service_account"] for s in auth] == ["${{ vars.PREVIEW_SERVICE_ACCOUNT }}"]
    assert "DEPLOYER_SERVICE_ACCOUNT" not in load("infra").get("env", {})
    assert "PREVIEW_SERVICE_ACCOUNT" in [w for args in preflight_calls(preview) for w in args]


def test_the_train_report_links_the_plots_artifact_it_uploaded_first():
    steps = load("train")["jobs"]["train"]["steps"]
    names = [s.get("name", "") for s in steps]
    upload = steps[names.index("Upload the plots")]
    report = steps[names.index("Model report")]
    assert names.index("Upload the plots") < names.index("Model report")
    assert upload["id"] == "plots" and "evaluation/" in upload["with"]["path"]
    assert report["env"]["ARTIFACT_URL"] == "${{ steps.plots.outputs.artifact-url }}"
    assert '--artifact-url "$ARTIFACT_URL"' in report["run"]
    assert "--predictions evaluation/predictions.csv" in report["run"]


def test_the_release_smoke_test_is_scored_against_labelled_images():
    release = load("deploy")["jobs"]["release"]
    smoke = [w for s in release["steps"] for w in commands(s.get("run", "")) if w[1:3] == ["-m", "ci.smoke"]]
    assert len(smoke) == 2  # the release and the rollback
    for words in smoke:
        assert words[words.index("--images") + 1] == "data/raw"
        assert int(words[words.index("--per-class") + 1]) >= 3
        assert "--min-accuracy" not in words  # the threshold is gate.min_value of params.yaml


def test_deploy_and_infra_up_wait_for_the_tests_of_their_commit():
    """GitHub has no `needs:` across workflows: the first job polls the test workflow's runs on this SHA."""
    for workflow, job in (("deploy", "build"), ("infra", "up")):
        jobs = load(workflow)["jobs"]
        assert jobs[job]["needs"] == "tested", workflow
        tested = jobs["tested"]
        assert tested["permissions"] == {"actions": "read"}
        assert any('ci.await_tests --workflow test.yml --sha "$GITHUB_SHA"' in s.get("run", "")
                   for s in tested["steps"])
    assert (ROOT / ".github" / "workflows" / "test.yml").is_file()
    assert "push" in load("test")["on"]  # the runs await_tests looks for (event=push)


def test_the_build_refuses_a_dvc_lock_older_than_its_pipeline():
    steps = {s.get("name"): s for s in load("deploy")["jobs"]["build"]["steps"]}
    names = list(steps)
    stale = names.index("dvc.lock is up to date with params.yaml and ml/")
    assert names.index("Fetch the model that dvc.lock names") < stale < names.index("Build the bento")
    run = steps[names[stale]]["run"].splitlines()
    assert run == [".venv/bin/dvc pull", ".venv/bin/python -m ci.lock_fresh"]


def test_no_step_hides_a_failing_command_inside_echo():
    """`echo "x=$(cmd)"` succeeds whatever cmd did; run the command on its own line first."""
    for path in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                assert not re.search(r'echo "[^"\n]*\$\(', step.get("run", "")), (path.name, step.get("name"))


def test_uploads_of_hidden_paths_include_hidden_files_and_run_on_node24():
    """upload-artifact leaves out dot-folders by default, silently; v5 and older run on node20."""
    uploads = [step for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
               for job in yaml.safe_load(path.read_text())["jobs"].values()
               for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads
    for step in uploads:
        paths = step["with"]["path"].split()
        if any(part.startswith(".") for p in paths for part in p.split("/")):
            assert step["with"].get("include-hidden-files") is True, step["name"]
        # v6.0.0, `runs.using: node24` in its action.yml
        assert step["uses"] == "actions/upload-artifact@b7c566a772e6b6bfb58ed0dc250532a479d7789f"
