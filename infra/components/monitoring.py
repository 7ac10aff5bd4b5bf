"""Watching the model after it ships (issue 10): the log's grants and retention, the scrape, the alert.

The service writes its prediction log as objects under `monitoring/` of the data bucket (records under
`monitoring/records/`, sampled images under `monitoring/images/`), with create-only puts whose names never
collide. So its identity gets `roles/storage.objectCreator` (create, nothing else: no read, no overwrite, no
delete) and only for object names under that prefix, by an IAM condition; the DVC store beside it stays out
of its reach. The scheduled drift check reads the log as a separate identity: `roles/storage.objectViewer`
under the same prefix, which GitHub Actions may use only from jobs in one environment (WIF on the bootstrap's
provider, bound on `attribute.environment` as the deployer and the previewer are).

Listing needs `storage.objects.list` on the *bucket*, which a `resource.name` prefix condition never admits.
The least privilege that still lists is the same binding admitting a list request only when its prefix is
inside the log (`storage.googleapis.com/objectListPrefix`): the reader can list `monitoring/...`, never the
bucket root or the DVC store's names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.config import SERVING_NAMESPACE, StackConfig

if TYPE_CHECKING:  # the bucket and the cluster take their lifecycle rules and scrape settings from here
    from infra.components.bucket import DataBucket

MONITORING_PREFIX = "monitoring/"
IMAGES_PREFIX = "monitoring/images/"
RECORDS_PREFIX = "monitoring/records/"
# What expires: the log itself. monitoring/reference/ (the served model's drift reference, published by the
# deploy, docs/monitoring.md) stays for as long as that model is served, however old.
EXPIRING_PREFIXES = (RECORDS_PREFIX, IMAGES_PREFIX)
WRITER_ROLE = "roles/storage.objectCreator"
READER_ROLE = "roles/storage.objectViewer"
# Google Cloud Managed Service for Prometheus.
GMP_API = "monitoring.googleapis.com/v1"
METRICS_PATH = "/metrics"
# The service's series (serving/: Prometheus text on /metrics).
PREDICTIONS = "orbit_predictions_total"
UNKNOWN = "orbit_unknown_predictions_total"


def object_condition(bucket: str, prefix: str) -> str:
    """CEL admitting object requests under `prefix` only (create, get): `resource.name` of an object."""
    return f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")'


def list_condition(bucket: str, prefix: str) -> str:
    """CEL admitting those objects and a bucket-level list request whose prefix lies under `prefix`."""
    return (f'({object_condition(bucket, prefix)}) || '
            f'(resource.type == "storage.googleapis.com/Bucket" '
            f'&& resource.name == "projects/_/buckets/{bucket}" '
            f'&& api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("{prefix}"))')


def prefix_reader(name: str, bucket: pulumi.Input[str], member: pulumi.Input[str], prefix: str, title: str,
                  opts: pulumi.ResourceOptions) -> gcp.storage.BucketIAMMember:
    """objectViewer on the objects under `prefix`, listing included (see the module's docstring)."""
    return gcp.storage.BucketIAMMember(
        name, bucket=bucket, role=READER_ROLE, member=member,
        condition=gcp.storage.BucketIAMMemberConditionArgs(
            title=title, description=f"read and list objects under {prefix} only",
            expression=pulumi.Output.from_input(bucket).apply(lambda b: list_condition(b, prefix))),
        opts=opts)


def lifecycle_rules(cfg: StackConfig) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    """The log's retention: records and images are deleted after orbit:monitoringRetentionDays.

    The bucket is versioned, so a deleted object first becomes noncurrent; the second rule removes those a day
    later instead of after the DVC store's orbit:bucketNoncurrentDays.
    """
    prefixes = list(EXPIRING_PREFIXES)
    return [
        gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                age=cfg.monitoring.retention_days, matches_prefixes=prefixes)),
        gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                days_since_noncurrent_time=1, with_state="ARCHIVED", matches_prefixes=prefixes)),
    ]


def managed_prometheus() -> gcp.container.ClusterMonitoringConfigArgs:
    """Managed Prometheus on, whose collectors scrape what PodMonitoring objects name.

    `enable_components` is left to GKE: listing some would switch off the other default packages.
    """
    return gcp.container.ClusterMonitoringConfigArgs(
        managed_prometheus=gcp.container.ClusterMonitoringConfigManagedPrometheusArgs(enabled=True))


def environment_principal(cfg: StackConfig, environment: str) -> str:
    """Jobs of this repository (the provider's condition) that declare the GitHub `environment`."""
    return f"principalSet://iam.googleapis.com/{cfg.github.wif_pool}/attribute.environment/{environment}"


def unknown_rate_query(cfg: StackConfig) -> str:
    window = f"{cfg.monitoring.window_minutes}m"
    selector = f'{{namespace="{SERVING_NAMESPACE}"}}'
    return (f"sum(rate({UNKNOWN}{selector}[{window}])) / sum(rate({PREDICTIONS}{selector}[{window}])) "
            f"> {cfg.monitoring.unknown_rate_threshold:g}")


class MonitoringAccess(pulumi.ComponentResource):
    """Who may touch the log: the service creates objects in it, the drift check reads it; nothing more."""

    def __init__(self, name: str, cfg: StackConfig, bucket: DataBucket, serving_member: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:monitoring:MonitoringAccess", name, None, opts)
        from infra.components.identity import WORKLOAD_IDENTITY_USER  # identity -> cluster -> this module
        child = pulumi.ResourceOptions(parent=self)
        self.writer = gcp.storage.BucketIAMMember(
            "serving-log-writer", bucket=bucket.bucket_name, role=WRITER_ROLE, member=serving_member,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title="prediction log only", description=f"create objects under {MONITORING_PREFIX} only",
                expression=bucket.bucket_name.apply(lambda b: object_condition(b, MONITORING_PREFIX))),
            opts=child)
        self.monitor_account = gcp.serviceaccount.Account(
            "monitor", account_id=cfg.name("monitor"), project=cfg.project,
            display_name=f"orbit drift check (reads {MONITORING_PREFIX} only)", opts=child)
        self.monitor_federation = gcp.serviceaccount.IAMMember(
            "monitor-federation", service_account_id=self.monitor_account.name, role=WORKLOAD_IDENTITY_USER,
            member=environment_principal(cfg, cfg.monitoring.environment), opts=child)
        self.reader = prefix_reader("monitor-log-reader", bucket.bucket_name, self.monitor_account.member,
                                    MONITORING_PREFIX, "prediction log, read only", child)
        self.monitor_email = self.monitor_account.email
        self.register_outputs({"monitor_service_account": self.monitor_email})


class ServiceMonitoring(pulumi.ComponentResource):
    """The scrape of the service's /metrics (PodMonitoring) and, if configured, the unknown-rate alert."""

    def __init__(self, name: str, cfg: StackConfig, provider: k8s.Provider, service: pulumi.Resource | None,
                 selector: dict[str, str], port: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:monitoring:ServiceMonitoring", name, None, opts)
        m = cfg.monitoring
        self.pod_monitoring = None
        if service is not None:
            self.pod_monitoring = k8s.apiextensions.CustomResource(
                "serving-metrics",
                api_version=GMP_API, kind="PodMonitoring",
                metadata={"name": "planet-classifier", "namespace": SERVING_NAMESPACE,
                          "labels": {"app.kubernetes.io/part-of": "orbit"}},
                spec={
                    "selector": {"matchLabels": selector},
                    "endpoints": [{"port": port, "path": METRICS_PATH, "interval": m.scrape_interval}],
                },
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[service]))
        self.alert = None
        if m.alert_enabled:
            window = m.window_minutes * 60
            self.alert = gcp.monitoring.AlertPolicy(
                "unknown-rate",
                project=cfg.project,
                display_name=f"{cfg.name('unknown-rate')} ({cfg.stack})",
                combiner="OR",
                severity="WARNING",
                conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=f"unknown rate above {m.unknown_rate_threshold:g}",
                    condition_prometheus_query_language=(
                        gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                            query=unknown_rate_query(cfg), duration=f"{window}s", evaluation_interval="60s",
                            rule_group="orbit", alert_rule="OrbitUnknownRateHigh")),
                )],
                notification_channels=list(m.notification_channels),
                alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close=f"{7 * 86400}s"),
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    mime_type="text/markdown",
                    content=(f"More than {m.unknown_rate_threshold:.0%} of the predictions of the last "
                             f"{m.window_minutes} min were flagged unknown. Run the drift check (the drift "
                             "workflow, or `make drift`) and read docs/monitoring.md: tune, roll back, or "
                             "label and retrain.")),
                user_labels=cfg.labels,
                opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


# What `make plan` shows of these resources (infra/plan.py): the condition a reviewer must read.
PLAN_PROPERTIES: dict[str, tuple[str, ...]] = {
    "gcp:storage/bucketIAMMember:BucketIAMMember": ("role", "member", "condition.expression"),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("displayName", "notificationChannels"),
    f"kubernetes:{GMP_API}:PodMonitoring": ("metadata.namespace", "metadata.name", "spec.endpoints"),
}
