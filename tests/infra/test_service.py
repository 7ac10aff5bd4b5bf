"""The model service: pinned image, probes, limits, non-root read-only pods, rollouts, HPA, PDB, exposure."""

from __future__ import annotations

import pulumi

from infra import mocks
from infra.config import SERVING_UID
from infra.mocks import FAKE_LB_IP
from tests.infra.support import DEPLOYMENT, FIXTURES, RELEASE_DIGEST, RELEASE_TAG, on


def pod(spec) -> dict:
    return spec["template"]["spec"]


def container(spec) -> dict:
    (only,) = pod(spec)["containers"]
    return only


@pulumi.runtime.test
def test_image_is_the_registry_image_at_the_released_digest(stack_run):
    service = stack_run.platform.service
    assert stack_run.config.service.image_tag == RELEASE_TAG

    def check(spec, image, registry_path):
        # Pulled by digest (the tag is kept for people and the release history): a moved tag changes nothing.
        assert image == f"{registry_path}/planet-classifier:{RELEASE_TAG}@{RELEASE_DIGEST}"
        assert container(spec)["image"] == image and not image.endswith(":latest")
        assert stack_run.outputs["service_image"] == image

    return on(check, spec=service.deployment.spec, image=service.image,
              registry_path=stack_run.platform.registry.path)


@pulumi.runtime.test
def test_probes_hit_bentoml_health_endpoints(stack_run):
    def check(spec):
        c = container(spec)
        assert c["ports"] == [{"name": "http", "container_port": 3000, "protocol": "TCP"}]
        assert c["liveness_probe"]["http_get"] == {"path": "/livez", "port": "http"}
        assert c["readiness_probe"]["http_get"] == {"path": "/readyz", "port": "http"}
        assert c["startup_probe"]["http_get"]["path"] == "/livez"

    return on(check, spec=stack_run.platform.service.deployment.spec)


@pulumi.runtime.test
def test_requests_and_limits_follow_config(stack_run):
    s = stack_run.config.service

    def check(spec):
        assert container(spec)["resources"] == {
            "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
            "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
        }

    return on(check, spec=stack_run.platform.service.deployment.spec)


@pulumi.runtime.test
def test_pod_runs_non_root_on_a_read_only_root_filesystem(stack_run):
    def check(spec):
        p, c = pod(spec), container(spec)
        assert p["security_context"]["run_as_non_root"] is True
        # checkov CKV_K8S_40: a UID of 10000 or more, and the group the in-memory /tmp is writable for.
        assert p["security_context"]["run_as_user"] == SERVING_UID >= 10000
        assert p["security_context"]["fs_group"] == p["security_context"]["run_as_group"] == SERVING_UID
        assert p["security_context"]["seccomp_profile"] == {"type": "RuntimeDefault"}
        assert c["security_context"] == {"allow_privilege_escalation": False,
                                         "read_only_root_filesystem": True, "run_as_non_root": True,
                                         "capabilities": {"drop": ["ALL"]}}
        # BentoML writes its Prometheus files under BENTOML_HOME: it must point into the writable emptyDir.
        assert c["volume_mounts"] == [{"name": "tmp", "mount_path": "/tmp"}]
        assert p["volumes"][0]["name"] == "tmp" and "empty_dir" in p["volumes"][0]
        assert {e["name"]: e["value"] for e in c["env"]}["BENTOML_HOME"].startswith("/tmp/")
        assert p["automount_service_account_token"] is False
        assert p["node_selector"] == {"cloud.google.com/gke-nodepool": "orbit-serving"}

    return on(check, spec=stack_run.platform.service.deployment.spec)


@pulumi.runtime.test
def test_rollout_never_drops_below_capacity_and_hpa_owns_replicas(stack_run):
    # ignore_changes is a resource option: it has no Output.
    assert "spec.replicas" in stack_run.one(DEPLOYMENT).ignore_changes

    def check(spec):
        assert spec["strategy"] == {"type": "RollingUpdate",
                                    "rolling_update": {"max_unavailable": 0, "max_surge": 1}}
        assert spec["replicas"] == stack_run.config.service.min_replicas

    return on(check, spec=stack_run.platform.service.deployment.spec)


@pulumi.runtime.test
def test_hpa_and_pdb(stack_run):
    s = stack_run.config.service
    service = stack_run.platform.service

    def check(hpa, pdb):
        assert hpa["scale_target_ref"] == {"api_version": "apps/v1", "kind": "Deployment",
                                           "name": "planet-classifier"}
        assert (hpa["min_replicas"], hpa["max_replicas"]) == (s.min_replicas, s.max_replicas)
        assert hpa["metrics"][0]["resource"] == {
            "name": "cpu", "target": {"type": "Utilization", "average_utilization": s.target_cpu}}
        assert pdb == {"max_unavailable": 1,
                       "selector": {"match_labels": {"app.kubernetes.io/name": "planet-classifier"}}}

    return on(check, hpa=service.autoscaler.spec, pdb=service.disruption_budget.spec)


@pulumi.runtime.test
def test_namespace_service_account_and_network_policy(stack_run):
    service = stack_run.platform.service

    def check(namespace, ksa, policy, serving_email):
        assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert ksa["annotations"] == {"iam.gke.io/gcp-service-account": serving_email}
        assert serving_email.startswith("orbit-serving@")
        assert policy["policy_types"] == ["Ingress"]
        assert policy["ingress"] == [{"ports": [{"port": 3000, "protocol": "TCP"}]}]

    return on(check, namespace=service.namespace.metadata, ksa=service.service_account.metadata,
              policy=service.network_policy.spec,
              serving_email=stack_run.platform.identity.serving_account.email)


@pulumi.runtime.test
def test_the_service_is_cluster_ip_and_its_url_follows_the_access_mode(stack_run):
    """dev (internal): the in-cluster name; prod (public): the gateway's https://<domain> (docs/edge.md)."""
    service = stack_run.platform.service
    edge = stack_run.config.edge

    def check(spec, metadata, url):
        assert spec["type"] == "ClusterIP"
        assert spec["ports"] == [{"name": "http", "port": 80, "target_port": "http", "protocol": "TCP"}]
        if edge.exposed:
            assert url == f"https://{edge.domain}"
            assert metadata["annotations"] == {"cloud.google.com/neg": '{"ingress": true}'}
        else:
            assert url == "http://planet-classifier.serving.svc.cluster.local"
            assert not metadata.get("annotations")
        assert url == stack_run.outputs["service_url"]

    return on(check, spec=service.service.spec, metadata=service.service.metadata, url=service.url)


@pulumi.runtime.test
def test_cluster_ip_service_gives_the_in_cluster_url(run_with):
    service = run_with("dev", {"orbit:serviceType": "ClusterIP"}).platform.service

    def check(spec, url):
        assert spec["type"] == "ClusterIP"
        assert url == "http://planet-classifier.serving.svc.cluster.local"

    return on(check, spec=service.service.spec, url=service.url)


@pulumi.runtime.test
def test_a_load_balancer_of_an_internal_stack_stays_in_the_vpc(run_with):
    service = run_with("dev", {"orbit:serviceType": "LoadBalancer",
                               "orbit:serviceSourceRanges": ["10.0.0.0/8"]}).platform.service

    def check(spec, metadata, url):
        assert spec["type"] == "LoadBalancer"
        assert metadata["annotations"] == {"networking.gke.io/load-balancer-type": "Internal"}
        assert spec["load_balancer_source_ranges"] == ["10.0.0.0/8"]
        assert url == f"http://{FAKE_LB_IP}"

    return on(check, spec=service.service.spec, metadata=service.service.metadata, url=service.url)


@pulumi.runtime.test
def test_the_first_up_has_no_service_and_empty_service_outputs(first_up_run):
    """The committed stack files carry no image tag: the first `up` creates everything but the service."""
    assert first_up_run.config.service.enabled is None and first_up_run.config.service.image_tag is None
    assert first_up_run.platform.service is None
    assert not first_up_run.of_type(DEPLOYMENT)

    def check(url, image):
        assert (url, image) == ("", "")

    outputs = first_up_run.platform.outputs
    return on(check, url=outputs["service_url"], image=outputs["service_image"])


def test_nobody_gets_kubernetes_rbac_from_the_service(stack_run):
    """CI no longer rolls out by kubectl: the deployer account's `pulumi up` does, so no Role is needed.

    Reads the registrations: the check is about which resource types exist, not about a property.
    """
    rbac = [(r.type, r.name) for r in stack_run.registrations if ":rbac.authorization.k8s.io/" in r.type]
    assert rbac == []


LIVE_IMAGE = ("europe-west1-docker.pkg.dev/my-gcp-project/orbit-images/planet-classifier:0ld7a9@sha256:"
              + "ab" * 32)


def plain_up(stack: str, live: dict, **overrides) -> mocks.MockRun:
    """`pulumi up` as a person runs it: the stack file only, after updates that left `live` as outputs."""
    return mocks.run(mocks.stack_config(stack, overrides, FIXTURES), live=live)


@pulumi.runtime.test
def test_a_plain_up_keeps_the_live_service_and_its_image():
    """No tag on the command line: the image the last update served stays, never removed or downgraded."""
    run = plain_up("dev", {"service_image": LIVE_IMAGE, "service_url": "http://198.51.100.7"})
    assert run.platform.service is not None

    def check(spec, image):
        assert image == LIVE_IMAGE
        assert container(spec)["image"] == LIVE_IMAGE
        assert run.outputs["service_image"] == LIVE_IMAGE  # the next plain `up` finds it again

    return on(check, spec=run.platform.service.deployment.spec, image=run.platform.service.image)


def test_the_first_plain_up_creates_no_service():
    run = plain_up("dev", {})
    assert run.platform.service is None and run.outputs["service_image"] == ""
    run = plain_up("dev", {"service_image": ""})  # an update that served nothing
    assert run.platform.service is None


def test_only_an_explicit_false_removes_the_live_service():
    run = plain_up("dev", {"service_image": LIVE_IMAGE}, **{"orbit:serviceEnabled": False})
    assert run.platform.service is None


@pulumi.runtime.test
def test_a_released_tag_replaces_the_live_image():
    run = mocks.run(mocks.stack_config("dev", {"orbit:serviceImageTag": "new1234",
                                               "orbit:serviceImageDigest": RELEASE_DIGEST}, FIXTURES),
                    live={"service_image": LIVE_IMAGE})

    def check(image):
        assert image.endswith(f"/planet-classifier:new1234@{RELEASE_DIGEST}")

    return on(check, image=run.platform.service.image)


@pulumi.runtime.test
def test_the_autoscaler_scales_up_at_once_and_down_slowly(stack_run):
    """Pods of the onnxruntime image serve about a second after they start: no scale-up window."""
    def check(spec):
        up, down = spec["behavior"]["scale_up"], spec["behavior"]["scale_down"]
        assert up["stabilization_window_seconds"] == 0 and up["select_policy"] == "Max"
        assert {(p["type"], p["value"]) for p in up["policies"]} == {("Percent", 100), ("Pods", 4)}
        assert down["stabilization_window_seconds"] == 300

    return on(check, spec=stack_run.platform.service.autoscaler.spec)


@pulumi.runtime.test
def test_the_pod_runs_one_worker_per_cpu_of_its_limit(stack_run):
    """ORBIT_WORKERS=cpu_count: BentoML reads the container's CPU quota, so orbit:serviceCpuLimit alone
    decides how many server processes share the pod (tests/serving checks the service takes the value)."""
    from infra.config import SERVICE_WORKERS

    def check(spec):
        env = {e["name"]: e["value"] for e in container(spec)["env"]}
        assert env["ORBIT_WORKERS"] == SERVICE_WORKERS == "cpu_count"
        assert container(spec)["resources"]["limits"]["cpu"], "cpu_count needs a CPU limit to count"

    return on(check, spec=stack_run.platform.service.deployment.spec)


@pulumi.runtime.test
def test_the_service_logs_its_predictions_to_the_data_bucket_and_has_time_to_flush(stack_run):
    """The prediction log goes to gs://<data bucket>/monitoring/ (the only place the serving account may
    write), and a rolling update leaves the log's final flush the time it may take."""
    from infra.components.service import LOG_CLOSE_TIMEOUT_S

    def check(spec, bucket):
        env = {e["name"]: e["value"] for e in container(spec)["env"]}
        assert env["ORBIT_PREDICTION_LOG"] == f"gs://{bucket}"
        assert pod(spec)["termination_grace_period_seconds"] > LOG_CLOSE_TIMEOUT_S

    return on(check, spec=stack_run.platform.service.deployment.spec,
              bucket=stack_run.platform.bucket.bucket_name)
