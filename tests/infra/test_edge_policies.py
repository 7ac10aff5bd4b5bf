"""The edge's policy rules, each both ways, on hand-written resources and on the program's own render.

Stack rules see every resource at once (a route, its Gateway, the policy of its backend), so they are fed
whole stacks: the compliant edge of a public stack with one part changed.
"""

from __future__ import annotations

import copy

import pytest

from infra.mocks import reveal
from infra.policy.rules import STACK_RULES, stack_violations, violations
from tests.infra.edge_cases import (
    BACKEND_POLICY,
    ROUTE,
    SERVICE,
    api_route,
    backend_policy,
    gateway,
    service,
    stack,
)

ROUTES_RULE = "edge-routes-have-security-policy"
PATHS_RULE = "edge-internal-paths-not-routed"


def fired(resources) -> list[str]:
    return sorted(name for name, _ in stack_violations(resources))


def test_the_compliant_edge_passes_both_stack_rules():
    assert {ROUTES_RULE, PATHS_RULE} <= {p.name for p in STACK_RULES}  # + the log's (test_monitoring.py)
    assert stack_violations(stack()) == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"policy": None}, [ROUTES_RULE]),
    ({"policy": backend_policy(security_policy=None)}, [ROUTES_RULE]),
    ({"policy": backend_policy(target="another-service")}, [ROUTES_RULE]),
    # A route whose Gateway is not in the stack cannot be shown internal: it counts as external.
    ({"gateway": None, "policy": None}, [ROUTES_RULE]),
], ids=["no-policy", "policy-without-armor", "policy-on-another-service", "unknown-gateway"])
def test_an_external_route_without_cloud_armor_is_rejected(change, expected):
    found = stack_violations(stack(**change))
    assert sorted(name for name, _ in found) == expected
    assert "planet-classifier-api" in found[0][1] and "securityPolicy" in found[0][1]


def test_routes_of_an_internal_gateway_need_no_cloud_armor():
    internal = stack(gateway=gateway("gke-l7-rilb"), policy=None)
    assert stack_violations(internal) == []


@pytest.mark.parametrize("matches", [
    [{"path": {"type": "PathPrefix", "value": "/"}}],
    [{"path": {"type": "PathPrefix", "value": "/metrics"}, "method": "GET"}],
    [{"path": {"type": "Exact", "value": "/metrics"}}],
    [{"path": {"type": "RegularExpression", "value": "/(predict|metrics)"}}],
    [{"method": "GET"}],  # no path: PathPrefix /
    "none",  # no matches at all: everything
], ids=["prefix-root", "prefix-metrics", "exact", "regex", "method-only", "no-matches"])
def test_a_route_that_reaches_metrics_is_rejected(matches):
    found = stack_violations(stack(api=api_route(matches)))
    assert [name for name, _ in found] == [PATHS_RULE]
    assert "/metrics" in found[0][1]


@pytest.mark.parametrize("matches", [
    [{"path": {"type": "PathPrefix", "value": "/met"}}],  # element-wise prefix: not /metrics
    [{"path": {"type": "PathPrefix", "value": "/predict"}}],
    [{"path": {"type": "RegularExpression", "value": "/predict(_batch)?"}}],
], ids=["partial-segment", "predict-prefix", "regex"])
def test_routes_that_miss_metrics_pass(matches):
    assert stack_violations(stack(api=api_route(matches))) == []


def test_a_metrics_route_of_an_internal_gateway_passes_and_a_bad_regex_fails_closed():
    everything = api_route([{"path": {"type": "PathPrefix", "value": "/"}}])
    assert stack_violations(stack(gateway=gateway("gke-l7-rilb"), api=everything, policy=None)) == []
    broken = api_route([{"path": {"type": "RegularExpression", "value": "/(unclosed"}}])
    [(name, message)] = stack_violations(stack(api=broken))
    assert name == PATHS_RULE and "cannot be checked" in message


def test_the_resource_rule_names_the_service_and_the_fix():
    [(name, message)] = violations(SERVICE, service("LoadBalancer"))
    assert name == "edge-no-plain-http-load-balancer"
    assert "planet-classifier" in message and "ClusterIP" in message and "Internal" in message


def rendered(run) -> list[tuple[str, dict]]:
    return [(r.type, reveal(r.inputs)) for r in run.resources]


def test_the_public_stack_passes_the_stack_rules_and_they_see_its_edge(prod_run):
    """Guards the zero: the prod render has an external route, and breaking it is reported."""
    resources = rendered(prod_run)
    assert stack_violations(resources) == []
    assert [typ for typ, _ in resources].count(ROUTE) == 2
    without_armor = [(t, p) for t, p in resources if t != BACKEND_POLICY]
    assert fired(without_armor) == [ROUTES_RULE]
    opened = copy.deepcopy(resources)
    for typ, props in opened:
        if typ == ROUTE and props["spec"]["rules"][0].get("backendRefs"):
            props["spec"]["rules"][0]["matches"].append({"path": {"type": "PathPrefix", "value": "/"}})
    assert fired(opened) == [PATHS_RULE]


def test_the_iap_stack_passes_the_stack_rules_too(run_with):
    iap = run_with("prod", {"orbit:serviceAccess": "iap", "orbit:iapMembers": ["group:ml@example.org"],
                            "orbit:iapClientId": "123456789012-abc123.apps.googleusercontent.com"})
    resources = rendered(iap)
    assert stack_violations(resources) == []
    assert [typ for typ, _ in resources].count(BACKEND_POLICY) == 1


def test_the_program_service_would_be_rejected_as_an_external_load_balancer(prod_run):
    props = copy.deepcopy(reveal(prod_run.one(SERVICE).inputs))
    assert violations(SERVICE, props) == []
    props["spec"]["type"] = "LoadBalancer"
    props["metadata"].pop("annotations", None)
    assert [name for name, _ in violations(SERVICE, props)] == ["edge-no-plain-http-load-balancer"]
