"""ci.check_workflows: every make target and ci/ script a workflow calls exists, and orbit's own rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ci import check_workflows
from ci.check_workflows import INFRA_RUNS_ON, check, commands, make_targets

SHA = "1af3b93b6815bc44a9784bd300feb67ff0d1eeb3"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "Makefile").write_text(
        textwrap.dedent("""\
        .PHONY: setup test
        PY := .venv/bin/python
        setup: $(STAMP) ## create .venv
        \t@echo ok
        test repro: setup
        \t$(PY) -m pytest
        %.o: %.c
        \tcc $<
    """)
    )
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "__init__.py").write_text("")
    (tmp_path / "ci" / "gate.py").write_text("")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    return tmp_path


def workflow(
    repo: Path,
    run: str,
    uses: str = f"actions/checkout@{SHA} # v6.0.0",
    top: str = "permissions: {}",
    job_permissions: str = "    permissions:\n      contents: read\n",
) -> None:
    body = textwrap.indent(run, " " * 10)
    (repo / ".github" / "workflows" / "w.yml").write_text(
        f"name: w\non: push\n{top}\njobs:\n  j:\n    runs-on: ubuntu-latest\n{job_permissions}"
        f"    steps:\n      - uses: {uses}\n      - name: step\n        run: |\n{body}\n"
    )


def test_makefile_targets_are_read_without_variables_or_patterns(repo: Path):
    assert make_targets(repo / "Makefile") == {"setup", "test", "repro"}


def test_shell_is_split_into_commands_including_substitutions_and_assignments():
    script = (
        'A=1 make test && .venv/bin/python -m ci.gate --x "a b"\necho "t=$(python -m ci.rollback current)"'
    )
    assert commands(script) == [
        ["make", "test"],
        [".venv/bin/python", "-m", "ci.gate", "--x", "a b"],
        ["echo", "t=$(python -m ci.rollback current)"],
        ["python", "-m", "ci.rollback", "current"],
    ]


def test_existing_targets_and_modules_pass(repo: Path):
    workflow(repo, "make setup test\nmake -C . repro V=1\n.venv/bin/python -m ci.gate --base-rev x\n")
    report = check(repo)
    assert report.problems == []
    assert report.make_targets == {"setup", "test", "repro"}
    assert report.modules == {"ci.gate"}


def test_missing_target_module_and_script_are_each_reported(repo: Path):
    workflow(
        repo, "make deploy-image\npython3 -m ci.smok --url x\nbash ci/release.sh\npython -m json.tool f\n"
    )
    problems = check(repo).problems
    assert len(problems) == 3, problems
    assert "`make deploy-image`: no such target" in problems[0]
    assert "`python -m ci.smok`: no module file ci/smok.py" in problems[1]
    assert "`ci/release.sh`: no such file" in problems[2]
    assert all(p.startswith("w.yml:j:step:") for p in problems)


def test_a_sha_pin_names_its_release(repo: Path):
    workflow(repo, "make test", uses=f"actions/checkout@{SHA}")
    problems = check(repo).problems
    assert len(problems) == 1 and "needs a `# vX.Y.Z` comment" in problems[0]
    workflow(repo, "make test", uses="actions/checkout@v6")  # unpinned: zizmor's unpinned-uses reports it
    assert check(repo).problems == []


def test_permissions_are_required_at_both_levels(repo: Path):
    workflow(repo, "make test", top="permissions: read-all", job_permissions="")
    problems = check(repo).problems
    assert any("top-level `permissions: {}`" in p for p in problems)
    assert any("w.yml:j: job has no `permissions:`" in p for p in problems)


def test_cli_exit_code(repo: Path, capsys):
    workflow(repo, "make nope")
    assert check_workflows.main(["--root", str(repo)]) == 1
    assert "1 problem(s)" in capsys.readouterr().out
    workflow(repo, "make test")
    assert check_workflows.main(["--root", str(repo)]) == 0


AUTH = "google-github-actions/auth@7c6bc770dae815cd3e89ee6cdf493a5fab2cc093 # v3.0.0"
PULUMI_ACTION = "pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0"


def auth_step(account: str) -> str:
    return (
        f"      - uses: {AUTH}\n        with:\n"
        "          workload_identity_provider: ${{ vars.WIF_PROVIDER }}\n"
        f"          service_account: ${{{{ vars.{account} }}}}\n"
    )


def google_job(
    repo: Path,
    account: str | None,
    run: str,
    environment: str | None = None,
    extra_step: str = "",
    runs_on: str = INFRA_RUNS_ON,
    on: str = "push",
    condition: str | None = None,
) -> None:
    """One job that authenticates as `account` (a repository variable, or None for no auth) and runs `run`."""
    auth = auth_step(account) if account else ""
    env = f"    environment: {environment}\n" if environment else ""
    job_if = f"    if: {condition}\n" if condition else ""
    (repo / ".github" / "workflows" / "w.yml").write_text(
        f'name: w\non: {on}\npermissions: {{}}\njobs:\n  j:\n    runs-on: "{runs_on}"\n{env}{job_if}'
        f"    permissions:\n      id-token: write\n    steps:\n{auth}{extra_step}"
        f"      - name: step\n        run: |\n{textwrap.indent(run, ' ' * 10)}\n"
    )


@pytest.mark.parametrize(
    "run",
    [
        'pulumi up --stack "$PULUMI_STACK" --yes',
        'args=(--diff)\npulumi preview "${args[@]}"',
        'echo "url=$(pulumi stack output service_url)"',  # inside a command substitution
        "pulumi --non-interactive destroy --yes",  # a global option before the subcommand
    ],
)
def test_pulumi_as_the_ci_account_is_reported(repo: Path, run: str):
    google_job(repo, "CI_SERVICE_ACCOUNT", run)
    report = check(repo)
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith("w.yml:j: runs `pulumi ")
    assert "as CI_SERVICE_ACCOUNT" in report.problems[0]
    assert "vars.DEPLOYER_SERVICE_ACCOUNT" in report.problems[0]
    assert report.identities == {"w.yml:j": "CI_SERVICE_ACCOUNT"}


def test_pulumi_action_running_up_itself_counts(repo: Path):
    step = f"      - uses: {PULUMI_ACTION}\n        with:\n          command: up\n          stack-name: dev\n"
    google_job(repo, "CI_SERVICE_ACCOUNT", "echo done", extra_step=step)
    assert ["`pulumi up`" in p for p in check(repo).problems] == [True]


def test_pulumi_without_google_credentials_is_reported(repo: Path):
    google_job(repo, None, "pulumi preview --stack dev")
    [problem] = check(repo).problems
    assert "without Google credentials" in problem and "DEPLOYER_SERVICE_ACCOUNT" in problem


def test_deployer_needs_the_environment_its_binding_admits(repo: Path):
    google_job(repo, "DEPLOYER_SERVICE_ACCOUNT", "pulumi up --yes")
    [problem] = check(repo).problems
    assert problem.startswith("w.yml:j: uses DEPLOYER_SERVICE_ACCOUNT without an `environment:`")
    google_job(repo, "DEPLOYER_SERVICE_ACCOUNT", "pulumi up --yes", environment="production")
    report = check(repo)
    assert report.problems == []
    assert report.identities == {"w.yml:j": "DEPLOYER_SERVICE_ACCOUNT"}


def test_ci_account_without_pulumi_and_offline_pulumi_commands_pass(repo: Path):
    google_job(repo, "CI_SERVICE_ACCOUNT", "pulumi version\nmake test\n", runs_on="ubuntu-latest")
    assert check(repo).problems == []


def test_unknown_identity_and_two_identities_in_one_job_are_reported(repo: Path):
    google_job(repo, "INFRA_SERVICE_ACCOUNT", "make test", runs_on="ubuntu-latest")
    [problem] = check(repo).problems
    assert "`INFRA_SERVICE_ACCOUNT`, not a known identity" in problem
    second = auth_step("DEPLOYER_SERVICE_ACCOUNT")
    google_job(
        repo,
        "CI_SERVICE_ACCOUNT",
        "make test",
        environment="production",
        extra_step=second,
        runs_on="ubuntu-latest",
    )
    [problem] = check(repo).problems
    assert "CI_SERVICE_ACCOUNT and DEPLOYER_SERVICE_ACCOUNT: one identity per job" in problem


PREVIEW_RUN = (
    'pulumi login "$PULUMI_BACKEND_URL"\n'
    "pulumi stack history --stack dev --json > h.json\n"
    "pulumi preview --stack dev --diff\n"
    'echo "$(pulumi stack output service_url --stack dev)"\n'
)


def test_the_preview_account_may_read_and_preview_the_stack(repo: Path):
    google_job(repo, "PREVIEW_SERVICE_ACCOUNT", PREVIEW_RUN, environment="preview", on="pull_request")
    report = check(repo)
    assert report.problems == []
    assert report.identities == {"w.yml:j": "PREVIEW_SERVICE_ACCOUNT"}


@pytest.mark.parametrize(
    "run",
    [
        "pulumi up --yes",
        "pulumi refresh --yes",
        "pulumi destroy --yes",
        "pulumi stack rm dev --yes",
        "pulumi state delete urn",
    ],
)
def test_the_preview_account_may_not_change_the_stack(repo: Path, run: str):
    google_job(repo, "PREVIEW_SERVICE_ACCOUNT", f"pulumi preview\n{run}", environment="preview")
    [problem] = check(repo).problems
    assert "as PREVIEW_SERVICE_ACCOUNT, which is read-only" in problem
    assert (
        f"`{' '.join(run.split()[: 3 if run.split()[1] in ('stack', 'state') else 2])}` change the stack"
        in problem
    )
    assert "vars.DEPLOYER_SERVICE_ACCOUNT" in problem


def test_the_deployer_is_never_used_on_a_pull_request(repo: Path):
    google_job(repo, "DEPLOYER_SERVICE_ACCOUNT", "pulumi preview", environment="preview", on="pull_request")
    [problem] = check(repo).problems
    assert "uses DEPLOYER_SERVICE_ACCOUNT in a job that can run on a pull request" in problem
    assert "use PREVIEW_SERVICE_ACCOUNT" in problem
    # A workflow on both events whose job runs only on push (the infra workflow's `up`) is fine ...
    push_only = "github.event_name == 'push'"
    google_job(
        repo,
        "DEPLOYER_SERVICE_ACCOUNT",
        "pulumi up --yes",
        environment="production",
        on="[push, pull_request]",
        condition=f'"{push_only}"',
    )
    assert check(repo).problems == []
    # ... but a condition that still lets pull requests through is not.
    google_job(
        repo,
        "DEPLOYER_SERVICE_ACCOUNT",
        "pulumi up --yes",
        environment="production",
        on="[push, pull_request_target]",
        condition=f"\"{push_only} || github.actor == 'x'\"",
    )
    assert ["can run on a pull request" in p for p in check(repo).problems] == [True]


def test_the_preview_account_needs_its_environment(repo: Path):
    google_job(repo, "PREVIEW_SERVICE_ACCOUNT", "pulumi preview")
    [problem] = check(repo).problems
    assert problem.startswith("w.yml:j: uses PREVIEW_SERVICE_ACCOUNT without an `environment:`")


def test_pulumi_runs_only_on_the_infra_runner(repo: Path):
    google_job(
        repo, "DEPLOYER_SERVICE_ACCOUNT", "pulumi up --yes", environment="production", runs_on="ubuntu-latest"
    )
    [problem] = check(repo).problems
    assert "runs `pulumi up` on `ubuntu-latest`" in problem and INFRA_RUNS_ON in problem


def runner_job(repo: Path, runs_on: str, run: str, setup_python: bool = False) -> None:
    setup = (
        "      - uses: actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c # v6.0.0\n"
        if setup_python
        else ""
    )
    (repo / ".github" / "workflows" / "w.yml").write_text(
        f"name: w\non: push\npermissions: {{}}\njobs:\n  j:\n    runs-on: {runs_on}\n"
        f"    permissions: {{}}\n    steps:\n{setup}"
        f"      - name: step\n        run: |\n{textwrap.indent(run, ' ' * 10)}\n"
    )


@pytest.mark.parametrize(
    "runs_on", ["\"${{ vars.TRAIN_RUNNER || 'orbit-cpu' }}\"", "orbit-cpu", "[self-hosted, linux]"]
)
def test_a_self_hosted_runner_gets_no_make_and_python_only_from_setup_python(repo: Path, runs_on: str):
    runner_job(repo, runs_on, "python -m ci.gate\nmake setup\n")
    problems = check(repo).problems
    assert len(problems) == 2, problems
    assert "runs `python` on `runs-on:" in problems[0] and "before actions/setup-python" in problems[0]
    assert "`make setup` on `runs-on:" in problems[1] and "self-hosted runner without make" in problems[1]
    runner_job(repo, runs_on, "python -m venv .venv\n.venv/bin/python -m ci.gate\n", setup_python=True)
    assert check(repo).problems == []


def test_github_hosted_runners_may_use_make_and_their_python(repo: Path):
    runner_job(repo, "ubuntu-24.04", "python -m ci.gate\nmake setup\n")
    assert check(repo).problems == []
