"""Cost controls: an optional monthly billing budget that e-mails the billing admins at set thresholds.

Labels, the other half of cost control, are applied by each component from `StackConfig.labels` and checked
by the policy pack and the tests; GKE's cost allocation (cluster component) carries them into billing.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


class CostControls(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:cost:CostControls", name, None, opts)
        b = cfg.budget
        self.budget = None
        if b.enabled:
            # Budgets filter by project number, not ID.
            project = gcp.organizations.get_project_output(project_id=cfg.project,
                                                           opts=pulumi.InvokeOutputOptions(parent=self))
            units, nanos = divmod(round(b.amount * 1e9), 10**9)
            self.budget = gcp.billing.Budget(
                "monthly",
                billing_account=b.billing_account,
                display_name=f"{cfg.name('monthly')} ({cfg.project})"[:60],
                budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                    projects=[project.number.apply(lambda n: f"projects/{n}")],
                    calendar_period="MONTH",
                    credit_types_treatment="INCLUDE_ALL_CREDITS",
                ),
                amount=gcp.billing.BudgetAmountArgs(
                    specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                        currency_code=b.currency, units=str(units), nanos=nanos or None,
                    )
                ),
                threshold_rules=[
                    gcp.billing.BudgetThresholdRuleArgs(threshold_percent=t, spend_basis="CURRENT_SPEND")
                    for t in b.thresholds
                ]
                # A forecast crossing 100% warns before the money is spent.
                + [gcp.billing.BudgetThresholdRuleArgs(threshold_percent=1.0,
                                                       spend_basis="FORECASTED_SPEND")],
                all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(disable_default_iam_recipients=False),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"budget": self.budget.id if self.budget else None})
