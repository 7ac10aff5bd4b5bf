"""The edge: how a request from the internet reaches the model, if it may at all (docs/edge.md).

`public` and `iap` stacks get a global external Application Load Balancer made by GKE's Gateway controller
(`gke-l7-global-external-managed`): HTTPS with a Google-managed certificate (Certificate Manager, DNS
authorization), HTTP answered with a redirect, and routes for the API only (POST /predict, POST
/predict_batch), so /metrics, the OpenAPI docs and the health endpoints stay inside the cluster. Cloud Armor
sits in front of the backend (per-client throttle answering 429, a body-size cap, the WAF rules that suit a
multipart image API) and, in `iap` mode, Identity-Aware Proxy admits only the principals listed in config.
`internal` stacks get none of this: the Service has no external address.

The Google-side pieces (address, certificate, Cloud Armor policy, IAP grants) exist from the first `pulumi up`
on, so DNS can be set up and the certificate issued before the first image is deployed; the Kubernetes
objects (Gateway, routes, policies) come with the model service.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.components.service import APP, SERVICE_PORT
from infra.config import SERVING_NAMESPACE, SERVING_PORT, StackConfig

GATEWAY_CLASS = "gke-l7-global-external-managed"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GKE_POLICY_API = "networking.gke.io/v1"
CERTMAP_ANNOTATION = "networking.gke.io/certmap"
# The only requests routed to the model from outside; everything else gets the load balancer's 404.
EXTERNAL_ROUTES = (("POST", "/predict"), ("POST", "/predict_batch"))
HEALTH_PATH = "/readyz"
IAP_ROLE = "roles/iap.httpsResourceAccessor"
IAP_SECRET = "orbit-iap-oauth"  # GKE reads the OAuth client secret from the key `key` of this Secret

# Cloud Armor rule priorities: lower runs first, and the first match decides. The throttle comes after the
# deny rules because a request under the limit is allowed by it (its conform action), ending evaluation.
PRIORITY_BODY_CAP = 1000
PRIORITY_WAF = 2000
PRIORITY_THROTTLE = 3000
PRIORITY_DEFAULT = 2147483647
# Preconfigured WAF rules that inspect what a multipart image upload carries as text: headers, URI, method.
# Rule sets aimed at text parameters (sqli, xss, lfi, rfi, rce, php, java, nodejs, sessionfixation) are left
# out: Cloud Armor also scans the first kilobytes of the body, and in a JPEG's bytes they find "attacks" that
# are not there, turning real uploads into 403s; the API has no text parameter they would protect.
WAF_RULES = (
    ("scannerdetection-v33-stable", "known vulnerability scanners (User-Agent and headers)"),
    ("protocolattack-v33-stable", "HTTP request smuggling, response splitting, header injection"),
    ("cve-canary", "Log4Shell-style JNDI lookups in headers and URI"),
)
WAF_SENSITIVITY = 1  # the fewest false positives; each rule set's paranoia level 1


def body_cap_expression(max_bytes: int) -> str:
    """CEL: a declared body larger than `max_bytes` (chunked uploads are capped by the service itself)."""
    return (f"has(request.headers['content-length']) && "
            f"int(request.headers['content-length']) > {max_bytes}")


def waf_expression(rule_set: str) -> str:
    return f"evaluatePreconfiguredWaf('{rule_set}', {{'sensitivity': {WAF_SENSITIVITY}}})"


def _under(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None,
           provider: k8s.Provider | None = None) -> pulumi.ResourceOptions:
    """Options of a child: its parent and what the parent waits for (Pulumi does not pass depends_on down)."""
    waits = opts.depends_on if opts else None
    waits = list(waits) if isinstance(waits, list | tuple) else [waits] if waits else []
    return pulumi.ResourceOptions(parent=parent, depends_on=waits, provider=provider)


def _expr(expression: str) -> gcp.compute.SecurityPolicyRuleMatchArgs:
    return gcp.compute.SecurityPolicyRuleMatchArgs(
        expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(expression=expression))


def _everyone() -> gcp.compute.SecurityPolicyRuleMatchArgs:
    return gcp.compute.SecurityPolicyRuleMatchArgs(
        versioned_expr="SRC_IPS_V1",
        config=gcp.compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=["*"]))


class ManagedCertificate(pulumi.ComponentResource):
    """A Google-managed certificate for the domain, proven by a CNAME (works before the A record exists)."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:ManagedCertificate", name, None, opts)
        domain = cfg.edge.domain
        child = _under(self, opts)
        self.dns_authorization = gcp.certificatemanager.DnsAuthorization(
            "edge", name=cfg.name("edge-dns-auth"), project=cfg.project, domain=domain, location="global",
            labels=cfg.labels, opts=child)
        self.certificate = gcp.certificatemanager.Certificate(
            "edge", name=cfg.name("edge-cert"), project=cfg.project, scope="DEFAULT", labels=cfg.labels,
            managed=gcp.certificatemanager.CertificateManagedArgs(
                domains=[domain], dns_authorizations=[self.dns_authorization.id]),
            opts=child)
        self.map = gcp.certificatemanager.CertificateMap(
            "edge", name=cfg.name("edge-certs"), project=cfg.project, labels=cfg.labels, opts=child)
        self.entry = gcp.certificatemanager.CertificateMapEntry(
            "edge", name=cfg.name("edge-cert-entry"), project=cfg.project, map=self.map.name,
            hostname=domain, certificates=[self.certificate.id], labels=cfg.labels, opts=child)
        # The record(s) to create at the DNS host before the certificate can be issued.
        self.dns_records = self.dns_authorization.dns_resource_records.apply(
            lambda records: [{"name": r.name, "type": r.type, "data": r.data} for r in records or []])
        self.register_outputs({"map": self.map.name, "dns_records": self.dns_records})


class ArmorPolicy(pulumi.ComponentResource):
    """The Cloud Armor policy of the backend: body cap, WAF, per-client throttle, then allow."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:ArmorPolicy", name, None, opts)
        e = cfg.edge
        rules = [
            gcp.compute.SecurityPolicyRuleArgs(
                priority=PRIORITY_BODY_CAP, action="deny(403)",
                match=_expr(body_cap_expression(e.max_body_bytes)),
                description=f"body over {e.max_body_bytes} bytes"),
            *[gcp.compute.SecurityPolicyRuleArgs(
                priority=PRIORITY_WAF + i, action="deny(403)", match=_expr(waf_expression(rule_set)),
                description=why[:64]) for i, (rule_set, why) in enumerate(WAF_RULES)],
            gcp.compute.SecurityPolicyRuleArgs(
                priority=PRIORITY_THROTTLE, action="throttle", match=_everyone(),
                description=f"{e.rate_limit_per_minute} requests/min per client IP",
                rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
                    conform_action="allow", exceed_action="deny(429)", enforce_on_key="IP",
                    rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                        count=e.rate_limit_per_minute, interval_sec=60))),
            gcp.compute.SecurityPolicyRuleArgs(
                priority=PRIORITY_DEFAULT, action="allow", match=_everyone(), description="default rule"),
        ]
        self.policy = gcp.compute.SecurityPolicy(
            "edge", name=cfg.name("edge-armor"), project=cfg.project, type="CLOUD_ARMOR",
            description="orbit: limits in front of the model service", rules=rules, opts=_under(self, opts))
        self.name = self.policy.name
        self.register_outputs({"name": self.name})


class IapAccess(pulumi.ComponentResource):
    """Who IAP lets through: `roles/iap.httpsResourceAccessor` for each listed principal.

    Granted on the project's IAP-protected backend services (web type compute): GKE names the backend
    service itself, so no narrower resource exists before the Gateway does.
    """

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:IapAccess", name, None, opts)
        self.members = [
            gcp.iap.WebTypeComputeIamMember(
                f"iap-{i}", project=cfg.project, role=IAP_ROLE, member=member, opts=_under(self, opts))
            for i, member in enumerate(cfg.edge.iap_members)
        ]
        self.register_outputs({"members": list(cfg.edge.iap_members)})


class GatewayFrontend(pulumi.ComponentResource):
    """The Gateway (HTTPS on 443 with the certificate map, HTTP on 80) and its two routes."""

    def __init__(self, name: str, cfg: StackConfig, address_name: pulumi.Input[str],
                 certificate_map: pulumi.Input[str], service_name: str, service_port: int,
                 provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:GatewayFrontend", name, None, opts)
        domain = cfg.edge.domain
        child = _under(self, opts, provider)
        gateway_name = cfg.name("edge")
        same_namespace = {"namespaces": {"from": "Same"}}
        self.gateway = k8s.apiextensions.CustomResource(
            "edge",
            api_version=GATEWAY_API, kind="Gateway",
            metadata={"name": gateway_name, "namespace": SERVING_NAMESPACE,
                      "annotations": {CERTMAP_ANNOTATION: certificate_map}},
            spec={
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {"name": "https", "protocol": "HTTPS", "port": 443, "allowedRoutes": same_namespace},
                    {"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": same_namespace},
                ],
                "addresses": [{"type": "NamedAddress", "value": address_name}],
            },
            opts=child,
        )
        after_gateway = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.gateway]))
        self.api_route = k8s.apiextensions.CustomResource(
            "edge-api",
            api_version=GATEWAY_API, kind="HTTPRoute",
            metadata={"name": f"{service_name}-api", "namespace": SERVING_NAMESPACE},
            spec={
                "parentRefs": [{"name": gateway_name, "sectionName": "https"}],
                "hostnames": [domain],
                "rules": [{
                    "matches": [{"path": {"type": "Exact", "value": path}, "method": method}
                                for method, path in EXTERNAL_ROUTES],
                    "backendRefs": [{"name": service_name, "port": service_port}],
                }],
            },
            opts=after_gateway,
        )
        self.redirect_route = k8s.apiextensions.CustomResource(
            "edge-redirect",
            api_version=GATEWAY_API, kind="HTTPRoute",
            metadata={"name": "http-to-https", "namespace": SERVING_NAMESPACE},
            spec={
                "parentRefs": [{"name": gateway_name, "sectionName": "http"}],
                "hostnames": [domain],
                "rules": [{"filters": [{"type": "RequestRedirect",
                                        "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
            },
            opts=after_gateway,
        )
        self.register_outputs({"gateway": gateway_name})


class BackendPolicies(pulumi.ComponentResource):
    """What the load balancer does at the Service: health check on /readyz, Cloud Armor, IAP."""

    def __init__(self, name: str, cfg: StackConfig, security_policy: pulumi.Input[str], service_name: str,
                 serving_port: int, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:BackendPolicies", name, None, opts)
        child = _under(self, opts, provider)
        target = {"group": "", "kind": "Service", "name": service_name}
        self.health_check = k8s.apiextensions.CustomResource(
            "edge-health",
            api_version=GKE_POLICY_API, kind="HealthCheckPolicy",
            metadata={"name": service_name, "namespace": SERVING_NAMESPACE},
            spec={
                "default": {
                    "checkIntervalSec": 5, "timeoutSec": 2, "healthyThreshold": 1, "unhealthyThreshold": 3,
                    "config": {"type": "HTTP",
                               "httpHealthCheck": {"port": serving_port, "requestPath": HEALTH_PATH}},
                },
                "targetRef": target,
            },
            opts=child,
        )
        backend: dict[str, Any] = {
            "securityPolicy": security_policy,
            # /predict_batch of 64 images on a cold pod takes a while; the default is 30 s.
            "timeoutSec": 60,
            # Cloud Armor's decisions (429s, 403s) are only logged when the backend service logs.
            "logging": {"enabled": True, "sampleRate": 1_000_000},
        }
        self.iap_secret = None
        if cfg.edge.access == "iap":
            self.iap_secret = k8s.core.v1.Secret(
                "edge-iap",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=IAP_SECRET, namespace=SERVING_NAMESPACE),
                type="Opaque",
                string_data={"key": cfg.edge.iap_client_secret},
                opts=child,
            )
            backend["iap"] = {"enabled": True, "clientID": cfg.edge.iap_client_id,
                              "oauth2ClientSecret": {"name": IAP_SECRET}}
        self.backend_policy = k8s.apiextensions.CustomResource(
            "edge-backend",
            api_version=GKE_POLICY_API, kind="GCPBackendPolicy",
            metadata={"name": service_name, "namespace": SERVING_NAMESPACE},
            spec={"default": backend, "targetRef": target},
            opts=child if self.iap_secret is None else pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[self.iap_secret])),
        )
        self.register_outputs({"security_policy": security_policy})


class Edge(pulumi.ComponentResource):
    """The whole edge of a `public` or `iap` stack; the Kubernetes half only once `service` exists."""

    def __init__(self, name: str, cfg: StackConfig, provider: k8s.Provider, service: Any | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:edge:Edge", name, None, opts)
        if not cfg.edge.exposed:
            raise ValueError(f"orbit:serviceAccess {cfg.edge.access} has no edge")
        child = _under(self, opts)  # the Google side waits for the APIs the stack enables
        self.address = gcp.compute.GlobalAddress(
            "edge", name=cfg.name("edge-ip"), project=cfg.project, address_type="EXTERNAL",
            ip_version="IPV4", labels=cfg.labels, opts=child)
        self.certificate = ManagedCertificate("certificate", cfg, opts=child)
        self.armor = ArmorPolicy("armor", cfg, opts=child)
        self.iap = IapAccess("iap", cfg, opts=child) if cfg.edge.access == "iap" else None
        self.frontend = self.backend = None
        if service is not None:
            k8s_child = pulumi.ResourceOptions(parent=self, depends_on=[service.service])  # not the APIs
            self.frontend = GatewayFrontend("frontend", cfg, self.address.name, self.certificate.map.name,
                                            APP, SERVICE_PORT, provider, opts=k8s_child)
            self.backend = BackendPolicies("backend", cfg, self.armor.name, APP, SERVING_PORT, provider,
                                           opts=k8s_child)
        self.ip = self.address.address
        self.url = f"https://{cfg.edge.domain}" if service is not None else ""
        self.dns_records = pulumi.Output.all(self.certificate.dns_records, self.ip).apply(
            lambda a: [{"name": f"{cfg.edge.domain}.", "type": "A", "data": a[1]}, *a[0]])
        self.register_outputs({"ip": self.ip, "url": self.url, "dns_records": self.dns_records})


# What `make plan` shows of each edge resource (infra/plan.py): the inputs a reviewer reads.
PLAN_PROPERTIES: dict[str, tuple[str, ...]] = {
    "gcp:compute/globalAddress:GlobalAddress": ("name", "addressType"),
    "gcp:compute/securityPolicy:SecurityPolicy": ("name", "type", "rules"),
    "gcp:certificatemanager/dnsAuthorization:DnsAuthorization": ("name", "domain"),
    "gcp:certificatemanager/certificate:Certificate": ("name", "managed.domains"),
    "gcp:certificatemanager/certificateMap:CertificateMap": ("name",),
    "gcp:certificatemanager/certificateMapEntry:CertificateMapEntry": ("name", "hostname"),
    f"kubernetes:{GATEWAY_API}:Gateway": ("metadata.name", "spec.gatewayClassName", "spec.listeners"),
    f"kubernetes:{GATEWAY_API}:HTTPRoute": ("metadata.name", "spec.hostnames", "spec.parentRefs"),
    f"kubernetes:{GKE_POLICY_API}:HealthCheckPolicy": ("metadata.name",
                                                       "spec.default.config.httpHealthCheck.requestPath"),
    f"kubernetes:{GKE_POLICY_API}:GCPBackendPolicy": ("metadata.name", "spec.default.securityPolicy",
                                                      "spec.default.iap.enabled"),
}
