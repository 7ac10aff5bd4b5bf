"""APIs, the data bucket, the image registry and the network, for the dev and prod stack files."""

from __future__ import annotations

import pulumi

from infra.components.apis import BASE_APIS, BUDGET_API
from infra.components.cluster import field
from tests.infra.support import API, BUCKET, REPOSITORY, props


def test_required_apis_are_enabled_and_left_on_at_destroy(stack_run):
    services = {p["service"]: p for p in (r.inputs for r in stack_run.of_type(API))}
    expected = set(BASE_APIS) | ({BUDGET_API} if stack_run.config.budget.enabled else set())
    assert set(services) == expected
    for api in ("container.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com"):
        assert api in services
    assert all(p["disableOnDestroy"] is False and p["project"] == stack_run.config.project
               for p in services.values())


def test_every_other_component_waits_for_the_apis(stack_run):
    """A fresh project fails with "API not enabled" unless Google resources wait for every API."""
    apis = {r.urn for r in stack_run.of_type(API)}
    for typ in ("orbit:storage:DataBucket", "orbit:registry:ImageRegistry", "orbit:network:Network",
                "orbit:cluster:GkeCluster", "orbit:identity:Identity", "orbit:cost:CostControls"):
        assert apis <= set(stack_run.one(typ).dependencies), typ


@pulumi.runtime.test
def test_bucket_is_private_versioned_and_expires_old_versions(stack_run):
    cfg = stack_run.config
    bucket = stack_run.platform.bucket.bucket

    def check(args):
        ubla, prevention, versioning, rules, location = args
        assert ubla is True
        assert prevention == "enforced"
        assert field(versioning, "enabled") is True
        conditions = [(field(r, "action"), field(r, "condition")) for r in rules]
        deletes = [c for a, c in conditions if field(a, "type") == "Delete"]
        assert any(field(c, "days_since_noncurrent_time") == cfg.bucket.noncurrent_days
                   and field(c, "with_state") == "ARCHIVED" for c in deletes)
        assert any(field(c, "num_newer_versions") == cfg.bucket.noncurrent_versions for c in deletes)
        assert any(field(a, "type") == "AbortIncompleteMultipartUpload" for a, _ in conditions)
        assert location == cfg.region.upper()

    return pulumi.Output.all(bucket.uniform_bucket_level_access, bucket.public_access_prevention,
                             bucket.versioning, bucket.lifecycle_rules, bucket.location).apply(check)


def test_bucket_destroyability_follows_protection(dev_run, prod_run):
    dev, prod = props(dev_run, BUCKET), props(prod_run, BUCKET)
    assert dev["forceDestroy"] is True and dev["deletionPolicy"] == "DELETE"
    assert dev["softDeletePolicy"]["retentionDurationSeconds"] == 0
    assert prod["forceDestroy"] is False and prod["deletionPolicy"] == "PREVENT"
    assert prod["softDeletePolicy"]["retentionDurationSeconds"] == 7 * 86400
    assert dev_run.one(BUCKET).protect is False and prod_run.one(BUCKET).protect is True


def test_bucket_name_is_global_and_labelled(stack_run):
    cfg = stack_run.config
    bucket = props(stack_run, BUCKET)
    assert bucket["name"] == f"{cfg.project}-orbit-data"
    assert bucket["labels"] == cfg.labels
    assert {"app", "stack", "managed-by"} <= set(bucket["labels"])
    assert stack_run.outputs["bucket_url"] == f"gs://{bucket['name']}"


def test_registry_is_docker_with_cleanup_policies(stack_run):
    cfg = stack_run.config
    repo = props(stack_run, REPOSITORY)
    assert repo["format"] == "DOCKER" and repo["location"] == cfg.region
    assert repo["dockerConfig"]["immutableTags"] is cfg.registry.immutable_tags
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["keep-recent"]["action"] == "KEEP"
    assert policies["keep-recent"]["mostRecentVersions"]["keepCount"] == cfg.registry.keep_count
    assert policies["delete-untagged"]["action"] == "DELETE"
    assert policies["delete-untagged"]["condition"] == {
        "tagState": "UNTAGGED", "olderThan": f"{cfg.registry.untagged_days * 86400}s"}
    assert repo["cleanupPolicyDryRun"] is False
    assert repo["labels"] == cfg.labels
    assert stack_run.one(REPOSITORY).protect is cfg.protect


@pulumi.runtime.test
def test_registry_path_is_what_docker_pushes_to(stack_run):
    cfg = stack_run.config

    def check(path):
        assert path == f"{cfg.region}-docker.pkg.dev/{cfg.project}/orbit-images"
        assert stack_run.outputs["registry_path"] == path

    return stack_run.platform.registry.path.apply(check)


def test_network_is_custom_mode_with_nat_for_private_nodes(stack_run):
    cfg = stack_run.config
    assert props(stack_run, "gcp:compute/network:Network")["autoCreateSubnetworks"] is False
    subnet = props(stack_run, "gcp:compute/subnetwork:Subnetwork")
    assert subnet["privateIpGoogleAccess"] is True and subnet["region"] == cfg.region
    assert {r["rangeName"] for r in subnet["secondaryIpRanges"]} == {"pods", "services"}
    nat = props(stack_run, "gcp:compute/routerNat:RouterNat")
    assert nat["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    assert nat["router"] == f"{cfg.name_prefix}-router"
    assert nat["logConfig"] == {"enable": True, "filter": "ERRORS_ONLY"}
