"""The whole program under mocks, every resource fed to the policy pack: zero violations, dev and prod.

These read the recorded inputs on purpose: they are exactly what the engine hands the policy pack.
"""

from __future__ import annotations

import copy

from infra.mocks import reveal
from infra.policy.rules import RULES, violations
from tests.infra.support import BUCKET, CLUSTER
from tests.infra.test_manifests import runner_pods


def all_violations(run) -> list[tuple]:
    found = []
    for r in run.resources:
        found += [(r.type, r.name, *v) for v in violations(r.type, reveal(r.inputs), r.name)]
    return found


def test_every_resource_passes_every_policy(stack_run):
    assert all_violations(stack_run) == []
    assert len(stack_run.resources) >= 40 and len(RULES) >= 20


def test_the_first_up_passes_every_policy_too(first_up_run):
    assert all_violations(first_up_run) == []
    assert len(first_up_run.resources) >= 35


def test_runner_pods_from_the_helm_values_pass_the_pod_policies(stack_run):
    for pod in runner_pods(stack_run):
        assert violations("kubernetes:core/v1:Pod", pod, pod["metadata"]["name"]) == []


def test_the_pack_does_see_what_the_program_registers(dev_run):
    """Guards the zero above: the same inputs, made public, must be reported."""
    bucket = copy.deepcopy(reveal(dev_run.one(BUCKET).inputs))
    bucket["publicAccessPrevention"] = "inherited"
    assert "storage-public-access-prevention" in {name for name, _ in violations(BUCKET, bucket)}


def test_the_pack_would_reject_the_cluster_without_authorized_networks(dev_run):
    """Guards the control-plane rule: the program's own cluster, opened to any address, is reported."""
    cluster = copy.deepcopy(reveal(dev_run.one(CLUSTER).inputs))
    closed = {"cidrBlocks": [], "gcpPublicCidrsAccessEnabled": False}
    assert cluster["masterAuthorizedNetworksConfig"] == closed
    del cluster["masterAuthorizedNetworksConfig"]
    assert {name for name, _ in violations(CLUSTER, cluster)} == {"gke-control-plane-restricted"}
