"""Self-hosted runners: ARC's two Helm charts, pinned, the GitHub App secret, CPU and GPU scale sets."""

from __future__ import annotations

import pulumi
import pytest

from infra.components.runners import CHARTS, CONTROLLER_SERVICE_ACCOUNT, _check_private_key
from infra.mocks import FAKE_PRIVATE_KEY, is_secret
from tests.infra.support import KSA, RELEASE, SECRET, on


def release(r) -> pulumi.Output:
    """The properties of a Helm release that the tests read, as one Output."""
    return pulumi.Output.all(name=r.name, chart=r.chart, version=r.version, namespace=r.namespace,
                             values=r.values)


@pulumi.runtime.test
def test_controller_chart_is_pinned_in_its_namespace(stack_run):
    def check(controller):
        assert controller["chart"] == f"{CHARTS}/gha-runner-scale-set-controller"
        assert controller["version"] == stack_run.config.runners.chart_version == "0.14.2"
        assert (controller["name"], controller["namespace"]) == ("arc", "arc-systems")

    return on(check, controller=release(stack_run.platform.runners.controller))


@pulumi.runtime.test
def test_cpu_scale_set_scales_from_zero_on_the_ci_pool(stack_run):
    r = stack_run.config.runners

    def check(scale_set):
        assert scale_set["chart"] == f"{CHARTS}/gha-runner-scale-set" and scale_set["version"] == "0.14.2"
        assert scale_set["namespace"] == "arc-runners"
        values = scale_set["values"]
        assert values["githubConfigUrl"] == "https://github.com/my-github-org/orbit"
        assert values["githubConfigSecret"] == "github-app"
        assert values["runnerScaleSetName"] == "orbit-cpu"
        assert values["minRunners"] == 0 and values["maxRunners"] == r.max_cpu_runners
        assert values["controllerServiceAccount"] == {"namespace": "arc-systems",
                                                      "name": CONTROLLER_SERVICE_ACCOUNT}
        spec = values["template"]["spec"]
        assert spec["serviceAccountName"] == "arc-runner"
        assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "orbit-ci"}
        assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ci",
                                        "effect": "NoSchedule"}]
        (runner,) = spec["containers"]
        assert runner["image"] == r.runner_image and not runner["image"].endswith(":latest")
        assert runner["resources"]["limits"] == {"cpu": r.cpu, "memory": r.memory}
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert runner["securityContext"]["allowPrivilegeEscalation"] is False

    return on(check, scale_set=release(stack_run.platform.runners.cpu_scale_set))


def test_scale_sets_install_after_the_controller_and_their_secret(stack_run):
    """depends_on is a resource option (no Output): read from the registrations."""
    needed = {stack_run.one(RELEASE, "arc-controller").urn, stack_run.one(SECRET, "github-app").urn,
              stack_run.one(KSA, "runner").urn}
    for scale_set in stack_run.of_type(RELEASE):
        if scale_set.name != "arc-controller":
            assert needed <= set(scale_set.dependencies), scale_set.name


@pulumi.runtime.test
def test_gpu_scale_set_only_when_the_gpu_pool_exists(dev_run, prod_run):
    assert dev_run.platform.runners.gpu_scale_set is None
    assert dev_run.outputs["runs_on"] == ["orbit-cpu"]
    assert prod_run.outputs["runs_on"] == ["orbit-cpu", "orbit-gpu"]
    gpu, runners = prod_run.config.cluster.gpu, prod_run.config.runners

    def check(scale_set):
        values = scale_set["values"]
        assert values["runnerScaleSetName"] == "orbit-gpu" and values["minRunners"] == 0
        assert values["maxRunners"] == runners.max_gpu_runners
        spec = values["template"]["spec"]
        assert spec["nodeSelector"] == {"cloud.google.com/gke-nodepool": "orbit-gpu",
                                        "cloud.google.com/gke-accelerator": gpu.accelerator}
        assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in \
            spec["tolerations"]
        resources = spec["containers"][0]["resources"]
        gpus = str(gpu.count)
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == gpus

    return on(check, scale_set=release(prod_run.platform.runners.gpu_scale_set))


@pulumi.runtime.test
def test_github_app_credentials_land_in_a_secret_kept_secret(stack_run):
    # Whether the value reached the engine wrapped as a secret is visible only in what was sent.
    assert is_secret(stack_run.one(SECRET, "github-app").inputs["stringData"])
    secret = stack_run.platform.runners.github_secret

    def check(metadata, data, data_is_secret):
        assert metadata["namespace"] == "arc-runners"
        assert data == {"github_app_id": "123456", "github_app_installation_id": "7654321",
                        "github_app_private_key": FAKE_PRIVATE_KEY}
        assert data_is_secret is True

    return on(check, metadata=secret.metadata, data=secret.string_data,
              data_is_secret=pulumi.Output.from_input(secret.string_data.is_secret()))


@pulumi.runtime.test
def test_runner_service_account_is_bound_to_the_runner_google_account(stack_run):
    def check(metadata, email):
        assert metadata["annotations"] == {"iam.gke.io/gcp-service-account": email}
        assert metadata["namespace"] == "arc-runners"
        assert email == stack_run.outputs["runner_service_account"]

    return on(check, metadata=stack_run.platform.runners.service_account.metadata,
              email=stack_run.platform.identity.runner_account.email)


@pytest.mark.parametrize("namespace", ["runners_namespace", "system_namespace"])
@pulumi.runtime.test
def test_runner_namespaces_enforce_pod_security(stack_run, namespace):
    def check(metadata):
        assert metadata["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"  # no privileged pods
        assert metadata["labels"]["pod-security.kubernetes.io/warn"] == "restricted"

    return on(check, metadata=getattr(stack_run.platform.runners, namespace).metadata)


@pulumi.runtime.test
def test_controller_pod_is_hardened(stack_run):
    def check(values):
        assert values["podSecurityContext"]["runAsNonRoot"] is True
        assert values["securityContext"]["allowPrivilegeEscalation"] is False
        assert values["resources"]["limits"]["memory"]

    return on(check, values=stack_run.platform.runners.controller.values)


def test_runners_can_be_left_out(run_with):
    run = run_with("dev", {"orbit:runnersEnabled": False})
    assert run.platform.runners is None
    assert not run.of_type(RELEASE) and not run.of_type(SECRET)
    assert run.outputs["runs_on"] == []


@pytest.mark.parametrize("bad", ["", "not a key",
                                 "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"])
def test_a_private_key_that_is_not_pem_fails_with_the_fix(bad):
    with pytest.raises(pulumi.RunError, match="pulumi config set --secret orbit:githubAppPrivateKey"):
        _check_private_key(bad)
    assert _check_private_key(FAKE_PRIVATE_KEY).endswith("PRIVATE KEY-----\n")
