"""Label Studio on the cluster (issue 11), for labelling what the service saw; off unless enabled.

- Reached only through `kubectl port-forward` (and from the self-hosted runners, for the label workflow): a
  ClusterIP Service, no Gateway route, a NetworkPolicy admitting only those. Whoever can port-forward already
  holds cluster credentials checked by Google IAM, so no second login wall is needed in front of it.
- Its database is PostgreSQL in a StatefulSet on a persistent disk (pd-balanced): a few euros a month and
  nothing to peer, against Cloud SQL's smallest instance (always on, private IP needs a service networking
  peering range). The disk outlives pod restarts, node upgrades and the StatefulSet itself (its claim is
  kept).
- Media come from the data bucket through Workload Identity: the pod's Google identity may read and list the
  images the prediction log kept (`monitoring/images/`) and nothing else; Label Studio's Google Cloud Storage
  source uses those application default credentials with pre-signed URLs off (it streams the images itself,
  so no key and no signBlob right are needed).
- Both pods run as the model service does: high non-root UIDs, read-only root file systems, no capabilities,
  the RuntimeDefault seccomp profile, no service-account token, resources requested and limited.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.components.bucket import DataBucket
from infra.components.cluster import NODE_POOL_LABEL, GkeCluster
from infra.components.identity import WORKLOAD_IDENTITY_USER, ksa_member
from infra.components.monitoring import IMAGES_PREFIX, prefix_reader
from infra.config import RUNNERS_NAMESPACE, StackConfig

LABELING_NAMESPACE = "labeling"
LABEL_STUDIO_KSA = "label-studio"
DATABASE_KSA = "label-studio-db"
LABEL_STUDIO_PORT = 8080
POSTGRES_PORT = 5432
LABEL_STUDIO_UID = 10001
POSTGRES_UID = 10002  # the postgres image runs an arbitrary UID through nss_wrapper
DATABASE = "labelstudio"
SECRET = "label-studio"
STORAGE_CLASS = "standard-rwo"  # GKE's pd-balanced class, volume bound where the pod lands
PART_OF = {"app.kubernetes.io/part-of": "orbit", "app.kubernetes.io/managed-by": "pulumi"}
APP_SELECTOR = {"app.kubernetes.io/name": "label-studio"}
DB_SELECTOR = {"app.kubernetes.io/name": "label-studio-db"}
# In-cluster address the label workflow's self-hosted runner uses (docs/labeling.md).
IN_CLUSTER_URL = f"http://label-studio.{LABELING_NAMESPACE}.svc.cluster.local:{LABEL_STUDIO_PORT}"


def _hardened(uid: int, scratch: list[str], probe: dict[str, Any], **container: Any) -> dict[str, Any]:
    """A container and the in-memory volumes it writes to, hardened like the model service's."""
    return {
        **container,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                            "capabilities": {"drop": ["ALL"]}},
        "livenessProbe": {**probe, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
        "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},  # first migrations: minutes
        "volumeMounts": [*container.get("volumeMounts", []),
                         *({"name": f"scratch-{i}", "mountPath": path} for i, path in enumerate(scratch))],
    }


def _pod(cfg: StackConfig, ksa: str, uid: int, container: dict[str, Any], scratch: list[str],
         volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "serviceAccountName": ksa,
        "automountServiceAccountToken": False,
        "nodeSelector": {NODE_POOL_LABEL: cfg.name("serving")},
        "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [*(volumes or []),
                    *({"name": f"scratch-{i}", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}
                      for i in range(len(scratch)))],
    }


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}


class LabelStudio(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, bucket: DataBucket, cluster: GkeCluster,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:labeling:LabelStudio", name, None, opts)
        lab = cfg.labeling
        if not lab.enabled:
            raise ValueError("orbit:labelStudioEnabled is false")
        child = pulumi.ResourceOptions(parent=self)

        # -- Google identity: read the images the prediction log kept, nothing else ---------------------
        self.account = gcp.serviceaccount.Account(
            "labeler", account_id=cfg.name("labeler"), project=cfg.project,
            display_name=f"orbit Label Studio (reads {IMAGES_PREFIX} only)", opts=child)
        self.binding = gcp.serviceaccount.IAMMember(
            "labeler-workload-identity", service_account_id=self.account.name, role=WORKLOAD_IDENTITY_USER,
            member=ksa_member(cfg, LABELING_NAMESPACE, LABEL_STUDIO_KSA),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.cluster]))
        self.reader = prefix_reader("labeler-images-reader", bucket.bucket_name, self.account.member,
                                    IMAGES_PREFIX, "prediction-log images, read only", child)

        # -- credentials, made here and kept in the cluster (never in outputs or logs) ------------------
        self.db_password = random.RandomPassword("label-studio-db", length=32, special=False, opts=child)
        self.admin_password = random.RandomPassword("label-studio-admin", length=24, special=False,
                                                    opts=child)
        self.secret_key = random.RandomPassword("label-studio-django", length=50, special=False, opts=child)
        # The admin's legacy API token (40 hex), read by people with `kubectl get secret` and stored as the
        # label workflow's LABEL_STUDIO_TOKEN secret (docs/labeling.md).
        self.api_token = random.RandomId("label-studio-token", byte_length=20, opts=child)

        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        meta = dict(namespace=LABELING_NAMESPACE, labels=PART_OF)
        self.namespace = k8s.core.v1.Namespace(
            "labeling",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=LABELING_NAMESPACE, labels={
                **PART_OF, "pod-security.kubernetes.io/enforce": "restricted"}),
            opts=k8s_opts)
        k8s_child = pulumi.ResourceOptions.merge(k8s_opts,
                                                 pulumi.ResourceOptions(depends_on=[self.namespace]))
        self.secret = k8s.core.v1.Secret(
            "label-studio",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SECRET, **meta),
            type="Opaque",
            string_data={
                # Secret in the state whatever the provider marks (RandomId's hex is not marked).
                "db-password": pulumi.Output.secret(self.db_password.result),
                "admin-password": pulumi.Output.secret(self.admin_password.result),
                "django-secret-key": pulumi.Output.secret(self.secret_key.result),
                "api-token": pulumi.Output.secret(self.api_token.hex),
            },
            opts=k8s_child)
        self.accounts = [
            k8s.core.v1.ServiceAccount(
                ksa, metadata=k8s.meta.v1.ObjectMetaArgs(name=ksa, **meta, annotations=annotations),
                automount_service_account_token=False, opts=k8s_child)
            for ksa, annotations in (
                (LABEL_STUDIO_KSA, {"iam.gke.io/gcp-service-account": self.account.email}),
                (DATABASE_KSA, None))
        ]
        after = pulumi.ResourceOptions.merge(k8s_child, pulumi.ResourceOptions(
            depends_on=[self.secret, *self.accounts]))

        # -- PostgreSQL on a persistent disk ---------------------------------------------------------------
        db_labels = {**DB_SELECTOR, **PART_OF}
        pg_probe = {"exec": {"command": ["pg_isready", "-U", DATABASE, "-d", DATABASE, "-h", "127.0.0.1"]}}
        database = _hardened(
            POSTGRES_UID, ["/var/run/postgresql", "/tmp"], pg_probe,
            name="postgres", image=lab.postgres_image,
            ports=[{"name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP"}],
            env=[{"name": "POSTGRES_USER", "value": DATABASE}, {"name": "POSTGRES_DB", "value": DATABASE},
                 # Read from a file (the image's *_FILE convention), not an environment variable.
                 {"name": "POSTGRES_PASSWORD_FILE", "value": "/run/secrets/orbit/db-password"},
                 # A sub-folder: the disk's root holds lost+found, which initdb refuses.
                 {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
            resources={"requests": {"cpu": "100m", "memory": "256Mi"},
                       "limits": {"cpu": "500m", "memory": "512Mi"}},
            volumeMounts=[{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                          {"name": "password", "mountPath": "/run/secrets/orbit", "readOnly": True}])
        self.database = k8s.apps.v1.StatefulSet(
            "label-studio-db",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio-db", **{**meta, "labels": db_labels}),
            spec={
                "serviceName": "label-studio-db",
                "replicas": 1,
                "selector": {"matchLabels": DB_SELECTOR},
                "template": {"metadata": {"labels": db_labels},
                             "spec": _pod(cfg, DATABASE_KSA, POSTGRES_UID, database,
                                          ["/var/run/postgresql", "/tmp"],
                                          [{"name": "password", "secret": {
                                              "secretName": SECRET, "defaultMode": 0o440,
                                              "items": [{"key": "db-password", "path": "db-password"}]}}])},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": db_labels},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                             "resources": {"requests": {"storage": f"{lab.disk_gb}Gi"}}},
                }],
                # Deleting or scaling the StatefulSet keeps the disk (and the annotations in it).
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            },
            opts=after)
        self.database_service = k8s.core.v1.Service(
            "label-studio-db",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio-db", **{**meta, "labels": db_labels}),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=DB_SELECTOR,
                ports=[k8s.core.v1.ServicePortArgs(name="postgres", port=POSTGRES_PORT,
                                                   target_port="postgres", protocol="TCP")]),
            opts=k8s_child)

        # -- Label Studio ----------------------------------------------------------------------------------
        app_labels = {**APP_SELECTOR, **PART_OF}
        app = _hardened(
            LABEL_STUDIO_UID, ["/label-studio/data", "/tmp"],
            {"httpGet": {"path": "/health", "port": "http"}},
            name="label-studio", image=lab.image,
            ports=[{"name": "http", "containerPort": LABEL_STUDIO_PORT, "protocol": "TCP"}],
            env=[
                {"name": "DJANGO_DB", "value": "default"},
                {"name": "POSTGRE_NAME", "value": DATABASE}, {"name": "POSTGRE_USER", "value": DATABASE},
                _secret_env("POSTGRE_PASSWORD", "db-password"),
                {"name": "POSTGRE_HOST", "value": f"label-studio-db.{LABELING_NAMESPACE}.svc.cluster.local"},
                {"name": "POSTGRE_PORT", "value": str(POSTGRES_PORT)},
                _secret_env("SECRET_KEY", "django-secret-key"),
                # The first admin and its API token, created headless on first start.
                {"name": "LABEL_STUDIO_USERNAME", "value": "admin@orbit.local"},
                _secret_env("LABEL_STUDIO_PASSWORD", "admin-password"),
                _secret_env("LABEL_STUDIO_USER_TOKEN", "api-token"),
                {"name": "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "value": "true"},
                {"name": "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK", "value": "true"},
                {"name": "LABEL_STUDIO_BASE_DATA_DIR", "value": "/label-studio/data"},
                {"name": "HOME", "value": "/tmp"},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                {"name": "GOOGLE_CLOUD_PROJECT", "value": cfg.project},
                # No telemetry, no update checks.
                {"name": "SENTRY_DSN", "value": ""}, {"name": "FRONTEND_SENTRY_DSN", "value": ""},
                {"name": "COLLECT_ANALYTICS", "value": "false"},
                {"name": "LATEST_VERSION_CHECK", "value": "false"},
            ],
            resources={"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
        self.deployment = k8s.apps.v1.Deployment(
            "label-studio",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio", **{**meta, "labels": app_labels}),
            spec={
                "replicas": 1,
                # One writer of the migrations at a time: the old pod stops before the new one starts.
                "strategy": {"type": "Recreate"},
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": APP_SELECTOR},
                "template": {"metadata": {"labels": app_labels},
                             "spec": _pod(cfg, LABEL_STUDIO_KSA, LABEL_STUDIO_UID, app,
                                          ["/label-studio/data", "/tmp"])},
            },
            opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[self.database])))
        self.service = k8s.core.v1.Service(
            "label-studio",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio", **{**meta, "labels": app_labels}),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=APP_SELECTOR,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=LABEL_STUDIO_PORT, target_port="http",
                                                   protocol="TCP")]),
            opts=k8s_child)

        # -- who may connect: Label Studio from the runners (label workflow); the database from Label Studio
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(
                "label-studio",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio", **meta),
                spec={"podSelector": {"matchLabels": APP_SELECTOR}, "policyTypes": ["Ingress"],
                      "ingress": [{
                          "from": [{"namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": RUNNERS_NAMESPACE}}}],
                          "ports": [{"port": LABEL_STUDIO_PORT, "protocol": "TCP"}]}]},
                opts=k8s_child),
            k8s.networking.v1.NetworkPolicy(
                "label-studio-db",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="label-studio-db", **meta),
                spec={"podSelector": {"matchLabels": DB_SELECTOR}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"podSelector": {"matchLabels": APP_SELECTOR}}],
                                   "ports": [{"port": POSTGRES_PORT, "protocol": "TCP"}]}]},
                opts=k8s_child),
        ]
        self.url = IN_CLUSTER_URL
        self.register_outputs({"url": self.url, "labeler_service_account": self.account.email})
