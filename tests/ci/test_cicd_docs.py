"""docs/cicd.md and docs/deploy.md agree with the workflows, and with each other, on variables and identities.

A renamed variable or a job moved to another identity must show up in both guides, or a fork is wired wrong
and fails only on GitHub.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ci.check_workflows import DEPLOYER_IDENTITY, IDENTITIES, PREVIEW_IDENTITY, check, commands
from tests.markdown import section

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
CICD = (ROOT / "docs" / "cicd.md").read_text()
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def table_rows(text: str) -> dict[str, str]:
    """First cell (without backticks) -> the whole row, for every row of the markdown tables in `text`."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            first = line.split("|")[1].strip()
            rows[re.sub(r"^`([A-Z_]+)`.*$", r"\1", first)] = line
    return rows


def workflow_variables() -> set[str]:
    return {m for p in WORKFLOWS.glob("*.yml") for m in re.findall(r"\bvars\.([A-Z0-9_]+)", p.read_text())}


def preflight_names() -> set[str]:
    """Every variable a workflow checks with `python -m ci.preflight`: the ones a fork must set."""
    names = set()
    for path in WORKFLOWS.glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                for words in commands(step.get("run", "")):
                    if Path(words[0]).name == "python" and words[1:3] == ["-m", "ci.preflight"]:
                        names.update(w for w in words[3:] if not w.startswith(("-", "$")))
    return names


def gh_variables(text: str) -> set[str]:
    return set(re.findall(r"gh variable set \"?([A-Z_]+)", text))


VARIABLES = table_rows(section(CICD, "### 2. Repository variables"))


def test_the_variables_table_lists_exactly_what_the_workflows_read():
    assert set(VARIABLES) - {"variable"} == workflow_variables()


@pytest.mark.parametrize(("name", "text"), [("cicd.md", CICD), ("deploy.md", DEPLOY)])
def test_each_guide_sets_every_required_variable_and_no_unknown_one(name: str, text: str):
    required = preflight_names()
    assert {"WIF_PROVIDER", "CI_SERVICE_ACCOUNT", DEPLOYER_IDENTITY, "PULUMI_BACKEND_URL"} <= required
    assert gh_variables(text) <= set(VARIABLES), f"{name} sets variables no workflow reads"
    # a loop over stack outputs may set some through "${pair%%=*}"
    pairs = re.search(r"for pair in (.*?); do", text, re.S)
    loop = set(re.findall(r"\b([A-Z_]+)=[a-z_]+\b", pairs.group(1))) if pairs else set()
    assert required <= gh_variables(text) | loop, f"{name} never sets {required - gh_variables(text) - loop}"


def test_no_other_service_account_variable_is_named_anywhere():
    texts = [CICD, DEPLOY, *(p.read_text() for p in WORKFLOWS.glob("*.yml"))]
    named = {m for t in texts for m in re.findall(r"\b([A-Z]+_SERVICE_ACCOUNT)\b", t)}
    assert named == set(IDENTITIES)


def test_identity_table_names_exactly_the_jobs_of_each_identity():
    rows = table_rows(section(CICD, "## Identities"))
    by_identity: dict[str, set[str]] = {}
    for where, identity in check(ROOT).identities.items():
        workflow, job = where.split(":")
        by_identity.setdefault(identity or "none", set()).add(f"{Path(workflow).stem}/{job}")
    assert set(by_identity) == {*IDENTITIES, "none"}
    for identity, jobs in by_identity.items():
        cell = rows[identity].split("|")[2]
        assert set(re.findall(r"`([a-z]+/[a-z-]+)`", cell)) == jobs, identity


def test_cicd_lists_the_roles_the_bootstrap_grants_the_deployer():
    granted = bootstrap_roles("### Who may run `pulumi up`")
    granted.discard("roles/iam.serviceAccountTokenCreator")  # for people, on the deployer itself
    row = table_rows(section(CICD, "## Identities"))[DEPLOYER_IDENTITY]
    documented = set(re.findall(r"`(roles/[A-Za-z.]+)`", row))
    assert granted == documented


def bootstrap_roles(heading: str) -> set[str]:
    """The roles a bootstrap section of deploy.md grants: its `for role in` loop and each `--role`."""
    code = "\n".join(re.findall(r"```bash\n(.*?)```", section(DEPLOY, heading), re.S))
    # Grants on the account itself (who may act as it: the environment's jobs) are not roles it holds.
    code = re.sub(r"gcloud iam service-accounts add-iam-policy-binding .*?(?:\\\n.*?)*\n", "\n", code)
    loop = re.search(r"for role in (.*?); do", code, re.S).group(1).replace("\\\n", " ").split()
    return {f"roles/{r}" for r in loop} | set(re.findall(r"--role (roles/[A-Za-z.]+)", code))


def test_cicd_lists_the_roles_the_bootstrap_grants_the_previewer():
    row = table_rows(section(CICD, "## Identities"))[PREVIEW_IDENTITY]
    assert set(re.findall(r"`(roles/[A-Za-z.]+)`", row)) == bootstrap_roles(
        "### Who may run `pulumi preview`"
    )
    assert not any(
        re.search(r"admin|writer|developer|editor|Encrypter", r) for r in re.findall(r"roles/\S+", row)
    )


def test_each_environment_bound_identity_is_bound_to_its_own_environment_only():
    """The deployer to DEPLOY_ENVIRONMENT, the previewer to PREVIEW_ENVIRONMENT (docs/deploy.md, step 6)."""
    workflows = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    for name in ("DEPLOY_ENVIRONMENT", "PREVIEW_ENVIRONMENT"):
        defaults = set(re.findall(rf"vars\.{name} \|\| '([a-z-]+)'", workflows))
        assert len(defaults) == 1, f"{name}: one default in every workflow, not {defaults}"
        assert re.search(rf"\b{name}={defaults.pop()}\b", DEPLOY), f"docs/deploy.md binds another {name}"
    bindings = re.findall(
        r'add-iam-policy-binding "\$([A-Z]+)" --role roles/iam\.workloadIdentityUser'
        r' \\\n\s+--member "([^"]+)"',
        DEPLOY,
    )
    subject = "principalSet://iam.googleapis.com/$POOL/attribute.environment/"
    assert sorted(bindings) == [
        ("DEPLOYER", f"{subject}$DEPLOY_ENVIRONMENT"),
        ("PREVIEWER", f"{subject}$PREVIEW_ENVIRONMENT"),
    ]
    # and the workflows use each identity in that environment
    infra = yaml.safe_load((WORKFLOWS / "infra.yml").read_text())["jobs"]
    assert "PREVIEW_ENVIRONMENT" in infra["preview"]["environment"]
    assert "DEPLOY_ENVIRONMENT" in infra["up"]["environment"]


def test_the_attribute_the_bindings_match_is_mapped_by_the_bootstraps_provider():
    """The bindings rely on attribute.environment, which the bootstrap's provider maps from the token."""
    create = re.search(r"providers create-oidc github.*?```", DEPLOY, re.S).group(0)
    assert "attribute.environment=assertion.environment" in create
    assert "assertion.repository_id == '$REPO_ID'" in create
