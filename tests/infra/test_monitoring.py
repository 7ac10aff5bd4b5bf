"""Monitoring in the cloud (issue 10 §4): the log's grants, the monitor identity, retention, scrape, alert.

Properties are checked on the Outputs of what the program built; the policy and schema checks read the
recorded inputs, because those are what the engine, the pack and the API server receive.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pulumi
import pytest

from infra.components.monitoring import (
    IMAGES_PREFIX,
    MONITORING_PREFIX,
    list_condition,
    object_condition,
    unknown_rate_query,
)
from infra.config import ConfigError, parse, read_stack_file
from infra.mocks import reveal
from infra.policy.rules import stack_violations, violations
from tests.infra.support import BUCKET, BUCKET_IAM, CLUSTER, FIXTURES, PROJECT_IAM, SA_IAM, on, props
from tests.infra.test_config import SECRET

POOL = "projects/123456789012/locations/global/workloadIdentityPools/orbit-github"
PODMONITORING = "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
SCHEMA = Path(__file__).resolve().parents[2] / "tools" / "k8s-schemas" / "podmonitoring-v1.schema.json"


def bucket_name(cfg) -> str:
    return f"{cfg.project}-orbit-data"


def email(cfg, name: str) -> str:
    return f"orbit-{name}@{cfg.project}.iam.gserviceaccount.com"


def grant(resource) -> pulumi.Output:
    return pulumi.Output.all(bucket=resource.bucket, role=resource.role, member=resource.member,
                             condition=resource.condition)


def field(value, name):
    return value.get(name) if isinstance(value, dict) else getattr(value, name)


# ---------------------------------------------------------------------------------------------- grants
@pulumi.runtime.test
def test_the_service_may_only_create_objects_under_the_log_prefix(stack_run):
    cfg = stack_run.config

    def check(writer):
        assert writer["bucket"] == bucket_name(cfg)
        assert writer["role"] == "roles/storage.objectCreator"  # create: no get, no delete, no overwrite
        assert writer["member"] == f"serviceAccount:{email(cfg, 'serving')}"
        assert field(writer["condition"], "expression") == (
            f'resource.name.startsWith("projects/_/buckets/{bucket_name(cfg)}/objects/monitoring/")')

    return on(check, writer=grant(stack_run.platform.monitoring_access.writer))


@pulumi.runtime.test
def test_the_drift_check_reads_and_lists_the_log_only(stack_run):
    cfg = stack_run.config
    access = stack_run.platform.monitoring_access

    def check(reader, federation_member, federation_role, account):
        assert reader["role"] == "roles/storage.objectViewer"
        assert reader["member"] == f"serviceAccount:{email(cfg, 'monitor')}"
        assert field(reader["condition"], "expression") == list_condition(bucket_name(cfg), MONITORING_PREFIX)
        # Bound on the GitHub environment, like the deployer and the previewer: not every workflow.
        assert federation_role == "roles/iam.workloadIdentityUser"
        assert federation_member == f"principalSet://iam.googleapis.com/{POOL}/attribute.environment/monitoring"
        assert account == stack_run.outputs["monitor_service_account"] == email(cfg, "monitor")

    return on(check, reader=grant(access.reader), federation_member=access.monitor_federation.member,
              federation_role=access.monitor_federation.role, account=access.monitor_email)


def test_the_list_condition_admits_the_log_and_nothing_else():
    """The condition, read as IAM evaluates it for an object get and for a bucket-level list."""
    expression = list_condition("b", MONITORING_PREFIX)
    assert 'resource.name.startsWith("projects/_/buckets/b/objects/monitoring/")' in expression
    assert ('resource.type == "storage.googleapis.com/Bucket" && resource.name == "projects/_/buckets/b"'
            in expression)
    assert 'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("monitoring/")' \
        in expression
    assert object_condition("b", IMAGES_PREFIX).endswith('/objects/monitoring/images/")')


def test_the_monitor_environment_is_configurable(run_with):
    run = run_with("dev", {"orbit:monitorEnvironment": "drift"})
    (federation,) = [reveal(r.inputs) for r in run.of_type(SA_IAM) if r.name == "monitor-federation"]
    assert federation["member"].endswith("/attribute.environment/drift")


def test_the_monitor_and_the_writer_hold_nothing_else(stack_run):
    """A sweep over every grant the program registered: no write for the monitor, no read for the writer."""
    cfg = stack_run.config
    grants = [reveal(r.inputs) for r in stack_run.registrations if r.type in (BUCKET_IAM, PROJECT_IAM)]
    monitor = [g["role"] for g in grants if g["member"] == f"serviceAccount:{email(cfg, 'monitor')}"]
    serving = [g["role"] for g in grants if g["member"] == f"serviceAccount:{email(cfg, 'serving')}"]
    assert monitor == ["roles/storage.objectViewer"] and serving == ["roles/storage.objectCreator"]


# ---------------------------------------------------------------------------------------------- retention
@pytest.mark.parametrize("days", [None, 30])
def test_log_objects_expire_after_the_retention(run_with, days):
    run = run_with("dev", {"orbit:monitoringRetentionDays": days} if days else {})
    rules = props(run, BUCKET)["lifecycleRules"]
    log_rules = [r for r in rules if r["condition"].get("matchesPrefixes")]
    # Records and images expire; monitoring/reference/ (the drift check's reference) is not matched.
    assert all(r["condition"]["matchesPrefixes"] == ["monitoring/records/", "monitoring/images/"]
               for r in log_rules)
    assert [(r["action"]["type"], r["condition"].get("age")) for r in log_rules] == [
        ("Delete", days or 90), ("Delete", None)]
    # Versioned bucket: the deleted log leaves as a noncurrent version a day later, not after 30 days.
    assert log_rules[1]["condition"]["daysSinceNoncurrentTime"] == 1
    assert log_rules[1]["condition"]["withState"] == "ARCHIVED"
    # The DVC store's own rules are untouched: no prefix, so they still cover everything.
    assert len(rules) - len(log_rules) == 3


def test_a_retention_outside_its_range_is_refused():
    values = {**read_stack_file("dev", FIXTURES), "orbit:monitoringRetentionDays": 0}
    with pytest.raises(ConfigError) as info:
        parse(values, "dev", SECRET)
    assert info.value.keys == ["orbit:monitoringRetentionDays"]


# ---------------------------------------------------------------------------------------------- the scrape
def test_the_cluster_runs_managed_prometheus(stack_run):
    config = props(stack_run, CLUSTER)["monitoringConfig"]
    assert config == {"managedPrometheus": {"enabled": True}}  # GKE's default components stay as they are


def test_pod_monitoring_scrapes_the_service_metrics(stack_run, first_up_run):
    assert first_up_run.of_type(PODMONITORING) == []  # no service yet, nothing to scrape
    pm = stack_run.one(PODMONITORING).manifest()
    deployment = stack_run.one("kubernetes:apps/v1:Deployment").manifest()
    pod = deployment["spec"]["template"]
    assert pm["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "serving"
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = pm["spec"]["endpoints"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s"} and "http" in ports
    # Scraped after the Deployment exists.
    assert stack_run.one("kubernetes:apps/v1:Deployment").urn in stack_run.one(PODMONITORING).dependencies


def pod_monitoring_schema() -> dict:
    """The v1 PodMonitoring schema written for orbit (tools/k8s-schemas/podmonitoring-v1.schema.json): no
    npm or PyPI package covers monitoring.googleapis.com."""
    return json.loads(SCHEMA.read_text())


def schema_errors(manifest: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(pod_monitoring_schema())
    return sorted(f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(manifest))


def test_pod_monitoring_passes_its_crd_schema(stack_run):
    manifest = stack_run.one(PODMONITORING).manifest()
    assert manifest["apiVersion"] == "monitoring.googleapis.com/v1"
    assert schema_errors(manifest) == []


def test_the_schema_check_rejects_a_misspelt_field_and_a_missing_port(dev_run):
    """Guards the check above: it must catch what the API server would refuse."""
    manifest = dev_run.one(PODMONITORING).manifest()
    misspelt = copy.deepcopy(manifest)
    misspelt["spec"]["endpoints"][0]["pth"] = "/metrics"
    assert any("pth" in e for e in schema_errors(misspelt))
    portless = copy.deepcopy(manifest)
    del portless["spec"]["endpoints"][0]["port"]
    assert any("'port' is a required property" in e for e in schema_errors(portless))
    selectorless = copy.deepcopy(manifest)
    selectorless["spec"]["selector"] = "planet-classifier"
    assert schema_errors(selectorless) != []


# ---------------------------------------------------------------------------------------------- the alert
def test_no_alert_in_dev(dev_run):
    assert dev_run.config.monitoring.alert_enabled is False
    assert dev_run.of_type(ALERT) == []


@pulumi.runtime.test
def test_prod_alerts_on_the_unknown_rate(prod_run):
    cfg = prod_run.config
    alert = prod_run.platform.monitoring.alert

    def check(conditions, channels, labels):
        [condition] = conditions
        promql = field(condition, "condition_prometheus_query_language")
        query = field(promql, "query")
        assert query == ('sum(rate(orbit_unknown_predictions_total{namespace="serving"}[60m])) / '
                         'sum(rate(orbit_predictions_total{namespace="serving"}[60m])) > 0.2')
        assert field(promql, "duration") == "3600s"
        assert channels == ["projects/my-gcp-project-prod/notificationChannels/1234567890"]
        assert labels == cfg.labels

    return on(check, conditions=alert.conditions, channels=alert.notification_channels,
              labels=alert.user_labels)


def test_threshold_window_and_scrape_interval_come_from_config(run_with):
    run = run_with("dev", {"orbit:unknownRateAlertEnabled": True, "orbit:unknownRateThreshold": 0.35,
                           "orbit:unknownRateWindowMinutes": 15, "orbit:monitoringScrapeInterval": "1m",
                           "orbit:alertNotificationChannels": ["projects/p-123456/notificationChannels/42"]})
    assert run.one(PODMONITORING).manifest()["spec"]["endpoints"][0]["interval"] == "1m"
    alert = props(run, ALERT)
    promql = alert["conditions"][0]["conditionPrometheusQueryLanguage"]
    assert promql["query"] == unknown_rate_query(run.config) and "[15m]" in promql["query"]
    assert promql["query"].endswith("> 0.35") and promql["duration"] == "900s"
    assert alert["notificationChannels"] == ["projects/p-123456/notificationChannels/42"]


@pytest.mark.parametrize("change, key", [
    ({"orbit:unknownRateAlertEnabled": True}, "orbit:alertNotificationChannels"),
    ({"orbit:alertNotificationChannels": ["my-channel"]}, "orbit:alertNotificationChannels"),
    ({"orbit:unknownRateThreshold": 1.5}, "orbit:unknownRateThreshold"),
    ({"orbit:unknownRateThreshold": 0}, "orbit:unknownRateThreshold"),
    ({"orbit:monitoringScrapeInterval": "often"}, "orbit:monitoringScrapeInterval"),
    ({"orbit:monitorEnvironment": "no spaces please"}, "orbit:monitorEnvironment"),
])
def test_bad_monitoring_config_is_named(change, key):
    with pytest.raises(ConfigError) as info:
        parse({**read_stack_file("dev", FIXTURES), **change}, "dev", SECRET)
    assert info.value.keys == [key]


# ---------------------------------------------------------------------------------------------- policies
WRITER = {"bucket": "b", "role": "roles/storage.objectCreator", "member": "serviceAccount:s@p.iam",
          "condition": {"title": "log", "expression": object_condition("b", MONITORING_PREFIX)}}
READER = {"bucket": "b", "role": "roles/storage.objectViewer", "member": "serviceAccount:m@p.iam",
          "condition": {"title": "log", "expression": list_condition("b", MONITORING_PREFIX)}}


def names(found) -> set[str]:
    return {name for name, _ in found}


def test_the_program_passes_the_log_policies(stack_run):
    resources = [(r.type, reveal(r.inputs)) for r in stack_run.resources]
    assert stack_violations(resources) == []
    assert len([r for r in resources if r[0] == BUCKET_IAM]) >= 3


@pytest.mark.parametrize("condition", [
    None, {"title": "t", "expression": "true"},
    {"title": "t", "expression": object_condition("b", "x/") + " || true"}])
def test_object_creator_on_the_whole_bucket_is_refused(condition):
    assert names(violations(BUCKET_IAM, WRITER)) == set()
    found = violations(BUCKET_IAM, {**WRITER, "condition": condition})
    assert names(found) == {"storage-object-creator-prefix-limited"}


@pytest.mark.parametrize("role", ["roles/storage.objectAdmin", "roles/storage.objectUser",
                                  "roles/storage.legacyBucketWriter"])
def test_a_log_grant_never_deletes_or_overwrites(role):
    assert violations(BUCKET_IAM, READER) == []
    found = violations(BUCKET_IAM, {**READER, "role": role})
    assert "storage-log-grants-create-or-read" in names(found)


def bucket_with(rules) -> tuple[str, dict]:
    return BUCKET, {"name": "b", "lifecycleRules": rules}


EXPIRES = {"action": {"type": "Delete"}, "condition": {"age": 90, "matchesPrefixes": [MONITORING_PREFIX]}}
LOG_ONLY = {"action": {"type": "Delete"},
            "condition": {"age": 90, "matchesPrefixes": ["monitoring/records/", "monitoring/images/"]}}


@pytest.mark.parametrize("extra, flagged", [
    ([], False),
    ([(BUCKET_IAM, {**WRITER, "role": "roles/storage.objectViewer", "condition": None})], True),
    ([(BUCKET_IAM, {**WRITER, "role": "roles/storage.objectAdmin", "condition": None})], True),
    ([(PROJECT_IAM, {"project": "p", "role": "roles/storage.objectViewer", "member": WRITER["member"]})],
     True),
    ([(BUCKET_IAM, {**READER, "member": "serviceAccount:other@p.iam"})], False),
])
def test_the_log_writer_gets_no_other_storage_role(extra, flagged):
    resources = [bucket_with([EXPIRES]), (BUCKET_IAM, WRITER), *extra]
    assert ("storage-log-writer-create-only" in names(stack_violations(resources))) is flagged


@pytest.mark.parametrize("extra, flagged", [
    ([], False),
    ([(BUCKET_IAM, {**READER, "role": "roles/storage.objectAdmin", "condition": None})], True),
    ([(BUCKET_IAM, {**READER, "condition": None})], True),  # the whole bucket: the DVC store too
    ([(PROJECT_IAM, {"project": "p", "role": "roles/storage.objectViewer", "member": READER["member"]})],
     True),
    ([(BUCKET_IAM, {**READER, "condition": {"title": "images",
                                           "expression": list_condition("b", IMAGES_PREFIX)}})], False),
])
def test_the_log_readers_reach_nothing_beyond_it(extra, flagged):
    resources = [bucket_with([EXPIRES]), (BUCKET_IAM, WRITER), (BUCKET_IAM, READER), *extra]
    assert ("storage-log-readers-read-only" in names(stack_violations(resources))) is flagged


@pytest.mark.parametrize("rules, flagged", [
    ([EXPIRES], False),
    ([LOG_ONLY], False),
    ([{"action": {"type": "Delete"}, "condition": {"age": 90, "matchesPrefixes": ["monitoring/records/"]}}],
     True),  # the images would stay
    ([{"action": {"type": "Delete"}, "condition": {"age": 90}}], True),  # no prefix read: not the log's rule
    ([{"action": {"type": "SetStorageClass"}, "condition": {"age": 90, "matchesPrefixes": ["monitoring/"]}}],
     True),
    ([], True),
])
def test_a_bucket_holding_the_log_expires_it(rules, flagged):
    found = stack_violations([bucket_with(rules), (BUCKET_IAM, WRITER)])
    assert ("storage-log-expires" in names(found)) is flagged
    # A bucket without the log needs no such rule.
    assert stack_violations([bucket_with(rules)]) == []
