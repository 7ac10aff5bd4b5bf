"""The pull-request comment of the train workflow: what the change did to the model, and the gate's verdict.

    dvc metrics diff --all --json origin/main > metrics-diff.json
    python -m ci.report --dvc-diff metrics-diff.json --run-url URL --out report.md
    python -m ci.report --base-rev origin/main            # same, from the two metrics files

Reviewers see the headline metrics main vs this PR with deltas, the classes that moved most, where the
plots are, and the gate verdict computed from the same numbers by `ci.gate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ci.gate import Verdict, decide
from ci.metrics import (
    LOWER_IS_BETTER,
    PER_CLASS,
    SCALARS,
    MetricsError,
    MetricsPair,
    add_source_arguments,
    pair_from_args,
)
from ml.params import GateParams, ParamsError, load_params

#: A per-class change smaller than this is shown as unchanged (one image of 30 is 0.033).
NOISE = 0.005
PLOT_SUFFIXES = (".png", ".svg", ".html")


def _fmt(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    if key == "n_val":
        return str(int(value))
    return f"{value:.4f}"


def _delta(base: float | None, head: float | None, key: str) -> str:
    if base is None or head is None:
        return "new" if base is None and head is not None else "–"
    change = head - base
    if key == "n_val":
        return f"{int(change):+d}" if change else "0"
    if abs(change) < NOISE / 10:
        return "±0"
    better = change < 0 if key in LOWER_IS_BETTER else change > 0
    return f"{change:+.4f} {'▲' if better else '▼'}"


def _scalar_keys(pair: MetricsPair) -> list[str]:
    present = {k for side in (pair.base or {}, pair.head) for k, v in side.items() if k != PER_CLASS}
    return [k for k in SCALARS if k in present] + sorted(present - set(SCALARS))


def metrics_table(pair: MetricsPair) -> str:
    base = pair.base or {}
    rows = [f"| metric | {pair.base_label} | {pair.head_label} | change |", "|---|---:|---:|---:|"]
    for key in _scalar_keys(pair):
        b, h = base.get(key), pair.head.get(key)
        rows.append(f"| {key} | {_fmt(b, key)} | {_fmt(h, key)} | {_delta(b, h, key)} |")
    return "\n".join(rows)


def per_class_section(pair: MetricsPair) -> str:
    base = (pair.base or {}).get(PER_CLASS, {})
    head = pair.head.get(PER_CLASS, {})
    classes = sorted(set(base) | set(head))
    if not classes:
        return "_No per-class accuracy in the metrics._"

    def change(name: str) -> float:
        if name in base and name in head:
            return head[name] - base[name]
        return 0.0

    moved = [c for c in classes if abs(change(c)) >= NOISE or (c in base) != (c in head)]
    worse = [c for c in moved if change(c) < 0]
    rows = [f"| class | {pair.base_label} | {pair.head_label} | change |", "|---|---:|---:|---:|"]
    for name in sorted(classes, key=lambda c: (change(c), c)):
        b, h = base.get(name), head.get(name)
        rows.append(f"| {name} | {_fmt(b, PER_CLASS)} | {_fmt(h, PER_CLASS)} | {_delta(b, h, PER_CLASS)} |")
    if not pair.base:
        summary = f"Per-class accuracy ({len(classes)} classes)"
    else:
        summary = f"Per-class accuracy: {len(moved)} of {len(classes)} classes changed"
        if worse:
            summary += f", worse: {', '.join(worse)}"
    return f"<details><summary>{summary}</summary>\n\n" + "\n".join(rows) + "\n\n</details>"


def gate_section(verdict: Verdict | None, error: str | None) -> str:
    if verdict is None:
        return f"**Gate: cannot decide** — {error}"
    mark = "✅ pass" if verdict.passed else "❌ fail"
    lines = [f"**Gate: {mark}** (`gate:` in `params.yaml`)", ""]
    lines += [f"- {reason}" for reason in verdict.reasons]
    return "\n".join(lines)


def plots_section(plots_dir: Path | None, run_url: str | None, artifact: str) -> str:
    files = (
        sorted(p.name for p in plots_dir.iterdir() if p.suffix in PLOT_SUFFIXES)
        if (plots_dir and plots_dir.is_dir())
        else []
    )
    listing = ", ".join(f"`{name}`" for name in files) if files else "none were produced"
    where = f"the artifact **{artifact}** of [this run]({run_url})" if run_url else f"`{plots_dir}` locally"
    return (
        f"**Plots** ({listing}) and the self-contained `evaluation/report.html` are in {where}. "
        "Locally: `dvc plots diff main` after `git fetch`."
    )


def build(
    pair: MetricsPair,
    gate: GateParams | None,
    *,
    title: str = "Model report",
    plots_dir: Path | None = None,
    run_url: str | None = None,
    artifact: str = "evaluation",
    gate_error: str | None = None,
) -> tuple[str, Verdict | None]:
    """The Markdown body and the verdict (None when the gate could not be applied)."""
    verdict = None
    if gate is not None:
        try:
            verdict = decide(pair, gate)
        except MetricsError as exc:
            gate_error = str(exc)
    baseline = (
        ""
        if pair.base
        else (
            f"\n\n_{pair.base_label} has no metrics yet: this is the first model, "
            "so there is nothing to compare with._"
        )
    )
    parts = [
        f"### {title}{baseline}",
        gate_section(verdict, gate_error or "no gate parameters"),
        metrics_table(pair),
        per_class_section(pair),
        plots_section(plots_dir, run_url, artifact),
    ]
    return "\n\n".join(parts) + "\n", verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.report", description=__doc__.split("\n\n")[0])
    add_source_arguments(parser)
    parser.add_argument("--params", default="params.yaml", help="where the gate: section is")
    parser.add_argument("--title", default="Model report", help="heading of the comment")
    parser.add_argument("--plots-dir", default="evaluation/plots", type=Path)
    parser.add_argument("--run-url", help="link to the workflow run holding the plots artifact")
    parser.add_argument("--artifact", default="evaluation", help="name of the uploaded plots artifact")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        pair = pair_from_args(args)
    except MetricsError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    gate, gate_error = None, None
    try:
        gate = load_params(args.params).gate
    except ParamsError as exc:
        gate_error = str(exc)
    body, verdict = build(
        pair,
        gate,
        title=args.title,
        plots_dir=args.plots_dir,
        run_url=args.run_url,
        artifact=args.artifact,
        gate_error=gate_error,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(body)
        state = "no verdict" if verdict is None else ("gate pass" if verdict.passed else "gate FAIL")
        print(f"report: wrote {args.out} ({state})")
    else:
        sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
