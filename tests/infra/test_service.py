"""The model service: pinned image, probes, limits, non-root read-only pods, rollouts, HPA, PDB, exposure."""

from __future__ import annotations

import pulumi

from infra.config import BENTOML_UID
from infra.mocks import FAKE_LB_IP
from tests.infra.support import DEPLOYMENT, K8S_SERVICE, KSA, NAMESPACE, props

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def container(run) -> dict:
    (only,) = props(run, DEPLOYMENT)["spec"]["template"]["spec"]["containers"]
    return only


def test_image_is_the_registry_image_at_the_configured_tag(stack_run):
    cfg = stack_run.config
    image = container(stack_run)["image"]
    assert image == f"{stack_run.outputs['registry_path']}/planet-classifier:{cfg.service.image_tag}"
    assert not image.endswith(":latest")
    assert stack_run.outputs["service_image"] == image


def test_probes_hit_bentoml_health_endpoints(stack_run):
    c = container(stack_run)
    assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"


def test_requests_and_limits_follow_config(stack_run):
    s = stack_run.config.service
    assert container(stack_run)["resources"] == {
        "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
        "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
    }


def test_pod_runs_non_root_on_a_read_only_root_filesystem(stack_run):
    pod = props(stack_run, DEPLOYMENT)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BENTOML_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(stack_run)
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    # BentoML writes its Prometheus files under BENTOML_HOME: it must point into the writable emptyDir.
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["BENTOML_HOME"].startswith("/tmp/")
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": "orbit-serving"}


def test_rollout_never_drops_below_capacity_and_hpa_owns_replicas(stack_run):
    registration = stack_run.one(DEPLOYMENT)
    spec = props(stack_run, DEPLOYMENT)["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["replicas"] == stack_run.config.service.min_replicas
    assert "spec.replicas" in registration.ignore_changes


def test_hpa_and_pdb(stack_run):
    s = stack_run.config.service
    hpa = props(stack_run, HPA)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "planet-classifier"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (s.min_replicas, s.max_replicas)
    assert hpa["metrics"][0]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": s.target_cpu}}
    pdb = props(stack_run, PDB)["spec"]
    assert pdb == {"maxUnavailable": 1,
                   "selector": {"matchLabels": {"app.kubernetes.io/name": "planet-classifier"}}}


def test_namespace_service_account_and_network_policy(stack_run):
    labels = props(stack_run, NAMESPACE, "serving")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    ksa = props(stack_run, KSA, "serving")["metadata"]
    assert ksa["annotations"]["iam.gke.io/gcp-service-account"].startswith("orbit-serving@")
    policy = props(stack_run, NETPOL)["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 3000, "protocol": "TCP"}]}]


@pulumi.runtime.test
def test_load_balancer_by_default_and_its_url_is_an_output(stack_run):
    spec = props(stack_run, K8S_SERVICE)["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]

    def check(url):
        assert url == f"http://{FAKE_LB_IP}"
        assert stack_run.outputs["service_url"] == url

    return stack_run.platform.service.url.apply(check)


def test_cluster_ip_service_gives_the_in_cluster_url(run_with):
    run = run_with("dev", {"orbit:serviceType": "ClusterIP"})
    assert props(run, K8S_SERVICE)["spec"]["type"] == "ClusterIP"
    assert run.outputs["service_url"] == "http://planet-classifier.serving.svc.cluster.local"


def test_source_ranges_restrict_the_load_balancer(run_with):
    run = run_with("dev", {"orbit:serviceSourceRanges": ["203.0.113.0/24"]})
    assert props(run, K8S_SERVICE)["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_service_can_wait_for_its_first_image(run_with):
    run = run_with("dev", {"orbit:serviceEnabled": False, "orbit:serviceImageTag": None})
    assert not run.of_type(DEPLOYMENT) and run.outputs["service_url"] == ""


def test_nobody_gets_kubernetes_rbac_from_the_service(stack_run):
    """CI no longer rolls out by kubectl: the deployer account's `pulumi up` does, so no Role is needed."""
    rbac = [(r.type, r.name) for r in stack_run.registrations if ":rbac.authorization.k8s.io/" in r.type]
    assert rbac == []
