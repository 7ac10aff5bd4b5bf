"""The guides' commands, keys, roles and defaults are the ones the program and its config really have.

A guide that binds the deployer to pull-request previews, names a key that does not exist or shows a default
the code does not have sends a real project down the wrong path. Their wording is not tested.
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
    pattern = (
        rf'add-iam-policy-binding "\{account}" --role roles/iam\.workloadIdentityUser\s+'
        r'--member "([^"]+)"'
    )
    return re.findall(pattern, commands(DEPLOY))


def test_the_deployer_is_bound_only_to_the_production_environment():
    # On the mapped `environment` claim, not `sub` (GitHub's immutable sub appends owner and repository IDs).
    assert wif_bindings("$DEPLOYER") == [
        "principalSet://iam.googleapis.com/$POOL/attribute.environment/$DEPLOY_ENVIRONMENT"
    ]


def test_previews_run_as_a_read_only_identity_bound_to_the_preview_environment():
    assert wif_bindings("$PREVIEWER") == [
        "principalSet://iam.googleapis.com/$POOL/attribute.environment/$PREVIEW_ENVIRONMENT"
    ]
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


def test_the_guide_names_each_project_wide_role_the_stack_grants(dev_run):
    stack_grants = {reveal(r.inputs)["role"] for r in dev_run.of_type(PROJECT_IAM)}
    block = section(DEPLOY, "### Who may run `pulumi up`")
    assert stack_grants and [role for role in stack_grants if f"`{role}`" not in block] == []


def test_the_first_up_leaves_the_service_to_ci_which_sets_its_keys():
    setup = commands(section(DEPLOY, "## 4. Stack and configuration"))
    assert "config set orbit:serviceEnabled" not in setup  # unset: the first up creates no service
    up = " ".join(section(DEPLOY, "## 5. `pulumi up`").split())
    set_by_up = set(re.findall(r"--config (orbit:[A-Za-z]+)=", up))
    assert {"orbit:serviceEnabled", "orbit:serviceImageTag", "orbit:serviceImageDigest"} <= set_by_up


#: A key in a code span, or one a bash block sets, gets or removes (an error message may show a wrong one).
_SPAN_KEY = re.compile(r"`(orbit:[A-Za-z]+)[ `=]")
_COMMAND_KEY = re.compile(r"(?:config (?:set|get|rm)(?: --secret)?|--config) (orbit:[A-Za-z]+)\b")


@pytest.mark.parametrize("doc", sorted(p.name for p in (REPO / "docs").glob("*.md")))
def test_every_config_key_a_doc_names_exists(doc):
    text = (REPO / "docs" / doc).read_text()
    named = set(_SPAN_KEY.findall(text)) | set(_COMMAND_KEY.findall(commands(text)))
    assert sorted(named - set(KEYS)) == [], f"docs/{doc} names keys infra/config.py does not read"
