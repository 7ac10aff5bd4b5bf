"""Every Kubernetes object the program creates, turned back into a manifest, passes the 1.32 schemas strictly.

Helm releases are not API objects, so the runner pod template they carry is checked as a Pod instead.
These read the recorded inputs on purpose: they are what the provider sends to the API server.
"""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from infra.mocks import reveal
from tests.infra.support import DEPLOYMENT, RELEASE

KUBERNETES_VERSION = "1.32.0"
CRD_GROUPS = {"gateway.networking.k8s.io", "networking.gke.io"}  # tools/k8s-schemas/validate.mjs
# Managed Prometheus: tools/k8s-schemas/podmonitoring-v1.schema.json, tests/infra/test_monitoring.py.
GMP_GROUP = "monitoring.googleapis.com"
EXPECTED_KINDS = {"Namespace", "Secret", "ServiceAccount", "Deployment", "Service", "HorizontalPodAutoscaler",
                  "PodDisruptionBudget", "NetworkPolicy"}


def manifests(run) -> list[dict]:
    """Objects of built-in kinds; the Gateway API and GKE policy CRDs are checked in test_edge.py, the
    PodMonitoring in test_monitoring.py."""
    return [m for m in (r.manifest() for r in run.registrations if r.is_kubernetes_object)
            if m["apiVersion"].split("/")[0] not in CRD_GROUPS | {GMP_GROUP}]


def runner_pods(run) -> list[dict]:
    pods = []
    for release in run.of_type(RELEASE):
        template = reveal(release.inputs).get("values", {}).get("template")
        if template:
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{release.name}-runner", "namespace": "arc-runners"},
                         "spec": template["spec"]})
    return pods


def test_the_program_creates_every_expected_kind(stack_run):
    assert {m["kind"] for m in manifests(stack_run)} == EXPECTED_KINDS


def test_every_object_passes_strict_schema_validation(stack_run):
    docs = manifests(stack_run)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert len(docs) >= 11


def test_runner_pod_templates_are_valid_pods(stack_run):
    pods = runner_pods(stack_run)
    assert len(pods) == (2 if stack_run.config.cluster.gpu.enabled else 1)
    for pod in pods:
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_manifests_reveal_secrets_and_use_integers(dev_run):
    (secret,) = [m for m in manifests(dev_run) if m["kind"] == "Secret"]
    assert secret["stringData"]["github_app_private_key"].startswith("-----BEGIN")
    deployment = dev_run.one(DEPLOYMENT).manifest()
    assert isinstance(deployment["spec"]["replicas"], int)


def test_the_validator_would_catch_a_misspelt_field(dev_run):
    """Guards the check above: strict mode must reject what the API server would."""
    broken = copy.deepcopy(dev_run.one(DEPLOYMENT).manifest())
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
