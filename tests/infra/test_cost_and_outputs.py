"""Cost controls (labels, budget) and the stack outputs CI reads."""

from __future__ import annotations

import pulumi

from infra.mocks import FAKE_PROJECT_NUMBER, reveal
from tests.infra.support import BUCKET, BUDGET, CLUSTER, NODE_POOL, REPOSITORY, on

# Where each labelled resource type keeps its labels.
LABELLED = {BUCKET: ("labels",), REPOSITORY: ("labels",), CLUSTER: ("resourceLabels",),
            NODE_POOL: ("nodeConfig", "resourceLabels")}


def test_every_labelled_resource_carries_the_stack_labels(stack_run):
    """A sweep over every registered resource of the labelled types (the policy pack sees the same inputs)."""
    checked = 0
    for r in stack_run.resources:
        if r.type in LABELLED:
            labels = reveal(r.inputs)
            for key in LABELLED[r.type]:
                labels = labels[key]
            assert labels == stack_run.config.labels, r.name
            checked += 1
    assert checked >= 5
    assert stack_run.config.labels["stack"] == stack_run.config.stack


def test_dev_has_no_budget(dev_run):
    assert dev_run.platform.cost.budget is None and not dev_run.of_type(BUDGET)


@pulumi.runtime.test
def test_prod_budget_alerts_at_thresholds_and_on_forecast(prod_run):
    b = prod_run.config.budget
    budget = prod_run.platform.cost.budget

    def check(account, amount, scope, thresholds, updates):
        assert account == b.billing_account
        assert amount["specified_amount"] == {"currency_code": "USD", "units": "500"}
        assert scope["projects"] == [f"projects/{FAKE_PROJECT_NUMBER}"]
        rules = {(r["threshold_percent"], r["spend_basis"]) for r in thresholds}
        assert rules == {(0.5, "CURRENT_SPEND"), (0.8, "CURRENT_SPEND"), (1.0, "CURRENT_SPEND"),
                         (1.0, "FORECASTED_SPEND")}
        assert updates["disable_default_iam_recipients"] is False

    return on(check, account=budget.billing_account, amount=budget.amount, scope=budget.budget_filter,
              thresholds=budget.threshold_rules, updates=budget.all_updates_rule)


@pulumi.runtime.test
def test_fractional_budget_amount_is_split_into_units_and_nanos(run_with):
    budget = run_with("prod", {"orbit:budgetAmount": 12.5}).platform.cost.budget

    def check(amount):
        assert amount["specified_amount"] == {"currency_code": "USD", "units": "12", "nanos": 500000000}

    return on(check, amount=budget.amount)


@pulumi.runtime.test
def test_outputs_ci_reads_are_all_there(stack_run):
    required = {"bucket_url", "registry_path", "cluster_name", "cluster_location",
                "workload_identity_provider", "ci_service_account", "service_url"}
    outputs = stack_run.platform.outputs
    assert required <= set(outputs)

    def check(values):
        for name in required:
            assert isinstance(values[name], str) and values[name], name
        assert values["cluster_name"] == "orbit-cluster"

    return pulumi.Output.all(**outputs).apply(check)


def test_every_google_resource_names_its_project(stack_run):
    """Nothing falls back to whatever project the provider happens to default to (a sweep over every
    registered resource: no single Output covers them all)."""
    without_project = {"gcp:storage/bucketIAMMember:BucketIAMMember",
                       "gcp:serviceaccount/iAMMember:IAMMember",
                       "gcp:billing/budget:Budget"}
    for r in stack_run.resources:
        if r.type.startswith("gcp:") and r.type not in without_project:
            assert r.inputs.get("project") == stack_run.config.project, r.type


def test_resources_live_in_components_that_register_outputs(stack_run, monitor):
    """parent is a resource option and register_outputs a monitor call: both only visible to the monitor."""
    components = {r.urn for r in stack_run.registrations if not r.custom}
    assert len(components) >= 8
    assert all(r.parent in components for r in stack_run.registrations if r.custom), "parent=self missing"
    assert components <= monitor.outputs_registered
