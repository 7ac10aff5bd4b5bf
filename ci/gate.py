"""The regression gate: may this model replace the one on main (or the one in production)?

The tolerance lives in `params.yaml` under `gate:` so that loosening it is a reviewed change like any
other. The gate fails when the candidate's metric is below `min_value`, or more than `max_drop` below the
baseline; with no baseline (the first model) only `min_value` applies.

    python -m ci.gate --base-rev origin/main            # exit 0: pass, 1: fail, 2: cannot decide
    python -m ci.gate --dvc-diff metrics-diff.json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from ci.metrics import LOWER_IS_BETTER, MetricsError, MetricsPair, add_source_arguments, pair_from_args
from ml.params import GateParams, ParamsError, load_params

#: Float noise (0.9 - 0.89 = 0.010000000000000009) must not fail a drop of exactly max_drop.
EPSILON = 1e-9


@dataclass(frozen=True)
class Verdict:
    passed: bool
    metric: str
    value: float
    base: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        return None if self.base is None else self.value - self.base

    @property
    def headline(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: " + "; ".join(self.reasons)


def _metric(metrics: dict, name: str, side: str) -> float:
    value = metrics.get(name)
    if value is None:
        known = ", ".join(k for k, v in metrics.items() if isinstance(v, int | float)) or "none"
        raise MetricsError(
            f"gate.metric {name!r} is not in the {side} metrics (they have: {known}); "
            "fix gate.metric in params.yaml"
        )
    return float(value)


def decide(pair: MetricsPair, gate: GateParams) -> Verdict:
    """Apply `gate` to the pair; raises MetricsError when the metric cannot be compared at all."""
    if gate.metric in LOWER_IS_BETTER:
        raise MetricsError(
            f"gate.metric {gate.metric!r} is lower-is-better; the gate needs a score where "
            "higher is better (accuracy, f1_macro, precision_macro, recall_macro)"
        )
    value = _metric(pair.head, gate.metric, "candidate")
    base = None if pair.base is None else pair.base.get(gate.metric)
    base = None if base is None else float(base)
    reasons: list[str] = []
    passed = True
    if value + EPSILON < gate.min_value:
        passed = False
        reasons.append(f"{gate.metric} {value:.4f} is below gate.min_value {gate.min_value:.4f}")
    else:
        reasons.append(f"{gate.metric} {value:.4f} meets gate.min_value {gate.min_value:.4f}")
    if base is None:
        reasons.append(f"no baseline {gate.metric} on {pair.base_label}, so only min_value applies")
    else:
        drop = base - value
        if drop > gate.max_drop + EPSILON:
            passed = False
            reasons.append(
                f"{gate.metric} dropped {drop:.4f} against {pair.base_label} ({base:.4f} -> "
                f"{value:.4f}), more than gate.max_drop {gate.max_drop:.4f}"
            )
        else:
            change = f"{-drop:+.4f}"
            reasons.append(
                f"{gate.metric} changed {change} against {pair.base_label} ({base:.4f} -> "
                f"{value:.4f}), within gate.max_drop {gate.max_drop:.4f}"
            )
    return Verdict(passed=passed, metric=gate.metric, value=value, base=base, reasons=reasons)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.gate", description=__doc__.split("\n\n")[0])
    add_source_arguments(parser)
    parser.add_argument(
        "--params", default="params.yaml", help="where the gate: section is (default params.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        gate = load_params(args.params).gate
        verdict = decide(pair_from_args(args), gate)
    except (MetricsError, ParamsError) as exc:
        print(f"gate: cannot decide: {exc}", file=sys.stderr)
        return 2
    for reason in verdict.reasons:
        print(f"  - {reason}")
    print(f"gate: {verdict.headline}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
