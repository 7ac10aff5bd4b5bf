"""APIs, the data bucket, the image registry and the network, for the dev and prod stack files."""

from __future__ import annotations

import pulumi
import pytest

from infra.components.apis import BASE_APIS, BUDGET_API, EDGE_APIS
from infra.components.cluster import field
from infra.config import ROLLBACK_DEPTH
from tests.infra.support import API, BUCKET, REPOSITORY, on


@pulumi.runtime.test
def test_required_apis_are_enabled_and_left_on_at_destroy(stack_run):
    services = stack_run.platform.apis.services
    expected = set(BASE_APIS) | ({BUDGET_API} if stack_run.config.budget.enabled else set())
    expected |= set(EDGE_APIS) if stack_run.config.edge.exposed else set()  # prod is public
    assert set(services) == expected
    for api in ("container.googleapis.com", "iamcredentials.googleapis.com", "sts.googleapis.com"):
        assert api in services

    def check(settings):
        for api, (service, disable_on_destroy, project) in zip(services, settings, strict=True):
            assert (service, disable_on_destroy, project) == (api, False, stack_run.config.project)

    return on(check, settings=pulumi.Output.all(*(
        pulumi.Output.all(s.service, s.disable_on_destroy, s.project) for s in services.values())))


def test_every_other_component_waits_for_the_apis(stack_run):
    """A fresh project fails with "API not enabled" unless Google resources wait for every API.

    depends_on is a resource option: it has no Output, so the registrations answer.
    """
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


@pulumi.runtime.test
def test_bucket_destroyability_follows_protection(dev_run, prod_run):
    # `protect` is a resource option: only the registration has it.
    assert dev_run.one(BUCKET).protect is False and prod_run.one(BUCKET).protect is True

    def settings(bucket):
        return pulumi.Output.all(bucket.force_destroy, bucket.deletion_policy,
                                 bucket.soft_delete_policy.apply(lambda p: p["retention_duration_seconds"]))

    def check(dev, prod):
        assert dev == [True, "DELETE", 0]
        assert prod == [False, "PREVENT", 7 * 86400]

    return on(check, dev=settings(dev_run.platform.bucket.bucket),
              prod=settings(prod_run.platform.bucket.bucket))


@pulumi.runtime.test
def test_bucket_name_is_global_and_labelled(stack_run):
    cfg = stack_run.config
    bucket = stack_run.platform.bucket

    def check(name, labels, url):
        assert name == f"{cfg.project}-orbit-data"
        assert labels == cfg.labels and {"app", "stack", "managed-by"} <= set(labels)
        assert url == f"gs://{name}" == stack_run.outputs["bucket_url"]

    return on(check, name=bucket.bucket_name, labels=bucket.bucket.labels, url=bucket.url)


@pulumi.runtime.test
def test_registry_is_docker_with_cleanup_policies(stack_run):
    cfg = stack_run.config
    # `protect` is a resource option: only the registration has it.
    assert stack_run.one(REPOSITORY).protect is cfg.protect
    repo = stack_run.platform.registry.repository

    def check(format, location, docker, cleanup, dry_run, labels):
        assert format == "DOCKER" and location == cfg.region
        assert docker["immutable_tags"] is cfg.registry.immutable_tags
        policies = {p["id"]: p for p in cleanup}
        assert policies["keep-recent"]["action"] == "KEEP"
        assert policies["keep-recent"]["most_recent_versions"]["keep_count"] == cfg.registry.keep_count
        # Tagged images too (CI tags every build): deleted once old, the most recent N kept (KEEP wins).
        assert policies["delete-old"]["action"] == "DELETE"
        assert policies["delete-old"]["condition"] == {
            "tag_state": "ANY", "older_than": f"{cfg.registry.max_age_days * 86400}s"}
        assert policies["keep-recent"]["action"] == "KEEP"
        assert cfg.registry.keep_count > ROLLBACK_DEPTH
        assert policies["delete-untagged"]["action"] == "DELETE"
        assert policies["delete-untagged"]["condition"] == {
            "tag_state": "UNTAGGED", "older_than": f"{cfg.registry.untagged_days * 86400}s"}
        assert dry_run is False
        assert labels == cfg.labels

    return on(check, format=repo.format, location=repo.location, docker=repo.docker_config,
              cleanup=repo.cleanup_policies, dry_run=repo.cleanup_policy_dry_run, labels=repo.labels)


@pulumi.runtime.test
def test_registry_path_is_what_docker_pushes_to(stack_run):
    cfg = stack_run.config

    def check(path):
        assert path == f"{cfg.region}-docker.pkg.dev/{cfg.project}/orbit-images"
        assert stack_run.outputs["registry_path"] == path

    return stack_run.platform.registry.path.apply(check)


@pulumi.runtime.test
def test_network_is_custom_mode_with_nat_for_private_nodes(stack_run):
    cfg = stack_run.config
    network = stack_run.platform.network

    def check(auto_subnets, google_access, region, ranges, nat_ranges, router, log):
        assert auto_subnets is False
        assert google_access is True and region == cfg.region
        assert {r["range_name"] for r in ranges} == {"pods", "services"}
        assert nat_ranges == "ALL_SUBNETWORKS_ALL_IP_RANGES"
        assert router == f"{cfg.name_prefix}-router"
        assert log == {"enable": True, "filter": "ERRORS_ONLY"}

    subnet, nat = network.subnetwork, network.nat
    return on(check, auto_subnets=network.network.auto_create_subnetworks,
              google_access=subnet.private_ip_google_access, region=subnet.region,
              ranges=subnet.secondary_ip_ranges, nat_ranges=nat.source_subnetwork_ip_ranges_to_nat,
              router=nat.router, log=nat.log_config)


def test_dvc_verifies_every_object_it_pulls():
    """A tampered object in the bucket must fail `dvc pull`, not reach training or a release."""
    import configparser
    from pathlib import Path

    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[2] / ".dvc" / "config")
    assert parser.getboolean("'remote \"storage\"'", "verify") is True


def test_the_registry_never_keeps_fewer_images_than_a_rollback_needs():
    from infra.config import ConfigError, parse, read_stack_file
    from tests.infra.support import FIXTURES

    values = {**read_stack_file("dev", FIXTURES), "orbit:registryKeepCount": ROLLBACK_DEPTH}
    with pytest.raises(ConfigError) as info:
        parse(values, "dev", {"orbit:githubAppPrivateKey": "fake"})
    assert info.value.keys == ["orbit:registryKeepCount"]
