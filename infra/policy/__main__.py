"""What the Pulumi CLI runs for `--policy-pack infra/policy`: serves orbit's rules to the engine.

Building the PolicyPack starts the analyzer's gRPC server and blocks, so nothing else imports this file.
The CLI runs this directory as a script (its folder first on sys.path), hence the top-level import.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import RULES, STACK_RULES

PolicyPack(
    "orbit-guardrails",
    policies=RULES + STACK_RULES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="orbit's guardrails: keyless, private, least-privilege, labelled; see docs/policies.md.",
)
