"""Self-hosted GitHub Actions runners on the cluster: actions-runner-controller (ARC) and its scale sets.

Runner pods are created per job and deleted after it (ephemeral), on the Spot CI pool that scales to zero,
so an idle repository costs nothing. They act on Google Cloud as the runner service account through
Workload Identity, never with a key.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.cluster import CI_TAINT, GPU_TAINT, NODE_POOL_LABEL
from infra.config import ARC_SYSTEM_NAMESPACE, RUNNER_KSA, RUNNER_UID, RUNNERS_NAMESPACE, StackConfig

CHARTS = "oci://ghcr.io/actions/actions-runner-controller-charts"
CONTROLLER_RELEASE = "arc"
# The controller chart names its service account <release>-gha-rs-controller; the scale sets must be told.
CONTROLLER_SERVICE_ACCOUNT = f"{CONTROLLER_RELEASE}-gha-rs-controller"
GITHUB_SECRET = "github-app"
# The controller's image is distroless and runs as a numeric non-root user; harden its pod accordingly.
CONTROLLER_VALUES = {
    "replicaCount": 1,
    "flags": {"logLevel": "info"},
    "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}},
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
}


def runner_pod_spec(cfg: StackConfig, gpu: bool) -> dict[str, Any]:
    """The pod template of one runner: non-root, no privilege escalation, pinned image, bounded resources."""
    r, g = cfg.runners, cfg.cluster.gpu
    taint = GPU_TAINT if gpu else CI_TAINT
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": r.cpu, "memory": r.memory},
        "limits": {"cpu": r.cpu, "memory": r.memory},
    }
    node_selector = {NODE_POOL_LABEL: cfg.name("gpu" if gpu else "ci")}
    if gpu:
        resources["requests"]["nvidia.com/gpu"] = str(g.count)
        resources["limits"]["nvidia.com/gpu"] = str(g.count)
        node_selector["cloud.google.com/gke-accelerator"] = g.accelerator
    return {
        "serviceAccountName": RUNNER_KSA,
        "nodeSelector": node_selector,
        "tolerations": [{"key": taint[0], "operator": "Equal", "value": taint[1], "effect": "NoSchedule"}],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "runner",
            "image": r.runner_image,
            "command": ["/home/runner/run.sh"],
            "resources": resources,
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
    }


def scale_set_values(cfg: StackConfig, gpu: bool) -> dict[str, Any]:
    r = cfg.runners
    return {
        "githubConfigUrl": cfg.github.url,
        "githubConfigSecret": GITHUB_SECRET,
        # What workflows put in `runs-on:`.
        "runnerScaleSetName": cfg.name("gpu" if gpu else "cpu"),
        "minRunners": 0,
        "maxRunners": r.max_gpu_runners if gpu else r.max_cpu_runners,
        "controllerServiceAccount": {"namespace": ARC_SYSTEM_NAMESPACE, "name": CONTROLLER_SERVICE_ACCOUNT},
        "template": {"spec": runner_pod_spec(cfg, gpu)},
    }


class Runners(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, runner_email: pulumi.Input[str], provider: k8s.Provider,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:runners:Runners", name, None, opts)
        r = cfg.runners
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = {"app.kubernetes.io/part-of": "orbit", "app.kubernetes.io/managed-by": "pulumi"}

        # Pod Security "baseline" is enforced (no privileged pods, no host namespaces or paths) and
        # "restricted" reported: the listener pods ARC creates in arc-systems, and job steps in arc-runners,
        # are not all under our control.
        pod_security = {"pod-security.kubernetes.io/enforce": "baseline",
                        "pod-security.kubernetes.io/warn": "restricted",
                        "pod-security.kubernetes.io/audit": "restricted"}
        self.system_namespace = k8s.core.v1.Namespace(
            "arc-systems",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ARC_SYSTEM_NAMESPACE, labels={**labels, **pod_security}),
            opts=child,
        )
        self.runners_namespace = k8s.core.v1.Namespace(
            "arc-runners",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=RUNNERS_NAMESPACE, labels={**labels, **pod_security}),
            opts=child,
        )
        in_runners = pulumi.ResourceOptions(parent=self, provider=provider,
                                            depends_on=[self.runners_namespace])
        self.github_secret = k8s.core.v1.Secret(
            "github-app",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GITHUB_SECRET, namespace=RUNNERS_NAMESPACE,
                                                labels=labels),
            type="Opaque",
            # The key names ARC expects; the private key never leaves Pulumi's secret handling.
            string_data={
                "github_app_id": r.app_id,
                "github_app_installation_id": r.installation_id,
                "github_app_private_key": pulumi.Output.secret(r.private_key).apply(_check_private_key),
            },
            opts=in_runners,
        )
        self.service_account = k8s.core.v1.ServiceAccount(
            "runner",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=RUNNER_KSA, namespace=RUNNERS_NAMESPACE, labels=labels,
                annotations={"iam.gke.io/gcp-service-account": runner_email},
            ),
            opts=in_runners,
        )
        self.controller = k8s.helm.v3.Release(
            "arc-controller",
            name=CONTROLLER_RELEASE,
            chart=f"{CHARTS}/gha-runner-scale-set-controller",
            version=r.chart_version,
            namespace=ARC_SYSTEM_NAMESPACE,
            values=CONTROLLER_VALUES,
            cleanup_on_fail=True,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.system_namespace]),
        )
        # Scale sets go after (and on destroy before) the controller, whose finalizers remove their runners.
        scale_set_opts = pulumi.ResourceOptions(
            parent=self, provider=provider,
            depends_on=[self.controller, self.github_secret, self.service_account],
        )
        def scale_set(gpu: bool) -> k8s.helm.v3.Release:
            kind = "gpu" if gpu else "cpu"
            return k8s.helm.v3.Release(
                f"{kind}-scale-set",
                name=cfg.name(kind),
                chart=f"{CHARTS}/gha-runner-scale-set",
                version=r.chart_version,
                namespace=RUNNERS_NAMESPACE,
                values=scale_set_values(cfg, gpu=gpu),
                cleanup_on_fail=True,
                opts=scale_set_opts,
            )

        self.cpu_scale_set = scale_set(gpu=False)
        self.gpu_scale_set = scale_set(gpu=True) if cfg.cluster.gpu.enabled else None
        self.runner_labels = [cfg.name("cpu")] + ([cfg.name("gpu")] if self.gpu_scale_set else [])
        self.register_outputs({"runs_on": self.runner_labels})


def _check_private_key(pem: str) -> str:
    """Fail the deployment (not GitHub, minutes later) when the secret is not a PEM private key."""
    text = pem.strip()
    if not (text.startswith("-----BEGIN") and "PRIVATE KEY-----" in text):
        raise pulumi.RunError(
            "orbit:githubAppPrivateKey is not a PEM private key; fix: "
            "pulumi config set --secret orbit:githubAppPrivateKey < your-app.private-key.pem"
        )
    return text + "\n"
