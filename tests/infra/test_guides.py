"""docs/deploy.md and docs/infra.md say what the program and its config really do.

A guide that binds the deployer to pull-request previews, miscounts the stack's project-wide grants or shows
a default the code does not have sends a real project down the wrong path, so each claim is checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.config import KEYS
from infra.mocks import reveal
from tests.infra.support import PROJECT_IAM
from tests.markdown import section

REPO = Path(__file__).resolve().parents[2]
DEPLOY = (REPO / "docs" / "deploy.md").read_text()
INFRA = (REPO / "docs" / "infra.md").read_text()


def commands(text: str) -> str:
    """The bash blocks of `text`, continuation lines joined."""
    return "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)).replace("\\\n", " ")


def wif_bindings(account: str) -> list[str]:
    """The members `account` ("$DEPLOYER", "$PREVIEWER") is bound to as workloadIdentityUser."""
    pattern = (rf'add-iam-policy-binding "\{account}" --role roles/iam\.workloadIdentityUser\s+'
               r'--member "([^"]+)"')
    return re.findall(pattern, commands(DEPLOY))


def test_the_deployer_is_bound_only_to_the_production_environment():
    # On the mapped `environment` claim, not `sub` (GitHub's immutable sub appends owner and repository IDs).
    assert wif_bindings("$DEPLOYER") == [
        "principalSet://iam.googleapis.com/$POOL/attribute.environment/$DEPLOY_ENVIRONMENT"]


def test_previews_run_as_a_read_only_identity_bound_to_the_preview_environment():
    assert wif_bindings("$PREVIEWER") == [
        "principalSet://iam.googleapis.com/$POOL/attribute.environment/$PREVIEW_ENVIRONMENT"]
    assert 'gh variable set PREVIEW_SERVICE_ACCOUNT  --body "$PREVIEWER"' in DEPLOY
    code = commands(section(DEPLOY, "### Who may run `pulumi preview`"))
    assert "PREVIEWER=orbit-previewer@$PROJECT.iam.gserviceaccount.com" in code
    loop = re.search(r"for role in (.*?); do", code, re.S).group(1).split()
    granted = re.sub(r"gcloud iam service-accounts add-iam-policy-binding [^\n]*\n", "", code)
    roles = {f"roles/{r}" for r in loop} | set(re.findall(r"--role (roles/[A-Za-z.]+)", granted))
    needed = {"roles/storage.objectViewer", "roles/cloudkms.cryptoKeyDecrypter", "roles/iam.securityReviewer"}
    assert needed <= roles
    # Read-only: no basic role, nothing that creates, writes, administers or encrypts.
    writes = re.compile(r"owner|editor|admin|writer|developer|encrypter|user|creator", re.I)
    assert [r for r in roles if writes.search(r)] == []
    assert "roles/viewer" not in roles
    # The state bucket and the key are the previewer's only grants outside the project loop.
    assert 'buckets add-iam-policy-binding "gs://$PROJECT-pulumi-state"' in code


def test_the_guide_counts_the_project_wide_grants_the_stack_makes(dev_run):
    stack_grants = {reveal(r.inputs)["role"] for r in dev_run.of_type(PROJECT_IAM)}
    assert stack_grants == {"roles/container.defaultNodeServiceAccount"}
    block = section(DEPLOY, "### Who may run `pulumi up`")
    assert "grants one narrow role project-wide, `roles/container.defaultNodeServiceAccount`" in block
    assert "the one project-level grant" in block
    assert not re.search(r"\btwo (narrow roles|project-level grants)\b", DEPLOY)


def test_the_guide_says_to_commit_the_stack_file_and_why_that_is_safe():
    block = " ".join(section(DEPLOY, "## 4. Stack and configuration").split())
    assert "**commit `Pulumi.dev.yaml`**" in block
    assert "no plaintext secret" in block and "secrets provider" in block


def test_the_first_up_runs_without_the_service_and_ci_enables_it():
    block = section(DEPLOY, "## 4. Stack and configuration")
    assert "pulumi config set orbit:serviceEnabled" not in block  # unset: keep what is live
    up = section(DEPLOY, "## 5. `pulumi up`")
    assert "creates everything but the model service" in up
    flat = " ".join(up.split())
    assert ("--config orbit:serviceEnabled=true --config orbit:serviceImageTag=<commit SHA> "
            "--config orbit:serviceImageDigest=<digest>") in flat
    assert "`--config orbit:serviceEnabled=false` removes the service" in flat


def test_infra_guide_explains_control_plane_access_and_the_gpu_caveat():
    access = section(INFRA, "## Who can reach the control plane")
    for claim in ("`orbit:controlPlaneDnsAccess true`", "`container.clusters.connect`", "The trade-off",
                  "`gke-control-plane-restricted`", "--dns-endpoint"):
        assert claim in access, claim
    gpu = section(INFRA, "## GPU runners: what they do and do not buy you")
    assert "`tensorflow-cpu`" in gpu and "CUDA build of TensorFlow" in gpu


def table_defaults() -> dict[str, str]:
    rows = {}
    for line in INFRA.splitlines():
        match = re.match(r"^\| `([a-z]+:[A-Za-z]+)` \| ([^|]+) \|", line)
        if match:
            rows[match[1]] = match[2].strip()
    return rows


@pytest.mark.parametrize("key", sorted(k for k, spec in KEYS.items() if isinstance(spec.default, bool)))
def test_the_key_table_shows_each_boolean_default(key):
    assert table_defaults()[key] == str(KEYS[key].default).lower()
