"""Identity: keyless CI through WIF pinned to the repository, least-privilege grants, KSA <-> GSA bindings."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.components.identity import GITHUB_ISSUER, attribute_condition
from infra.mocks import FAKE_PROJECT_NUMBER, reveal
from tests.infra.support import (
    ACCOUNT,
    BUCKET_IAM,
    CLUSTER,
    PROJECT_IAM,
    REPOSITORY_IAM,
    SA_IAM,
    WIF_POOL,
    WIF_PROVIDER,
    props,
)


def email(cfg, name: str) -> str:
    return f"orbit-{name}@{cfg.project}.iam.gserviceaccount.com"


def test_github_provider_only_admits_the_configured_repository(dev_run, prod_run):
    dev = props(dev_run, WIF_PROVIDER)
    assert dev["oidc"]["issuerUri"] == GITHUB_ISSUER
    assert dev["attributeCondition"] == "assertion.repository == 'my-github-org/orbit'"
    assert dev["attributeMapping"]["attribute.repository"] == "assertion.repository"
    assert dev["attributeMapping"]["google.subject"] == "assertion.sub"
    # prod also pins the numeric ID: a deleted and re-created repository of the same name is refused.
    assert props(prod_run, WIF_PROVIDER)["attributeCondition"] == (
        "assertion.repository == 'my-github-org/orbit' && assertion.repository_id == '123456789'")


def test_pool_id_is_valid_and_survives_destroy_up_cycles(stack_run):
    pool_id = props(stack_run, WIF_POOL)["workloadIdentityPoolId"]
    assert pool_id == "orbit-gh-a1b2c3"  # prefix + random suffix (the mocks' RandomId hex)
    assert 4 <= len(pool_id) <= 32 and not pool_id.startswith("gcp-")
    assert props(stack_run, WIF_PROVIDER)["workloadIdentityPoolId"] == pool_id


def test_only_repository_workflows_may_impersonate_the_ci_account(stack_run):
    cfg = stack_run.config
    federation = props(stack_run, SA_IAM, "ci-federation")
    assert federation["role"] == "roles/iam.workloadIdentityUser"
    assert federation["serviceAccountId"] == f"projects/{cfg.project}/serviceAccounts/{email(cfg, 'ci')}"
    assert federation["member"] == (
        f"principalSet://iam.googleapis.com/projects/{FAKE_PROJECT_NUMBER}/locations/global/"
        f"workloadIdentityPools/orbit-gh-a1b2c3/attribute.repository/{cfg.github.slug}")


def test_ci_roles_are_bound_on_the_bucket_and_the_repository(stack_run):
    cfg = stack_run.config
    member = f"serviceAccount:{email(cfg, 'ci')}"
    bucket = props(stack_run, BUCKET_IAM, "ci-bucket")
    assert bucket == {"bucket": f"{cfg.project}-orbit-data", "role": "roles/storage.objectAdmin",
                      "member": member}
    registry = props(stack_run, REPOSITORY_IAM, "ci-registry")
    assert registry["role"] == "roles/artifactregistry.writer" and registry["member"] == member
    assert registry["repository"] == "orbit-images" and registry["location"] == cfg.region


def test_the_only_project_wide_grant_is_the_node_role(stack_run):
    """Node logging is project-scoped; nothing else, CI least of all, gets a role on the whole project."""
    grants = {(r["role"], r["member"]) for r in (reveal(x.inputs) for x in stack_run.of_type(PROJECT_IAM))}
    assert grants == {
        ("roles/container.defaultNodeServiceAccount", f"serviceAccount:{email(stack_run.config, 'nodes')}"),
    }


def test_ci_account_appears_only_in_its_federation_bucket_and_registry_grants(stack_run):
    """CI builds images and moves DVC data; `pulumi up` runs as the bootstrap deployer account.

    Any resource naming the CI account (a project or cluster role, a Kubernetes RoleBinding, an IAM binding
    or policy) other than these three would let a CI token reach the cluster, so it fails here.
    """
    ci = email(stack_run.config, "ci")
    naming_ci = {(r.type, r.name) for r in stack_run.registrations if ci in json.dumps(reveal(r.inputs))}
    assert naming_ci == {
        (SA_IAM, "ci-federation"), (BUCKET_IAM, "ci-bucket"), (REPOSITORY_IAM, "ci-registry")}
    assert "ci-cluster-viewer" not in {r.name for r in stack_run.registrations}


def test_no_service_account_key_anywhere(stack_run):
    assert not [r for r in stack_run.registrations if r.type.endswith(("/key:Key", "/hmacKey:HmacKey"))]


@pytest.mark.parametrize(("binding", "account", "ksa"), [
    ("runner-workload-identity", "runner", "arc-runners/arc-runner"),
    ("serving-workload-identity", "serving", "serving/planet-classifier"),
])
def test_kubernetes_service_accounts_are_bound_to_google_ones(stack_run, binding, account, ksa):
    cfg = stack_run.config
    grant = props(stack_run, SA_IAM, binding)
    assert grant["role"] == "roles/iam.workloadIdentityUser"
    assert grant["member"] == f"serviceAccount:{cfg.project}.svc.id.goog[{ksa}]"
    assert grant["serviceAccountId"].endswith(email(cfg, account))
    # The identity namespace exists only once the cluster does.
    assert stack_run.one(CLUSTER).urn in stack_run.one(SA_IAM, binding).dependencies


def test_runners_read_and_write_the_bucket_and_the_service_gets_nothing(stack_run):
    cfg = stack_run.config
    runner = props(stack_run, BUCKET_IAM, "runner-bucket")
    assert runner["role"] == "roles/storage.objectAdmin"
    assert runner["member"] == f"serviceAccount:{email(cfg, 'runner')}"
    members = [reveal(r.inputs).get("member") for r in stack_run.registrations if "IAMMember" in r.type
               or "IamMember" in r.type]
    assert f"serviceAccount:{email(cfg, 'serving')}" not in members
    assert {props(stack_run, ACCOUNT, n)["accountId"] for n in ("ci", "runner", "serving", "nodes")} == {
        "orbit-ci", "orbit-runner", "orbit-serving", "orbit-nodes"}


@pulumi.runtime.test
def test_ci_outputs_are_what_google_github_actions_auth_needs(stack_run):
    identity = stack_run.platform.identity
    cfg = stack_run.config

    def check(args):
        provider, account = args
        assert provider == (f"projects/{FAKE_PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                            "orbit-gh-a1b2c3/providers/github")
        assert account == email(cfg, "ci")
        assert stack_run.outputs["workload_identity_provider"] == provider
        assert stack_run.outputs["ci_service_account"] == account

    return pulumi.Output.all(identity.workload_identity_provider, identity.ci_email).apply(check)


def test_attribute_condition_cannot_be_widened_by_the_repository_name(dev_run):
    """The repository name is validated to [A-Za-z0-9._-], so it cannot close the CEL string literal."""
    condition = attribute_condition(dev_run.config)
    assert condition.count("'") == 2 and "||" not in condition
