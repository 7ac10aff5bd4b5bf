"""orbit-guardrails, the policy pack `pulumi up --policy-pack infra/policy` enforces (docs/policies.md).

Import `infra.policy.rules` for the rules and `violations()`; `__main__.py` is only for the Pulumi CLI.
"""
