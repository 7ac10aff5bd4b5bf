"""Identity: keyless CI through WIF pinned to the repository, least-privilege grants, KSA <-> GSA bindings."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.mocks import reveal
from tests.infra.support import CLUSTER, PROJECT_IAM, SA_IAM, WIF_POOL, WIF_PROVIDER, on

# The pool of the bootstrap, as the fixture stack files name it (orbit:workloadIdentityProvider).
POOL = "projects/123456789012/locations/global/workloadIdentityPools/orbit-github"


def email(cfg, name: str) -> str:
    return f"orbit-{name}@{cfg.project}.iam.gserviceaccount.com"


def grant(resource) -> pulumi.Output:
    """role and member of an IAM member resource, plus what it is bound on."""
    on_what = {name: getattr(resource, name) for name in ("bucket", "repository", "location",
                                                         "service_account_id", "project")
               if hasattr(resource, name)}
    return pulumi.Output.all(role=resource.role, member=resource.member, **on_what)


def test_the_stack_creates_no_identity_pool_so_destroy_up_cycles_keep_it(stack_run, first_up_run):
    """The pool outlives the stack (bootstrap): a pool made here came back under a new ID after each dev
    re-create, leaving the bootstrap's bindings and WIF_PROVIDER pointing at a dead pool."""
    for run in (stack_run, first_up_run):
        assert not run.of_type(WIF_POOL) and not run.of_type(WIF_PROVIDER)
        assert not run.of_type("random:index/randomId:RandomId")
        assert run.outputs["workload_identity_provider"] == f"{POOL}/providers/github"


@pulumi.runtime.test
def test_only_repository_workflows_may_impersonate_the_ci_account(stack_run):
    cfg = stack_run.config

    def check(federation):
        assert federation["role"] == "roles/iam.workloadIdentityUser"
        account = f"projects/{cfg.project}/serviceAccounts/{email(cfg, 'ci')}"
        assert federation["service_account_id"] == account
        assert federation["member"] == (
            f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/{cfg.github.slug}")

    return on(check, federation=grant(stack_run.platform.identity.ci_federation))


@pulumi.runtime.test
def test_ci_roles_are_bound_on_the_bucket_and_the_repository(stack_run):
    cfg = stack_run.config
    member = f"serviceAccount:{email(cfg, 'ci')}"
    identity = stack_run.platform.identity

    def check(bucket, registry):
        assert bucket == {"bucket": f"{cfg.project}-orbit-data", "role": "roles/storage.objectAdmin",
                          "member": member}
        assert registry == {"role": "roles/artifactregistry.writer", "member": member,
                            "repository": "orbit-images", "location": cfg.region, "project": cfg.project}

    return on(check, bucket=grant(identity.ci_bucket), registry=grant(identity.ci_registry))


def test_the_only_project_wide_grant_is_the_node_role(stack_run):
    """Node logging is project-scoped; nothing else, CI least of all, gets a role on the whole project.

    A question about every resource of a type the program registered, not a property of one: registrations.
    """
    grants = {(r["role"], r["member"]) for r in (reveal(x.inputs) for x in stack_run.of_type(PROJECT_IAM))}
    assert grants == {
        ("roles/container.defaultNodeServiceAccount", f"serviceAccount:{email(stack_run.config, 'nodes')}"),
    }


def test_ci_account_appears_only_in_its_federation_bucket_and_registry_grants(stack_run):
    """CI builds images and moves DVC data; `pulumi up` runs as the bootstrap deployer account.

    Any resource naming the CI account (a project or cluster role, a Kubernetes RoleBinding, an IAM binding
    or policy) other than these three would let a CI token reach the cluster, so it fails here. It searches
    every registration's inputs, which no single Output could.
    """
    ci = email(stack_run.config, "ci")
    naming_ci = {(r.type, r.name) for r in stack_run.registrations if ci in json.dumps(reveal(r.inputs))}
    assert naming_ci == {
        (SA_IAM, "ci-federation"), ("gcp:storage/bucketIAMMember:BucketIAMMember", "ci-bucket"),
        ("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember", "ci-registry")}


def test_no_service_account_key_anywhere(stack_run):
    assert not [r for r in stack_run.registrations if r.type.endswith(("/key:Key", "/hmacKey:HmacKey"))]


@pytest.mark.parametrize(("binding", "account", "ksa"), [
    ("runner_binding", "runner", "arc-runners/arc-runner"),
    ("serving_binding", "serving", "serving/planet-classifier"),
])
@pulumi.runtime.test
def test_kubernetes_service_accounts_are_bound_to_google_ones(stack_run, binding, account, ksa):
    cfg = stack_run.config
    # The identity namespace exists only once the cluster does: a dependency, i.e. a resource option.
    name = binding.replace("_binding", "-workload-identity")
    assert stack_run.one(CLUSTER).urn in stack_run.one(SA_IAM, name).dependencies

    def check(bound):
        assert bound["role"] == "roles/iam.workloadIdentityUser"
        assert bound["member"] == f"serviceAccount:{cfg.project}.svc.id.goog[{ksa}]"
        assert bound["service_account_id"].endswith(email(cfg, account))

    return on(check, bound=grant(getattr(stack_run.platform.identity, binding)))


@pulumi.runtime.test
def test_the_runners_get_no_role_and_the_service_only_its_log_writer(stack_run):
    """Any job on the runner reaches the metadata server: the runner's Google account must hold nothing, or
    a same-repository branch's workflow would get the data bucket without asking for an id-token. The service
    holds one grant: creating prediction-log objects (tests/infra/test_monitoring.py checks its condition)."""
    cfg = stack_run.config
    identity = stack_run.platform.identity
    # "Nothing" is about every grant the program registered: the recorded members answer it.
    grants = [reveal(r.inputs) for r in stack_run.registrations
              if "IAMMember" in r.type or "IamMember" in r.type]
    members = [g.get("member") for g in grants]
    assert f"serviceAccount:{email(cfg, 'runner')}" not in members
    serving = [g for g in grants if g.get("member") == f"serviceAccount:{email(cfg, 'serving')}"]
    assert [g["role"] for g in serving] == ["roles/storage.objectCreator"]
    assert not hasattr(identity, "runner_bucket")

    def check(account_ids):
        assert account_ids == ["orbit-ci", "orbit-runner", "orbit-serving", "orbit-nodes"]

    accounts = (identity.ci_account, identity.runner_account, identity.serving_account,
                stack_run.platform.cluster.node_account)
    return on(check, account_ids=pulumi.Output.all(*(a.account_id for a in accounts)))


@pulumi.runtime.test
def test_ci_outputs_are_what_google_github_actions_auth_needs(stack_run):
    identity = stack_run.platform.identity
    cfg = stack_run.config

    def check(provider, account):
        assert provider == f"{POOL}/providers/github"
        assert account == email(cfg, "ci")
        assert stack_run.outputs["workload_identity_provider"] == provider
        assert stack_run.outputs["ci_service_account"] == account

    return on(check, provider=identity.workload_identity_provider, account=identity.ci_email)
