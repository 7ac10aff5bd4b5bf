"""The edge in each access mode (docs/edge.md): public (prod), iap, internal (dev), under the mocks.

Properties are checked on the Outputs of what the program built; the schema checks read the recorded inputs,
since they are what the provider sends to the API server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pulumi
import pytest

from infra import mocks, plan
from infra.components.edge import (
    EXTERNAL_ROUTES,
    GATEWAY_CLASS,
    IAP_ROLE,
    IAP_SECRET,
    PRIORITY_DEFAULT,
    PRIORITY_THROTTLE,
    WAF_RULES,
)
from infra.config import KEYS, SERVICE_MAX_UPLOAD_BYTES, ConfigError, parse, read_stack_file
from infra.mocks import FAKE_EDGE_IP, FAKE_PRIVATE_KEY, reveal
from tests.infra.support import K8S_SERVICE, on, props
from tests.infra.test_manifests import CRD_GROUPS, GMP_GROUP, KUBERNETES_VERSION

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "tools" / "k8s-schemas"
SECRET = {"orbit:githubAppPrivateKey": "fake"}

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
HEALTH = "kubernetes:networking.gke.io/v1:HealthCheckPolicy"
BACKEND = "kubernetes:networking.gke.io/v1:GCPBackendPolicy"
ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
IAP_MEMBER = "gcp:iap/webTypeComputeIamMember:WebTypeComputeIamMember"
EDGE_TYPES = (GATEWAY, ROUTE, HEALTH, BACKEND, ADDRESS, ARMOR, IAP_MEMBER,
              "gcp:certificatemanager/certificate:Certificate",
              "gcp:certificatemanager/dnsAuthorization:DnsAuthorization")

IAP = {
    "orbit:serviceAccess": "iap",
    "orbit:iapMembers": ["group:ml-team@example.org",
                         "serviceAccount:orbit-deployer@my-gcp-project-prod.iam.gserviceaccount.com"],
    "orbit:iapClientId": "123456789012-abc123.apps.googleusercontent.com",
}


@pytest.fixture(scope="session")
def iap_run(run_with):
    return run_with("prod", IAP)


@pytest.fixture(scope="session", params=["internal", "public", "iap"])
def mode_run(request, dev_run, prod_run, iap_run):
    """Each access mode as CI's deploy renders it: dev is internal, prod public, prod with IAP."""
    return {"internal": dev_run, "public": prod_run, "iap": iap_run}[request.param]


# ---------------------------------------------------------------------------------------------- internal
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_stacks_pick_their_modes(stack):
    cfg = parse(read_stack_file(stack), stack, SECRET)
    assert cfg.edge.access == {"dev": "internal", "prod": "public"}[stack]
    assert KEYS["orbit:serviceAccess"].default == "internal"  # a stack that says nothing exposes nothing


@pytest.mark.parametrize("typ", EDGE_TYPES)
def test_an_internal_stack_has_no_external_address_of_any_kind(dev_run, typ):
    assert dev_run.config.edge.access == "internal"
    assert dev_run.of_type(typ) == []
    assert props(dev_run, K8S_SERVICE)["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_internal_mode_is_the_same_for_any_stack(run_with, stack):
    run = run_with(stack, {"orbit:serviceAccess": "internal"})
    assert run.platform.edge is None
    assert run.outputs["service_url"] == "http://planet-classifier.serving.svc.cluster.local"
    assert (run.outputs["service_access"], run.outputs["edge_ip"], run.outputs["dns_records"]) == (
        "internal", "", [])


# ---------------------------------------------------------------------------------------------- public
@pulumi.runtime.test
def test_the_gateway_serves_https_with_the_certificate_map_and_the_reserved_address(prod_run):
    edge = prod_run.platform.edge

    def check(metadata, spec, map_name, address_name):
        assert spec["gatewayClassName"] == GATEWAY_CLASS == "gke-l7-global-external-managed"
        assert metadata["annotations"] == {"networking.gke.io/certmap": map_name}
        listeners = {(item["name"], item["protocol"], item["port"]) for item in spec["listeners"]}
        assert listeners == {("https", "HTTPS", 443), ("http", "HTTP", 80)}
        assert all(item["allowedRoutes"] == {"namespaces": {"from": "Same"}} for item in spec["listeners"])
        assert spec["addresses"] == [{"type": "NamedAddress", "value": address_name}]

    return on(check, metadata=edge.frontend.gateway.metadata, spec=edge.frontend.gateway.spec,
              map_name=edge.certificate.map.name, address_name=edge.address.name)


@pulumi.runtime.test
def test_only_the_api_is_routed_and_http_redirects_to_https(prod_run):
    frontend = prod_run.platform.edge.frontend
    domain = prod_run.config.edge.domain

    def check(api, redirect):
        assert api["parentRefs"] == [{"name": "orbit-edge", "sectionName": "https"}]
        assert api["hostnames"] == [domain] == ["planets.example.org"]
        (rule,) = api["rules"]
        routed = {(m["method"], m["path"]["type"], m["path"]["value"]) for m in rule["matches"]}
        assert routed == {("POST", "Exact", "/predict"), ("POST", "Exact", "/predict_batch")}
        assert {path for _, path in EXTERNAL_ROUTES} == {"/predict", "/predict_batch"}
        assert rule["backendRefs"] == [{"name": "planet-classifier", "port": 80}]
        assert redirect["parentRefs"] == [{"name": "orbit-edge", "sectionName": "http"}]
        redirect_to_https = {"type": "RequestRedirect",
                             "requestRedirect": {"scheme": "https", "statusCode": 301}}
        assert redirect["rules"] == [{"filters": [redirect_to_https]}]

    return on(check, api=frontend.api_route.spec, redirect=frontend.redirect_route.spec)


@pulumi.runtime.test
def test_the_load_balancer_checks_readyz_and_applies_cloud_armor(prod_run):
    edge = prod_run.platform.edge

    def check(health, backend, armor_name):
        target = {"group": "", "kind": "Service", "name": "planet-classifier"}
        assert health["targetRef"] == backend["targetRef"] == target
        assert health["default"]["config"] == {
            "type": "HTTP", "httpHealthCheck": {"port": 3000, "requestPath": "/readyz"}}
        assert backend["default"]["securityPolicy"] == armor_name == "orbit-edge-armor"
        assert backend["default"]["logging"]["enabled"] is True
        assert "iap" not in backend["default"]

    return on(check, health=edge.backend.health_check.spec, backend=edge.backend.backend_policy.spec,
              armor_name=edge.armor.name)


def _rules_by_priority(rules) -> dict[int, dict]:
    return {rule["priority"]: rule for rule in rules}


@pulumi.runtime.test
def test_cloud_armor_throttles_per_client_caps_the_body_and_runs_the_chosen_waf_rules(prod_run):
    e = prod_run.config.edge

    def check(rules):
        by_priority = _rules_by_priority(rules)
        throttle = by_priority[PRIORITY_THROTTLE]
        assert throttle["action"] == "throttle"
        assert throttle["rate_limit_options"] == {
            "conform_action": "allow", "exceed_action": "deny(429)", "enforce_on_key": "IP",
            "rate_limit_threshold": {"count": e.rate_limit_per_minute, "interval_sec": 60}}
        body = by_priority[min(by_priority)]
        assert body["action"] == "deny(403)"
        cap = f"int(request.headers['content-length']) > {e.max_body_bytes}"
        assert cap in body["match"]["expr"]["expression"]
        waf = [r["match"]["expr"]["expression"] for r in rules
               if "evaluatePreconfiguredWaf" in str(r["match"])]
        assert [expr.split("'")[1] for expr in waf] == [name for name, _ in WAF_RULES]
        # Rule sets for text parameters false-positive on binary bodies (edge.py says why).
        assert not any(kind in str(waf) for kind in ("sqli", "xss", "lfi", "rce"))
        # Deny and WAF rules come before the throttle: under the limit the throttle allows, ending evaluation.
        assert all(p < PRIORITY_THROTTLE for p, r in by_priority.items() if r["action"].startswith("deny"))
        assert by_priority[PRIORITY_DEFAULT]["action"] == "allow"
        # A refusal is a 4xx: 403 for the body cap and the WAF, 429 over the rate; never a 5xx.
        codes = {r["action"] for r in rules} | {throttle["rate_limit_options"]["exceed_action"]}
        assert codes == {"deny(403)", "throttle", "allow", "deny(429)"}

    return on(check, rules=prod_run.platform.edge.armor.policy.rules)


@pulumi.runtime.test
def test_the_rate_and_the_body_cap_follow_config(run_with):
    run = run_with("prod", {"orbit:edgeRateLimitPerMinute": 30, "orbit:edgeMaxBodyBytes": 2_000_000})

    def check(rules):
        by_priority = _rules_by_priority(rules)
        assert by_priority[PRIORITY_THROTTLE]["rate_limit_options"]["rate_limit_threshold"]["count"] == 30
        assert "> 2000000" in by_priority[min(by_priority)]["match"]["expr"]["expression"]

    return on(check, rules=run.platform.edge.armor.policy.rules)


@pulumi.runtime.test
def test_the_certificate_is_managed_for_the_domain_and_the_dns_records_are_an_output(prod_run):
    certificate = prod_run.platform.edge.certificate
    domain = prod_run.config.edge.domain

    def check(auth_domain, managed, auth_id, entry_host, entry_certs, cert_id, records):
        assert auth_domain == domain and entry_host == domain
        assert managed["domains"] == [domain] and managed["dns_authorizations"] == [auth_id]
        assert entry_certs == [cert_id]
        assert records[0] == {"name": f"{domain}.", "type": "A", "data": FAKE_EDGE_IP}
        assert records[1]["type"] == "CNAME" and records[1]["name"] == f"_acme-challenge.{domain}."
        assert prod_run.outputs["dns_records"] == records
        assert prod_run.outputs["edge_ip"] == FAKE_EDGE_IP
        assert prod_run.outputs["service_url"] == f"https://{domain}"
        assert prod_run.outputs["service_access"] == "public"

    return on(check, auth_domain=certificate.dns_authorization.domain,
              managed=certificate.certificate.managed,
              auth_id=certificate.dns_authorization.id, entry_host=certificate.entry.hostname,
              entry_certs=certificate.entry.certificates, cert_id=certificate.certificate.id,
              records=prod_run.platform.edge.dns_records)


def test_the_google_side_of_the_edge_exists_from_the_first_up(first_up_run):
    """The certificate can be issued (and DNS set up) before the first image is deployed."""
    exposed = first_up_run.config.edge.exposed
    for typ in (ADDRESS, ARMOR, "gcp:certificatemanager/certificate:Certificate"):
        assert len(first_up_run.of_type(typ)) == (1 if exposed else 0)
    for typ in (GATEWAY, ROUTE, HEALTH, BACKEND):
        assert first_up_run.of_type(typ) == []
    assert first_up_run.outputs["service_url"] == ""
    assert bool(first_up_run.outputs["dns_records"]) is exposed


def test_the_cluster_runs_the_gateway_controller(stack_run):
    cluster = props(stack_run, "gcp:container/cluster:Cluster")
    assert cluster["gatewayApiConfig"] == {"channel": "CHANNEL_STANDARD"}
    assert cluster["addonsConfig"]["httpLoadBalancing"] == {"disabled": False}


def test_the_edge_waits_for_its_api_and_for_the_service(prod_run):
    """depends_on is a resource option: read from the registrations (Pulumi does not pass it to children)."""
    api = next(r.urn for r in prod_run.of_type("gcp:projects/service:Service")
               if r.name == "certificatemanager")
    service = prod_run.one(K8S_SERVICE).urn
    for typ in (ADDRESS, ARMOR, "gcp:certificatemanager/certificate:Certificate",
                "gcp:certificatemanager/dnsAuthorization:DnsAuthorization"):
        assert api in prod_run.one(typ).dependencies, typ
    for typ in (GATEWAY, HEALTH, BACKEND):
        assert service in prod_run.one(typ).dependencies, typ


def test_edge_components_own_their_resources_and_register_outputs(prod_run, monitor):
    components = {r.urn: r for r in prod_run.registrations
                  if not r.custom and r.type.startswith("orbit:edge:")}
    assert {r.type for r in components.values()} == {
        "orbit:edge:Edge", "orbit:edge:ManagedCertificate", "orbit:edge:ArmorPolicy",
        "orbit:edge:GatewayFrontend", "orbit:edge:BackendPolicies"}
    assert set(components) <= monitor.outputs_registered
    for typ in EDGE_TYPES[:-1] if not prod_run.of_type(IAP_MEMBER) else EDGE_TYPES:
        for r in prod_run.of_type(typ):
            assert r.parent in components, (typ, r.name)


# ---------------------------------------------------------------------------------------------- iap
@pulumi.runtime.test
def test_iap_mode_turns_iap_on_with_the_client_and_admits_only_the_members(iap_run):
    edge = iap_run.platform.edge
    e = iap_run.config.edge
    assert len(edge.iap.members) == 2
    assert "iap.googleapis.com" in iap_run.platform.apis.services

    def check(backend, secret_data, secret_meta, members):
        assert backend["default"]["iap"] == {"enabled": True, "clientID": e.iap_client_id,
                                             "oauth2ClientSecret": {"name": IAP_SECRET}}
        assert backend["default"]["securityPolicy"] == "orbit-edge-armor"  # Cloud Armor stays in front
        assert secret_meta["name"] == IAP_SECRET and secret_meta["namespace"] == "serving"
        assert secret_data == {"key": FAKE_PRIVATE_KEY}
        assert sorted(map(tuple, members)) == sorted((IAP_ROLE, m) for m in IAP["orbit:iapMembers"])
        assert iap_run.outputs["service_url"] == "https://planets.example.org"

    return on(check, backend=edge.backend.backend_policy.spec,
              secret_data=edge.backend.iap_secret.string_data,
              secret_meta=edge.backend.iap_secret.metadata,
              members=pulumi.Output.all(*(pulumi.Output.all(m.role, m.member) for m in edge.iap.members)))


def test_the_iap_client_secret_stays_a_secret(iap_run):
    secret = iap_run.one("kubernetes:core/v1:Secret", "edge-iap")
    assert mocks.is_secret(secret.inputs["stringData"]) or mocks.is_secret(secret.inputs["stringData"]["key"])


# ---------------------------------------------------------------------------------------------- config
def values(**changes) -> dict:
    result = read_stack_file("prod")
    for key, value in changes.items():
        key = f"orbit:{key}"
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


@pytest.mark.parametrize(("change", "key", "fragment"), [
    ({"serviceDomain": None}, "orbit:serviceDomain", "missing: orbit:serviceAccess public serves HTTPS"),
    ({"serviceAccess": "iap", "serviceDomain": None}, "orbit:serviceDomain", "orbit:serviceAccess iap"),
    ({"serviceDomain": "https://planets.example.org"}, "orbit:serviceDomain", "is not a domain name"),
    ({"serviceType": "LoadBalancer"}, "orbit:serviceType", "would publish the pods in plain HTTP"),
    ({"serviceAccess": "open"}, "orbit:serviceAccess", "is not one of public, iap, internal"),
    ({"serviceAccess": "iap"}, "orbit:iapMembers", "iap admits nobody"),
    ({"serviceAccess": "iap", "iapMembers": ["group:ml@example.org"]}, "orbit:iapClientId", "missing"),
    ({"iapMembers": ["allUsers"]}, "orbit:iapMembers", "never allUsers"),
    ({"edgeMaxBodyBytes": SERVICE_MAX_UPLOAD_BYTES + 1}, "orbit:edgeMaxBodyBytes", "outside 1024..10485760"),
    ({"edgeRateLimitPerMinute": 0}, "orbit:edgeRateLimitPerMinute", "outside 1..100000"),
])
def test_bad_edge_config_is_refused_with_its_fix(change, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse(values(**change), "prod", SECRET)
    assert key in info.value.keys, str(info.value)
    message = str(info.value)
    assert fragment in message
    assert f"fix: {KEYS[key].fix()}" in message


def test_a_public_stack_without_a_domain_is_told_both_ways_out():
    with pytest.raises(ConfigError) as info:
        parse(values(serviceDomain=None), "prod", SECRET)
    message = str(info.value)
    assert "fix: pulumi config set orbit:serviceDomain planets.example.org" in message
    assert "pulumi config set orbit:serviceAccess internal" in message


def test_iap_needs_the_client_secret_as_a_secret():
    iap = values(serviceAccess="iap", iapMembers=["group:ml@example.org"],
                 iapClientId="123456789012-abc123.apps.googleusercontent.com")
    with pytest.raises(ConfigError) as info:
        parse(iap, "prod", SECRET)
    assert info.value.keys == ["orbit:iapClientSecret"]
    assert "pulumi config set --secret orbit:iapClientSecret < " in str(info.value)
    cfg = parse(iap, "prod", {**SECRET, "orbit:iapClientSecret": "s"})
    assert cfg.edge.access == "iap" and cfg.edge.iap_members == ("group:ml@example.org",)


# ---------------------------------------------------------------------------------------------- schemas
def custom_resources(run) -> list[dict]:
    return [m for m in (r.manifest() for r in run.registrations if r.is_kubernetes_object)
            if m["apiVersion"].split("/")[0] in CRD_GROUPS]


def validate_crds(objects: list[dict]) -> list[dict]:
    """Run tools/k8s-schemas/validate.mjs on `objects`; one result per object."""
    node = shutil.which("node")
    assert node, "Node.js is needed for the custom-resource schemas (Debian: apt-get install nodejs npm)"
    if not (SCHEMAS / "node_modules" / "@kubernetes-models" / "gke").is_dir():
        message = "the custom-resource schemas are not installed: run `make crd-schemas` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([node, str(SCHEMAS / "validate.mjs")], input=json.dumps(objects), text=True,
                          capture_output=True, timeout=300, cwd=REPO)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(objects), done.stderr
    assert done.returncode == (0 if all(r["ok"] for r in results) else 1), done.stderr
    return results


@pytest.fixture(scope="session")
def crd_results(prod_run, iap_run) -> dict[str, list[dict]]:
    """One validator run for every custom resource of the public and the iap render."""
    objects = {"public": custom_resources(prod_run), "iap": custom_resources(iap_run)}
    flat = validate_crds(objects["public"] + objects["iap"])
    return {"public": flat[:len(objects["public"])], "iap": flat[len(objects["public"]):]}


@pytest.mark.parametrize("mode", ["public", "iap"])
def test_every_gateway_api_and_gke_object_passes_its_schema(crd_results, mode):
    results = crd_results[mode]
    assert sorted(r["kind"] for r in results) == ["GCPBackendPolicy", "Gateway", "HTTPRoute", "HTTPRoute",
                                                  "HealthCheckPolicy"]
    assert [r for r in results if not r["ok"]] == []


def test_every_kubernetes_object_of_every_mode_is_schema_checked(mode_run, crd_results):
    """Built-in kinds by kubernetes-validate (strict), custom resources by the npm schemas: all checked."""
    objects = [r.manifest() for r in mode_run.registrations if r.is_kubernetes_object]
    custom = [m for m in objects if m["apiVersion"].split("/")[0] in CRD_GROUPS]
    for manifest in objects:
        if manifest not in custom and manifest["apiVersion"].split("/")[0] != GMP_GROUP:  # test_monitoring.py
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert len(custom) == {"internal": 0, "public": 5, "iap": 5}[mode_run.config.edge.access]


def test_the_schema_check_rejects_a_misspelt_field_a_wrong_value_and_an_unknown_kind(prod_run):
    """Guards the checks above: each pass of the validator must catch what it is there for."""
    objects = {r["kind"] + r["metadata"]["name"]: r for r in custom_resources(prod_run)}
    gateway = json.loads(json.dumps(objects["Gatewayorbit-edge"]))
    gateway["spec"]["listeners"][0]["hostnme"] = "planets.example.org"  # unknown field
    health = json.loads(json.dumps(objects["HealthCheckPolicyplanet-classifier"]))
    health["spec"]["default"]["config"]["type"] = "HTTPX"  # not an allowed value
    route = json.loads(json.dumps(objects["HTTPRouteplanet-classifier-api"]))
    route["spec"]["rules"][0]["matches"][0]["method"] = "post"  # methods are upper case
    unknown = {"apiVersion": "networking.gke.io/v1", "kind": "GCPFrontendMagic", "metadata": {"name": "x"}}
    results = validate_crds([gateway, health, route, unknown])
    assert [r["ok"] for r in results] == [False, False, False, False]
    assert "hostnme" in " ".join(results[0]["errors"])
    assert "no schema" in results[3]["errors"][0]


# ---------------------------------------------------------------------------------------------- plan
def test_the_plan_of_the_released_prod_stack_shows_the_https_edge(prod_run):
    text = plan.render(prod_run)
    for fragment in ("gatewayClassName: gke-l7-global-external-managed", "orbit:edge:Edge",
                     "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "service_url", "https://planets.example.org",
                     "gcp:compute/securityPolicy:SecurityPolicy", "managed.domains: ['planets.example.org']"):
        assert fragment in text, fragment


def test_plan_main_renders_a_release_with_an_image_tag(capsys):
    assert plan.main(["--stack", "prod", "--image-tag", "3f2c1ab"]) == 0
    out = capsys.readouterr().out
    assert "kubernetes:gateway.networking.k8s.io/v1:Gateway" in out
    assert "service_url                 https://planets.example.org" in out


def test_a_secret_never_reaches_the_recorded_plan_text(iap_run):
    text = plan.render(iap_run)
    assert FAKE_PRIVATE_KEY.splitlines()[1] not in text
    secret = reveal(iap_run.one("kubernetes:core/v1:Secret", "edge-iap").inputs)
    assert secret["stringData"]["key"] == FAKE_PRIVATE_KEY


# ---------------------------------------------------------------------------------------------- docs
EDGE_DOC = (REPO / "docs" / "edge.md").read_text()


def test_the_edge_guide_names_every_edge_key_and_only_real_ones():
    prefixes = ("serviceAccess", "serviceDomain", "edge", "iap")
    edge_keys = [k for k in KEYS if k.split(":")[1].startswith(prefixes)]
    assert len(edge_keys) == 7
    assert [k for k in edge_keys if f"orbit:{k.split(':')[1]}" not in EDGE_DOC] == []
    assert set(re.findall(r"\borbit:[A-Za-z]+", EDGE_DOC)) - set(KEYS) == set()


def test_the_edge_guide_uses_real_outputs_and_resource_names(prod_run, iap_run):
    used = set(re.findall(r"pulumi stack output (\w+)", EDGE_DOC))
    assert {"dns_records", "edge_ip", "cluster_name"} <= used <= set(prod_run.outputs)
    names = {props(prod_run, "gcp:certificatemanager/certificate:Certificate")["name"],
             props(prod_run, ARMOR)["name"], props(prod_run, ADDRESS)["name"],
             props(prod_run, GATEWAY)["metadata"]["name"], IAP_SECRET}
    assert names == {"orbit-edge-cert", "orbit-edge-armor", "orbit-edge-ip", "orbit-edge", "orbit-iap-oauth"}
    missing = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", EDGE_DOC)]
    assert missing == []
    assert props(iap_run, BACKEND)["spec"]["default"]["iap"]["oauth2ClientSecret"]["name"] == IAP_SECRET


def test_the_cloud_armor_table_matches_the_policy(prod_run):
    rows = re.findall(r"^\| (\d+|default) \| (.*?) \| `?([a-z]+(?:\(\d+\))?)`?", EDGE_DOC, re.M)
    rules = {int(r["priority"]): r for r in props(prod_run, ARMOR)["rules"]}
    documented = {int(p) if p.isdigit() else PRIORITY_DEFAULT: action for p, _, action in rows}
    assert documented == {p: r["action"] for p, r in rules.items()}
    for name, _ in WAF_RULES:
        assert f"`{name}`, sensitivity 1" in EDGE_DOC
    assert f"default {KEYS['orbit:edgeMaxBodyBytes'].default // 2**20} MiB" in EDGE_DOC


def test_the_guide_curls_only_routed_paths_and_metrics(prod_run):
    domain = prod_run.config.edge.domain
    paths = set(re.findall(rf"https://{re.escape(domain)}(/[a-z_]+)", EDGE_DOC))
    assert {path for _, path in EXTERNAL_ROUTES} | {"/metrics"} == paths
