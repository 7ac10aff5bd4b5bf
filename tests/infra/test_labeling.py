"""Label Studio on GKE (issue 11 §4): off by default; on: pinned, persistent, private, least privilege."""

from __future__ import annotations

import kubernetes_validate
import pulumi
import pytest

from infra.components.labeling import IN_CLUSTER_URL, LABELING_NAMESPACE
from infra.components.monitoring import IMAGES_PREFIX, list_condition
from infra.config import KEYS, ConfigError, parse, read_stack_file
from infra.mocks import is_secret, reveal
from infra.policy.rules import stack_violations, violations
from tests.infra.support import BUCKET_IAM, DEPLOYMENT, FIXTURES, K8S_SERVICE, SA_IAM, SECRET, on
from tests.infra.test_config import SECRET as SECRETS
from tests.infra.test_manifests import KUBERNETES_VERSION

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
APP_IMAGE = "heartexlabs/label-studio:1.23.2@sha256:" + "ab" * 32
DB_IMAGE = "postgres:17.6-bookworm@sha256:" + "cd" * 32
ENABLED = {"orbit:labelStudioEnabled": True, "orbit:labelStudioImage": APP_IMAGE,
           "orbit:labelStudioPostgresImage": DB_IMAGE}


@pytest.fixture(scope="module")
def lab_run(run_with):
    return run_with("dev", ENABLED)


def labeling_objects(run) -> list[dict]:
    return [m for m in (r.manifest() for r in run.registrations if r.is_kubernetes_object)
            if LABELING_NAMESPACE in (m["metadata"].get("namespace"), m["metadata"]["name"])]


def test_off_by_default(stack_run):
    assert KEYS["orbit:labelStudioEnabled"].default is False
    assert stack_run.platform.labeling is None and labeling_objects(stack_run) == []
    assert stack_run.outputs["labeling_url"] == ""
    assert not [r for r in stack_run.of_type("gcp:serviceaccount/account:Account") if r.name == "labeler"]


def test_enabled_it_runs_both_images_by_digest(lab_run):
    images = {m["kind"]: [c["image"] for c in m["spec"]["template"]["spec"]["containers"]]
              for m in labeling_objects(lab_run) if m["kind"] in ("Deployment", "StatefulSet")}
    assert images == {"Deployment": [APP_IMAGE], "StatefulSet": [DB_IMAGE]}
    assert lab_run.outputs["labeling_url"] == IN_CLUSTER_URL


def test_the_database_lives_on_a_persistent_disk_that_outlives_the_pod(lab_run):
    db = lab_run.one(STATEFULSET).manifest()
    [claim] = db["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["storageClassName"] == "standard-rwo"
    retention = db["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert retention == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    [container] = db["spec"]["template"]["spec"]["containers"]
    data_mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    pgdata = next(e["value"] for e in container["env"] if e["name"] == "PGDATA")
    assert pgdata.startswith(data_mount["mountPath"] + "/")  # the data dir is on the disk, not in memory


def test_disk_size_is_configurable(run_with):
    run = run_with("dev", {**ENABLED, "orbit:labelStudioDiskGb": 25})
    claim = run.one(STATEFULSET).manifest()["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "25Gi"


def test_label_studio_talks_to_that_database_with_the_generated_password(lab_run):
    app = next(m for m in labeling_objects(lab_run) if m["kind"] == "Deployment")
    env = {e["name"]: e for e in app["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DJANGO_DB"]["value"] == "default"
    assert env["POSTGRE_HOST"]["value"] == f"label-studio-db.{LABELING_NAMESPACE}.svc.cluster.local"
    for name in ("POSTGRE_PASSWORD", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN", "SECRET_KEY"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"] == "label-studio"
    secret = next(m for m in labeling_objects(lab_run) if m["kind"] == "Secret")
    assert set(secret["stringData"]) == {"db-password", "admin-password", "django-secret-key", "api-token"}
    # The credentials stay secrets in the state, and none of them is a stack output.
    assert "mock-label-studio" not in str(lab_run.outputs) and "a1b2c3" not in str(lab_run.outputs)
    recorded = lab_run.one(SECRET, "label-studio").inputs["stringData"]
    assert is_secret(recorded)  # secret-wrapped on the wire and in the state


def test_no_public_endpoint(lab_run):
    services = [m for m in labeling_objects(lab_run) if m["kind"] == "Service"]
    assert {s["spec"]["type"] for s in services} == {"ClusterIP"} and len(services) == 2
    routes = [r for r in lab_run.registrations if r.type.endswith(":HTTPRoute")]
    assert all(reveal(r.inputs)["metadata"]["namespace"] != LABELING_NAMESPACE for r in routes)
    policies = {m["metadata"]["name"]: m["spec"] for m in labeling_objects(lab_run)
                if m["kind"] == "NetworkPolicy"}
    # Label Studio: from the runners' namespace (the label workflow) only; the database: Label Studio only.
    assert policies["label-studio"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "arc-runners"}}}]
    assert policies["label-studio-db"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "label-studio"}}}]


def test_an_external_load_balancer_for_it_would_be_refused(lab_run):
    service = lab_run.one(K8S_SERVICE, "label-studio").manifest()
    service["spec"]["type"] = "LoadBalancer"
    assert {n for n, _ in violations(K8S_SERVICE, service)} == {"edge-no-plain-http-load-balancer"}


@pulumi.runtime.test
def test_media_are_read_through_workload_identity_with_a_read_only_prefix_grant(lab_run):
    cfg = lab_run.config
    lab = lab_run.platform.labeling
    account = f"orbit-labeler@{cfg.project}.iam.gserviceaccount.com"

    def check(role, member, condition, binding_member):
        assert role == "roles/storage.objectViewer" and member == f"serviceAccount:{account}"
        expression = condition["expression"] if isinstance(condition, dict) else condition.expression
        assert expression == list_condition(f"{cfg.project}-orbit-data", IMAGES_PREFIX)
        assert binding_member == f"serviceAccount:{cfg.project}.svc.id.goog[labeling/label-studio]"

    ksa = lab_run.one("kubernetes:core/v1:ServiceAccount", "label-studio").manifest()
    assert ksa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": account}
    return on(check, role=lab.reader.role, member=lab.reader.member, condition=lab.reader.condition,
              binding_member=lab.binding.member)


def test_the_labeler_holds_nothing_else(lab_run):
    grants = [reveal(r.inputs) for r in lab_run.registrations if r.type in (BUCKET_IAM, SA_IAM)
              or "IAMMember" in r.type]
    mine = [g["role"] for g in grants if "orbit-labeler@" in str(g.get("member"))]
    assert mine == ["roles/storage.objectViewer"]


def test_pods_are_hardened_like_the_model_service(lab_run):
    for m in labeling_objects(lab_run):
        if m["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = m["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert "limits" in c["resources"] and c["livenessProbe"] and c["readinessProbe"]


def test_every_labeling_object_passes_the_schemas_and_the_policies(lab_run):
    objects = labeling_objects(lab_run)
    assert sorted(m["kind"] for m in objects) == [
        "Deployment", "Namespace", "NetworkPolicy", "NetworkPolicy", "Secret", "Service", "Service",
        "ServiceAccount", "ServiceAccount", "StatefulSet"]
    for m in objects:
        kubernetes_validate.validate(m, KUBERNETES_VERSION, strict=True)
    found = [(r.type, r.name, v) for r in lab_run.resources
             for v in violations(r.type, reveal(r.inputs), r.name)]
    assert found == []
    assert stack_violations([(r.type, reveal(r.inputs)) for r in lab_run.resources]) == []


def test_a_root_database_pod_would_be_refused(lab_run):
    db = lab_run.one(STATEFULSET).manifest()
    db["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    del db["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]
    assert "k8s-run-as-non-root" in {n for n, _ in violations(STATEFULSET, db)}


def test_label_studio_waits_for_its_database(lab_run):
    assert lab_run.one(STATEFULSET).urn in lab_run.one(DEPLOYMENT, "label-studio").dependencies


@pytest.mark.parametrize("change, key", [
    ({"orbit:labelStudioImage": None}, "orbit:labelStudioImage"),
    ({"orbit:labelStudioPostgresImage": None}, "orbit:labelStudioPostgresImage"),
    ({"orbit:labelStudioImage": "heartexlabs/label-studio:1.23.2"}, "orbit:labelStudioImage"),
    ({"orbit:labelStudioPostgresImage": "postgres:latest"}, "orbit:labelStudioPostgresImage"),
    ({"orbit:labelStudioDiskGb": 0}, "orbit:labelStudioDiskGb"),
])
def test_bad_labeling_config_is_named(change, key):
    values = {**read_stack_file("dev", FIXTURES), **ENABLED, **change}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse(values, "dev", SECRETS)
    assert info.value.keys == [key]
