"""The model service on GKE: the BentoML image by digest, autoscaled, disruption-budgeted, exposed.

The pod runs as a high non-root UID (config.SERVING_UID) with a read-only root filesystem; BentoML's only
runtime writes (Prometheus multiprocess files under BENTOML_HOME) and any temp files go to an in-memory
emptyDir.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.cluster import NODE_POOL_LABEL, field
from infra.config import (
    SERVICE_WORKERS,
    SERVING_KSA,
    SERVING_NAMESPACE,
    SERVING_PORT,
    SERVING_UID,
    StackConfig,
)

APP = "planet-classifier"
SELECTOR = {"app.kubernetes.io/name": APP}
LABELS = {**SELECTOR, "app.kubernetes.io/part-of": "orbit", "app.kubernetes.io/managed-by": "pulumi"}
SERVICE_PORT = 80


#: serving's PredictionLog waits up to 60 s on shutdown to flush the last records to the bucket.
LOG_CLOSE_TIMEOUT_S = 60


def pod_spec(cfg: StackConfig, image: pulumi.Input[str], prediction_log: pulumi.Input[str]) -> dict[str, Any]:
    s = cfg.service
    # Tuned for the onnxruntime image (no TensorFlow: a few hundred MB instead of 2.45 GB, ready about a
    # second after start instead of 5-13 s): readiness is polled every 2 s so a new pod takes traffic
    # within ~2 s of being ready, and the startup probe allows 60 s (2 s x 30) for a slow node or image
    # pull before liveness takes over. With the TensorFlow image, raise startupProbe.failureThreshold.
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "timeoutSeconds": 2,
             "failureThreshold": 3}
    return {
        "serviceAccountName": SERVING_KSA,
        # Workload Identity needs no token in the pod, and the service never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "nodeSelector": {NODE_POOL_LABEL: cfg.name("serving")},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVING_UID,
            "runAsGroup": SERVING_UID,
            "fsGroup": SERVING_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Spread replicas over nodes (and zones when regional) so one node loss is not an outage.
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": SELECTOR}}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
        # Room for the prediction log's final flush after SIGTERM (a rolling update loses no record).
        "terminationGracePeriodSeconds": LOG_CLOSE_TIMEOUT_S + 15,
        "containers": [{
            "name": "bentoml",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
            "env": [
                {"name": "BENTOML_HOME", "value": "/tmp/bentoml"},
                {"name": "HOME", "value": "/tmp"},
                # Every prediction is logged under gs://BUCKET/monitoring/ (docs/monitoring.md); the serving
                # account may only create objects there (infra/components/monitoring.py).
                {"name": "ORBIT_PREDICTION_LOG", "value": prediction_log},
                {"name": "ORBIT_WORKERS", "value": SERVICE_WORKERS},  # follows orbit:serviceCpuLimit
            ],
            "resources": {
                "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
                "limits": {"cpu": s.cpu_limit, "memory": s.memory_limit},
            },
            # The startup probe holds liveness off until the model is loaded (about 1 s with onnxruntime).
            "startupProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 2,
                             "failureThreshold": 30},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10,
                              "timeoutSeconds": 3, "failureThreshold": 3},
            "readinessProbe": probe,
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}],
    }


class ModelService(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, image: pulumi.Input[str],
                 serving_email: pulumi.Input[str], provider: k8s.Provider,
                 bucket_name: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:service:ModelService", name, None, opts)
        s = cfg.service
        meta = dict(namespace=SERVING_NAMESPACE, labels=LABELS)

        self.namespace = k8s.core.v1.Namespace(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVING_NAMESPACE, labels={
                **LABELS, "pod-security.kubernetes.io/enforce": "restricted"}),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.namespace])
        self.service_account = k8s.core.v1.ServiceAccount(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SERVING_KSA, **meta, annotations={"iam.gke.io/gcp-service-account": serving_email}),
            automount_service_account_token=False,
            opts=child,
        )
        # registry/name:tag@sha256:... (infra/live.py): pulled by digest.
        self.image = pulumi.Output.from_input(image)
        self.deployment = k8s.apps.v1.Deployment(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP, **meta),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=s.min_replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=SELECTOR),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    # Never below the current capacity during a rollout: a new pod must be ready first.
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
                ),
                revision_history_limit=5,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=LABELS),
                    spec=pod_spec(cfg, self.image, pulumi.Output.concat("gs://", bucket_name)),
                ),
            ),
            # The HPA owns the replica count once the Deployment exists.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=[self.service_account], ignore_changes=["spec.replicas"])),
        )
        self.autoscaler = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP, **meta),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=APP),
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
                # A new pod serves ~1 s after it starts (onnxruntime image), so scaling up fast is cheap and
                # right for bursts: no stabilisation window, up to double (or +4 pods) every 15 s. Down stays
                # cautious (Kubernetes' default 5 min window), so a burst does not flap the replica count.
                behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                    scale_up=k8s.autoscaling.v2.HPAScalingRulesArgs(
                        stabilization_window_seconds=0,
                        select_policy="Max",
                        policies=[
                            k8s.autoscaling.v2.HPAScalingPolicyArgs(type=kind, value=value, period_seconds=15)
                            for kind, value in (("Percent", 100), ("Pods", 4))
                        ],
                    ),
                    scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(stabilization_window_seconds=300),
                ),
                metrics=[k8s.autoscaling.v2.MetricSpecArgs(
                    type="Resource",
                    resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                        name="cpu",
                        target=k8s.autoscaling.v2.MetricTargetArgs(
                            type="Utilization", average_utilization=s.target_cpu),
                    ),
                )],
            ),
            opts=child,
        )
        # Voluntary disruptions (node upgrades, scale-down) take one pod at a time.
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP, **meta),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=SELECTOR)),
            opts=child,
        )
        # Only the HTTP port is reachable; nothing else in the cluster may talk to the pods.
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP, **meta),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=SELECTOR),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=SERVING_PORT, protocol="TCP")])],
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            "serving",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=APP, **meta, annotations=service_annotations(cfg)),
            spec=k8s.core.v1.ServiceSpecArgs(
                type=s.type,
                selector=SELECTOR,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=SERVICE_PORT, target_port="http",
                                                   protocol="TCP")],
                load_balancer_source_ranges=list(s.source_ranges) or None,
            ),
            opts=child,
        )
        self.url = service_url(cfg, self.service)
        self.register_outputs({"url": self.url, "image": self.image})


def service_annotations(cfg: StackConfig) -> dict[str, str] | None:
    """Behind the Gateway the load balancer reaches pods through NEGs; a LoadBalancer stays in the VPC."""
    if cfg.edge.exposed:
        return {"cloud.google.com/neg": '{"ingress": true}'}
    if cfg.service.type == "LoadBalancer":
        return {"networking.gke.io/load-balancer-type": "Internal"}
    return None


def service_url(cfg: StackConfig, service: k8s.core.v1.Service) -> pulumi.Output[str]:
    """https://<domain> behind the gateway; http://<internal LB IP> for a LoadBalancer; else the DNS name."""
    if cfg.edge.exposed:
        return pulumi.Output.from_input(f"https://{cfg.edge.domain}")
    if cfg.service.type != "LoadBalancer":
        return pulumi.Output.from_input(f"http://{APP}.{SERVING_NAMESPACE}.svc.cluster.local")

    def from_status(status: Any) -> str:
        ingresses = field(field(status, "load_balancer"), "ingress") if status else None
        if not ingresses:
            return ""  # not yet assigned (`pulumi up` waits for it, so only on preview)
        return f"http://{field(ingresses[0], 'ip') or field(ingresses[0], 'hostname')}"

    return service.status.apply(from_status)
