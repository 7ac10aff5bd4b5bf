"""Self-hosted runners: ARC's two Helm charts, pinned, the GitHub App secret, CPU and GPU scale sets."""

from __future__ import annotations

import pulumi
import pytest

from infra.components.runners import CHARTS, CONTROLLER_SERVICE_ACCOUNT, _check_private_key
from infra.mocks import FAKE_PRIVATE_KEY, is_secret
from tests.infra.support import KSA, NAMESPACE, RELEASE, SECRET, props


def test_controller_chart_is_pinned_in_its_namespace(stack_run):
    cfg = stack_run.config
    controller = props(stack_run, RELEASE, "arc-controller")
    assert controller["chart"] == f"{CHARTS}/gha-runner-scale-set-controller"
    assert controller["version"] == cfg.runners.chart_version == "0.14.2"
    assert controller["name"] == "arc" and controller["namespace"] == "arc-systems"


def test_cpu_scale_set_scales_from_zero_on_the_ci_pool(stack_run):
    cfg = stack_run.config
    release = props(stack_run, RELEASE, "cpu-scale-set")
    assert release["chart"] == f"{CHARTS}/gha-runner-scale-set" and release["version"] == "0.14.2"
    assert release["namespace"] == "arc-runners"
    values = release["values"]
    assert values["githubConfigUrl"] == "https://github.com/my-github-org/orbit"
    assert values["githubConfigSecret"] == "github-app"
    assert values["runnerScaleSetName"] == "orbit-cpu"
    assert values["minRunners"] == 0 and values["maxRunners"] == cfg.runners.max_cpu_runners
    assert values["controllerServiceAccount"] == {"namespace": "arc-systems",
                                                  "name": CONTROLLER_SERVICE_ACCOUNT}
    spec = values["template"]["spec"]
    assert spec["serviceAccountName"] == "arc-runner"
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "orbit-ci"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ci",
                                    "effect": "NoSchedule"}]
    (runner,) = spec["containers"]
    assert runner["image"] == cfg.runners.runner_image and not runner["image"].endswith(":latest")
    assert runner["resources"]["limits"] == {"cpu": cfg.runners.cpu, "memory": cfg.runners.memory}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert runner["securityContext"]["allowPrivilegeEscalation"] is False


def test_scale_sets_install_after_the_controller_and_their_secret(stack_run):
    needed = {stack_run.one(RELEASE, "arc-controller").urn, stack_run.one(SECRET, "github-app").urn,
              stack_run.one(KSA, "runner").urn}
    for release in stack_run.of_type(RELEASE):
        if release.name != "arc-controller":
            assert needed <= set(release.dependencies), release.name


def test_gpu_scale_set_only_when_the_gpu_pool_exists(dev_run, prod_run):
    assert {r.name for r in dev_run.of_type(RELEASE)} == {"arc-controller", "cpu-scale-set"}
    assert dev_run.outputs["runs_on"] == ["orbit-cpu"]
    gpu = prod_run.config.cluster.gpu
    values = props(prod_run, RELEASE, "gpu-scale-set")["values"]
    assert values["runnerScaleSetName"] == "orbit-gpu" and values["minRunners"] == 0
    assert values["maxRunners"] == prod_run.config.runners.max_gpu_runners
    spec = values["template"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "orbit-gpu",
                                    "cloud.google.com/gke-accelerator": gpu.accelerator}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in \
        spec["tolerations"]
    resources = spec["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == str(gpu.count)
    assert prod_run.outputs["runs_on"] == ["orbit-cpu", "orbit-gpu"]


def test_github_app_credentials_land_in_a_secret_kept_secret(stack_run):
    registration = stack_run.one(SECRET, "github-app")
    assert is_secret(registration.inputs["stringData"]), "the private key must reach the engine as a secret"
    secret = props(stack_run, SECRET, "github-app")
    assert secret["metadata"]["namespace"] == "arc-runners"
    assert secret["stringData"] == {
        "github_app_id": "123456",
        "github_app_installation_id": "7654321",
        "github_app_private_key": FAKE_PRIVATE_KEY,
    }


def test_runner_service_account_is_bound_to_the_runner_google_account(stack_run):
    ksa = props(stack_run, KSA, "runner")
    assert ksa["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": stack_run.outputs["runner_service_account"]}
    assert ksa["metadata"]["namespace"] == "arc-runners"


@pytest.mark.parametrize("namespace", ["arc-runners", "arc-systems"])
def test_runner_namespaces_enforce_pod_security(stack_run, namespace):
    labels = props(stack_run, NAMESPACE, namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"  # no privileged pods, no host access
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_controller_pod_is_hardened(stack_run):
    values = props(stack_run, RELEASE, "arc-controller")["values"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    assert values["resources"]["limits"]["memory"]


def test_runners_can_be_left_out(run_with):
    run = run_with("dev", {"orbit:runnersEnabled": False})
    assert not run.of_type(RELEASE) and not run.of_type(SECRET)
    assert run.outputs["runs_on"] == []


@pytest.mark.parametrize("bad", ["", "not a key",
                                 "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"])
def test_a_private_key_that_is_not_pem_fails_with_the_fix(bad):
    with pytest.raises(pulumi.RunError, match="pulumi config set --secret orbit:githubAppPrivateKey"):
        _check_private_key(bad)
    assert _check_private_key(FAKE_PRIVATE_KEY).endswith("PRIVATE KEY-----\n")
