"""Edge resources as the engine sends them (camelCase, numbers as floats), for the policy tests.

test_policies.py adds the resource-rule cases to its tables; test_edge_policies.py uses the rest.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

SERVICE = "kubernetes:core/v1:Service"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
BACKEND_POLICY = "kubernetes:networking.gke.io/v1:GCPBackendPolicy"

ORBIT_LABELS = {"app.kubernetes.io/name": "planet-classifier", "app.kubernetes.io/part-of": "orbit"}


def service(kind: str = "ClusterIP", annotations: dict | None = None, labels: dict | None = None) -> dict:
    metadata: dict[str, Any] = {"name": "planet-classifier", "namespace": "serving",
                                "labels": ORBIT_LABELS if labels is None else labels}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"type": kind, "selector": {"app.kubernetes.io/name": "planet-classifier"},
                     "ports": [{"name": "http", "port": 80.0, "targetPort": "http", "protocol": "TCP"}]}}


def gateway(gateway_class: str = "gke-l7-global-external-managed", name: str = "orbit-edge") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "serving"},
            "spec": {"gatewayClassName": gateway_class,
                     "listeners": [{"name": "https", "protocol": "HTTPS", "port": 443.0}]}}


def api_route(matches: list | None = None, gateway_name: str = "orbit-edge") -> dict:
    if matches is None:
        matches = [{"path": {"type": "Exact", "value": "/predict"}, "method": "POST"},
                   {"path": {"type": "Exact", "value": "/predict_batch"}, "method": "POST"}]
    rule: dict[str, Any] = {"backendRefs": [{"name": "planet-classifier", "port": 80.0}]}
    if matches != "none":
        rule["matches"] = matches
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "planet-classifier-api", "namespace": "serving"},
            "spec": {"parentRefs": [{"name": gateway_name, "sectionName": "https"}],
                     "hostnames": ["planets.example.org"], "rules": [rule]}}


def redirect_route() -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "http-to-https", "namespace": "serving"},
            "spec": {"parentRefs": [{"name": "orbit-edge", "sectionName": "http"}],
                     "rules": [{"filters": [{"type": "RequestRedirect",
                                             "requestRedirect": {"scheme": "https", "statusCode": 301.0}}]}]}}


def backend_policy(security_policy: str | None = "orbit-edge-armor",
                   target: str = "planet-classifier") -> dict:
    default: dict[str, Any] = {"timeoutSec": 60.0}
    if security_policy is not None:
        default["securityPolicy"] = security_policy
    return {"apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy",
            "metadata": {"name": target, "namespace": "serving"},
            "spec": {"default": default, "targetRef": {"group": "", "kind": "Service", "name": target}}}


def stack(**replace: Any) -> list[tuple[str, dict]]:
    """The edge of a public stack: compliant unless a part is replaced (None drops it)."""
    parts = {"service": (SERVICE, service()), "gateway": (GATEWAY, gateway()), "api": (ROUTE, api_route()),
             "redirect": (ROUTE, redirect_route()), "policy": (BACKEND_POLICY, backend_policy())}
    for key, value in replace.items():
        if value is None:
            parts.pop(key)
        else:
            parts[key] = (parts[key][0], value)
    return [(typ, copy.deepcopy(props)) for typ, props in parts.values()]


RULE = "edge-no-plain-http-load-balancer"
RESOURCE_PASSES = [pytest.param(RULE, SERVICE, props, id=f"{RULE}:{label}") for props, label in [
    (service(), "cluster-ip"),
    (service("LoadBalancer", {"networking.gke.io/load-balancer-type": "Internal"}), "internal-lb"),
    (service("LoadBalancer", {"cloud.google.com/load-balancer-type": "Internal"}), "internal-lb-legacy"),
    (service("LoadBalancer", labels={"app": "someone-else"}), "not-orbit"),
]]
RESOURCE_REJECTS = [pytest.param(RULE, SERVICE, props, (), id=f"{RULE}:{label}") for props, label in [
    (service("LoadBalancer"), "external-lb"),
    (service("LoadBalancer", {"networking.gke.io/load-balancer-type": "External"}), "explicitly-external"),
]]
