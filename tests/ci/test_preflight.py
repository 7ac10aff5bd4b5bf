"""ci.preflight: a missing or malformed repository variable fails in the first step, naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ci import preflight

GOOD = {
    "WIF_PROVIDER": "projects/123456789/locations/global/workloadIdentityPools/orbit-gh-1a2b3c"
    "/providers/github",
    "CI_SERVICE_ACCOUNT": "orbit-ci@my-gcp-project.iam.gserviceaccount.com",
    "DEPLOYER_SERVICE_ACCOUNT": "orbit-deployer@my-gcp-project.iam.gserviceaccount.com",
    "BUCKET_URL": "gs://orbit-data-1a2b3c",
    "REGISTRY_PATH": "europe-west1-docker.pkg.dev/my-gcp-project/orbit",
    "PULUMI_BACKEND_URL": "gs://my-gcp-project-pulumi-state",
    "PULUMI_STACK": "dev",
}


def test_well_formed_values_pass():
    assert preflight.check(list(GOOD), GOOD) == []


def test_missing_value_names_the_stack_output_to_copy():
    problems = preflight.check(["BUCKET_URL", "WIF_PROVIDER"], {**GOOD, "BUCKET_URL": " "})
    assert len(problems) == 1
    assert problems[0].startswith("BUCKET_URL is not set")
    assert "stack output bucket_url" in problems[0]


def test_malformed_values_are_reported_with_an_example():
    env = {
        **GOOD,
        "WIF_PROVIDER": "github",
        "CI_SERVICE_ACCOUNT": "orbit-ci@gmail.com",
        "BUCKET_URL": "orbit-data",
        "REGISTRY_PATH": "gcr.io/my-gcp-project",
    }
    problems = preflight.check(["WIF_PROVIDER", "CI_SERVICE_ACCOUNT", "BUCKET_URL", "REGISTRY_PATH"], env)
    assert [p.split("=")[0] for p in problems] == [
        "WIF_PROVIDER",
        "CI_SERVICE_ACCOUNT",
        "BUCKET_URL",
        "REGISTRY_PATH",
    ]
    assert all("does not look right" in p and "e.g." in p for p in problems)


def test_unknown_name_is_a_mistake_in_the_workflow():
    assert "not a variable orbit knows" in preflight.check(["BUKET_URL"], GOOD)[0]


def test_cli_prints_github_error_annotations(monkeypatch, capsys):
    monkeypatch.delenv("REGISTRY_PATH", raising=False)
    monkeypatch.setenv("PULUMI_STACK", "dev")
    assert preflight.main(["REGISTRY_PATH", "PULUMI_STACK"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("::error title=orbit configuration::REGISTRY_PATH is not set")
    assert "docs/cicd.md" in out
    assert preflight.main(["PULUMI_STACK"]) == 0
    assert preflight.main([]) == 2


def test_the_deployer_is_named_after_the_bootstrap_and_checked_like_an_account():
    [problem] = preflight.check(["DEPLOYER_SERVICE_ACCOUNT"], {})
    assert problem.startswith("DEPLOYER_SERVICE_ACCOUNT is not set") and "docs/deploy.md" in problem
    [problem] = preflight.check(["DEPLOYER_SERVICE_ACCOUNT"], {"DEPLOYER_SERVICE_ACCOUNT": "orbit-deployer"})
    assert "does not look right" in problem
    assert "INFRA_SERVICE_ACCOUNT" not in preflight.VARIABLES  # one name for the deployer, everywhere


# --- the stack file: placeholders a fork forgets, and the repository the stack names ---

ROOT = Path(__file__).resolve().parents[2]
CONFIGURED = """\
config:
  gcp:project: orbit-dev-4821
  gcp:region: europe-west1
  gcp:zone: europe-west1-b
  orbit:githubOwner: example-org
  orbit:githubRepo: orbit
  orbit:githubRepositoryId: "998877"
  orbit:workloadIdentityProvider: >-
    projects/555666777888/locations/global/workloadIdentityPools/orbit-github/providers/github
  orbit:githubAppId: "982341"
  orbit:githubAppInstallationId: "1122334"
  orbit:labels:
    env: dev
  orbit:masterAuthorizedNetworks:
    - 198.51.100.0/24
  orbit:githubAppPrivateKey:
    secure: v1:abc
"""
ACTIONS = {"GITHUB_REPOSITORY": "example-org/orbit", "GITHUB_REPOSITORY_ID": "998877"}


def stack_file(tmp_path: Path, text: str, stack: str = "dev") -> Path:
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(text)
    return tmp_path


def test_a_configured_stack_file_of_this_repository_passes(tmp_path: Path):
    assert preflight.check_stack_file("dev", stack_file(tmp_path, CONFIGURED), ACTIONS) == []


def test_an_invalid_value_is_reported_at_its_line_as_pulumi_up_would(tmp_path: Path):
    text = CONFIGURED.replace("gcp:zone: europe-west1-b", "gcp:zone: us-east1-b")
    [problem] = preflight.check_stack_file("dev", stack_file(tmp_path, text), ACTIONS)
    assert (problem.file, problem.line) == ("Pulumi.dev.yaml", 4)
    assert problem.message.startswith("gcp:zone: 'us-east1-b' is not a zone of region 'europe-west1'")
    assert "`pulumi config set gcp:zone europe-west1-b --stack dev`" in problem.message


def test_placeholders_are_reported_at_their_line_with_the_command_that_fixes_them(tmp_path: Path):
    text = (
        CONFIGURED.replace("orbit-dev-4821", "my-gcp-project")
        .replace("example-org", "my-github-org")
        .replace("198.51.100.0/24", "203.0.113.0/24")
    )
    problems = preflight.check_stack_file("dev", stack_file(tmp_path, text), ACTIONS)
    by_key = {p.message.split()[0]: p for p in problems}
    assert set(by_key) == {"gcp:project", "orbit:githubOwner", "orbit:masterAuthorizedNetworks"}
    project = by_key["gcp:project"]
    assert (project.file, project.line) == ("Pulumi.dev.yaml", 2)
    assert "placeholder 'my-gcp-project'" in project.message
    assert "`pulumi config set gcp:project <your project ID> --stack dev`" in project.message
    assert "commit Pulumi.dev.yaml" in project.message
    networks = by_key["orbit:masterAuthorizedNetworks"].message
    assert "pulumi config set --path 'orbit:masterAuthorizedNetworks[0]'" in networks
    assert "pulumi config rm orbit:masterAuthorizedNetworks" in networks  # the DNS endpoint may be enough
    assert project.annotation().startswith("::error title=orbit configuration,file=Pulumi.dev.yaml,line=2::")


def test_a_stack_of_another_repository_is_refused(tmp_path: Path):
    problems = preflight.check_stack_file(
        "dev",
        stack_file(tmp_path, CONFIGURED),
        {
            "GITHUB_REPOSITORY": "someone-else/orbit-fork",
            "GITHUB_REPOSITORY_ID": "1234",
        },
    )
    messages = [p.message for p in problems]
    assert len(messages) == 3, messages
    assert messages[0].startswith("orbit:githubOwner is 'example-org', but this workflow runs in someone")
    assert "`pulumi config set orbit:githubRepo orbit-fork --stack dev`" in messages[1]
    assert "orbit:githubRepositoryId is '998877'" in messages[2]
    # The provider compares the `repository` claim exactly: a different case is another repository.
    problems = preflight.check_stack_file(
        "dev", tmp_path, {"GITHUB_REPOSITORY": "Example-Org/orbit", "GITHUB_REPOSITORY_ID": "998877"}
    )
    assert [p.message.split()[0] for p in problems] == ["orbit:githubOwner"]


def test_a_missing_or_broken_stack_file_is_a_clear_error(tmp_path: Path):
    [problem] = preflight.check_stack_file("prod", tmp_path, {})
    assert "Pulumi.prod.yaml not found" in problem.message and "pulumi stack init prod" in problem.message
    [problem] = preflight.check_stack_file("dev", stack_file(tmp_path, "config: [unclosed\n"), {})
    assert "not valid YAML" in problem.message
    [problem] = preflight.check_stack_file("dev", stack_file(tmp_path, "encryptionsalt: x\n"), {})
    assert "no `config:` mapping" in problem.message


def placeholder_lines(path: Path) -> dict[str, str]:
    """key -> value of each line marked `# placeholder` in an example stack file (a list item: its key)."""
    found, parent = {}, None
    for line in path.read_text().splitlines():
        if re.match(r"^  [\w:]+:\s*$", line):
            parent = line.strip().rstrip(":")
        match = re.match(r"^\s+(?:- (?P<item>\S+)|(?P<key>[\w:]+):\s*(?P<value>\S+))\s+#\s*placeholder", line)
        if match:
            key = match.group("key") or parent
            found[key] = (match.group("value") or match.group("item")).strip("'\"")
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_placeholder_of_the_example_stack_files_is_caught(stack: str):
    """ci/preflight.py's table follows the `# placeholder` lines of Pulumi.dev.yaml and Pulumi.prod.yaml."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    marked = placeholder_lines(path)
    if marked.get("gcp:project") not in preflight.STACK_PLACEHOLDERS["gcp:project"][0]:
        pytest.skip(f"{path.name} is configured (a fork): no placeholders left to compare with")
    assert {"gcp:project", "orbit:githubOwner"} <= set(marked)
    flagged = {p.message.split()[0] for p in preflight.check_stack_file(stack, ROOT, {})}
    assert set(marked) - preflight.STACK_KEYS_SET_BY_CI == flagged


def test_cli_checks_the_stack_file_with_the_variables(tmp_path: Path, monkeypatch, capsys):
    stack_file(tmp_path, CONFIGURED.replace("orbit-dev-4821", "my-gcp-project"))
    for name, value in {**GOOD, **ACTIONS}.items():
        monkeypatch.setenv(name, value)
    assert preflight.main(["--stack", "dev", "--root", str(tmp_path), "PULUMI_STACK"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("::error title=orbit configuration,file=Pulumi.dev.yaml,line=2::gcp:project ")
    stack_file(tmp_path, CONFIGURED)
    assert preflight.main(["--stack", "dev", "--root", str(tmp_path), "PULUMI_STACK"]) == 0
    assert "Pulumi.dev.yaml" in capsys.readouterr().out
    assert preflight.main(["--stack", "../etc/passwd", "--root", str(tmp_path)]) == 1
    assert "not a stack name" in capsys.readouterr().out


def test_the_example_values_of_the_docs_are_refused_as_placeholders():
    [problem] = preflight.check(
        ["CI_SERVICE_ACCOUNT"], {"CI_SERVICE_ACCOUNT": preflight.VARIABLES["CI_SERVICE_ACCOUNT"][2]}
    )
    assert "is the example from the docs" in problem
    assert preflight.check(["PULUMI_STACK"], {"PULUMI_STACK": "dev"}) == []


def test_the_preview_account_must_not_be_the_deployer():
    env = {**GOOD, "PREVIEW_SERVICE_ACCOUNT": GOOD["DEPLOYER_SERVICE_ACCOUNT"]}
    [problem] = preflight.check(["PREVIEW_SERVICE_ACCOUNT"], env)
    assert problem.startswith("PREVIEW_SERVICE_ACCOUNT is the deployer")
    env["PREVIEW_SERVICE_ACCOUNT"] = "orbit-previewer@my-gcp-project.iam.gserviceaccount.com"
    assert preflight.check(["PREVIEW_SERVICE_ACCOUNT"], env) == []


def test_checking_variables_needs_nothing_but_the_standard_library():
    """The train job runs it before anything is installed: no PyYAML, no site-packages at all."""
    result = subprocess.run(
        [sys.executable, "-S", "-m", "ci.preflight", "PULUMI_STACK"],
        cwd=ROOT,
        env={"PULUMI_STACK": "dev", "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "preflight: ok: PULUMI_STACK\n"


def test_the_keys_preflight_names_are_keys_infra_reads():
    """A renamed key would otherwise silently stop being checked (the variables check stays stdlib-only)."""
    from infra.config import KEYS

    named = {*preflight.STACK_PLACEHOLDERS, *preflight.STACK_KEYS_SET_BY_CI, *preflight._OPTIONAL_KEYS}
    assert named <= set(KEYS)
