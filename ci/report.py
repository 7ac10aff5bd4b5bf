"""The pull-request comment of the train workflow: what the change did to the model, and the gate's verdict.

    dvc metrics diff --all --json origin/main > metrics-diff.json
    python -m ci.report --dvc-diff metrics-diff.json --run-url URL --out report.md
    python -m ci.report --base-rev origin/main            # same, from the two metrics files

Reviewers see the gate verdict (computed from the same numbers by `ci.gate`), the headline metrics main vs
this PR with deltas, the accuracy by origin of the validation images (the images main already had vs those
added by labelling, and human-changed vs accepted pre-labels), every class's accuracy on both sides with the
largest change first, the mistakes the PR's model makes most (from `evaluation/predictions.csv`), and a link
to the plots artifact.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
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
#: The columns of evaluation/predictions.csv that the confusions need (ml/evaluate.py writes them).
PREDICTION_COLUMNS = ("actual", "predicted")
TOP_CONFUSIONS = 5
#: The groups of ml/origin.py (metrics `accuracy_<group>`, `n_val_<group>`), with what a reviewer reads.
ORIGINS = {
    "original": "images main already had (same split: like with like)",
    "labelled": "images added by labelling",
    "changed": "labelled, pre-label changed by a person",
    "accepted": "labelled, pre-label accepted unchanged",
}
ORIGIN_KEYS = frozenset(f"{prefix}_{group}" for group in ORIGINS for prefix in ("accuracy", "n_val"))


def _is_count(key: str) -> bool:
    return key == "n_val" or key.startswith("n_val_")


def _fmt(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    if _is_count(key):
        return str(int(value))
    return f"{value:.4f}"


def _delta(base: float | None, head: float | None, key: str) -> str:
    if base is None or head is None:
        return "new" if base is None and head is not None else "–"
    change = head - base
    if _is_count(key):
        return f"{int(change):+d}" if change else "0"
    if abs(change) < NOISE / 10:
        return "±0"
    better = change < 0 if key in LOWER_IS_BETTER else change > 0
    return f"{change:+.4f} {'▲' if better else '▼'}"


def _scalar_keys(pair: MetricsPair) -> list[str]:
    present = {k for side in (pair.base or {}, pair.head) for k, v in side.items() if k != PER_CLASS}
    present -= ORIGIN_KEYS  # they have their own table
    return [k for k in SCALARS if k in present] + sorted(present - set(SCALARS))


def metrics_table(pair: MetricsPair) -> str:
    base = pair.base or {}
    rows = [f"| metric | {pair.base_label} | {pair.head_label} | change |", "|---|---:|---:|---:|"]
    for key in _scalar_keys(pair):
        b, h = base.get(key), pair.head.get(key)
        rows.append(f"| {key} | {_fmt(b, key)} | {_fmt(h, key)} | {_delta(b, h, key)} |")
    return "\n".join(rows)


def origin_section(pair: MetricsPair) -> str:
    """Accuracy by origin of the validation images, main vs this PR; empty before evaluate wrote them."""
    base = pair.base or {}
    if not any(f"n_val_{group}" in pair.head for group in ORIGINS):
        return ""
    rows = [
        f"| images | {pair.base_label} | {pair.head_label} | change | images ({pair.head_label}) |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, what in ORIGINS.items():
        key = f"accuracy_{group}"
        b, h = base.get(key), pair.head.get(key)
        count = _fmt(pair.head.get(f"n_val_{group}"), "n_val")
        rows.append(f"| {what} | {_fmt(b, key)} | {_fmt(h, key)} | {_delta(b, h, key)} | {count} |")
    return "**Accuracy by origin** (`accuracy_<group>` in metrics.json)\n\n" + "\n".join(rows)


def _per_class(metrics: dict | None) -> dict[str, float | None]:
    """class -> accuracy; None for a class without validation images (evaluate writes null then)."""
    values = (metrics or {}).get(PER_CLASS) or {}
    return {name: (None if value is None else float(value)) for name, value in values.items()}


def per_class_section(pair: MetricsPair) -> str:
    """Every class, main vs this PR, the largest change first: where the model got better or worse."""
    base, head = _per_class(pair.base), _per_class(pair.head)
    classes = sorted(set(base) | set(head))
    if not classes:
        return "_No per-class accuracy in the metrics._"

    def change(name: str) -> float | None:
        b, h = base.get(name), head.get(name)
        return None if b is None or h is None else h - b

    # Classes without a number on one side (new, or no validation images) go last: their change is unknown.
    order = sorted(classes, key=lambda c: (change(c) is None, -abs(change(c) or 0.0), c))
    rows = [f"| class | {pair.base_label} | {pair.head_label} | change |", "|---|---:|---:|---:|"]
    for name in order:
        b, h = base.get(name), head.get(name)
        rows.append(f"| {name} | {_fmt(b, PER_CLASS)} | {_fmt(h, PER_CLASS)} | {_delta(b, h, PER_CLASS)} |")
    moved = [c for c in classes if abs(change(c) or 0.0) >= NOISE]
    worse = [c for c in order if (change(c) or 0.0) <= -NOISE]
    if not pair.base:
        summary = f"**Per-class accuracy** ({len(classes)} classes)"
    else:
        summary = f"**Per-class accuracy**: {len(moved)} of {len(classes)} classes changed"
        summary += f"; worse: {', '.join(worse)}" if worse else "; none got worse"
    unknown = [c for c in classes if head.get(c) is None]
    if unknown:
        summary += f". No validation images in this PR for: {', '.join(unknown)}"
    return summary + "\n\n" + "\n".join(rows)


def read_predictions(path: Path) -> list[tuple[str, str]]:
    """(actual, predicted) of each validation image in `evaluation/predictions.csv` (ml/evaluate.py)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {', '.join(missing)} (has: {', '.join(reader.fieldnames or [])})"
            )
        return [(row["actual"], row["predicted"]) for row in reader]


def confusions_section(predictions: Path | None, top: int = TOP_CONFUSIONS) -> str:
    """The most frequent mistakes of this PR's model: which class it takes for which, and how often."""
    if predictions is None or not predictions.is_file():
        return ""
    try:
        pairs = read_predictions(predictions)
    except (OSError, ValueError, csv.Error) as exc:
        print(f"report: warning: {exc}", file=sys.stderr)
        return f"_Top confusions unavailable: {exc}; re-run the evaluate stage._"
    support = Counter(actual for actual, _ in pairs)
    mistakes = Counter((a, p) for a, p in pairs if a != p)
    if not mistakes:
        return f"**Top confusions**: none, all {len(pairs)} validation images are classified correctly."
    rows = ["| actual | predicted as | images | share of the class |", "|---|---|---:|---:|"]
    ranked = sorted(mistakes.items(), key=lambda item: (-item[1], item[0]))
    for (actual, predicted), count in ranked[:top]:
        rows.append(f"| {actual} | {predicted} | {count} | {count / support[actual]:.0%} |")
    wrong = sum(mistakes.values())
    title = f"**Top confusions** of this PR ({wrong} of {len(pairs)} validation images wrong)"
    return title + "\n\n" + "\n".join(rows)


def gate_section(verdict: Verdict | None, error: str | None) -> str:
    if verdict is None:
        return f"**Gate: cannot decide** — {error}"
    mark = "✅ pass" if verdict.passed else "❌ fail"
    lines = [f"**Gate: {mark}** (`gate:` in `params.yaml`)", ""]
    lines += [f"- {reason}" for reason in verdict.reasons]
    return "\n".join(lines)


def plots_section(
    plots_dir: Path | None, run_url: str | None, artifact: str, artifact_url: str | None = None
) -> str:
    files = (
        sorted(p.name for p in plots_dir.iterdir() if p.suffix in PLOT_SUFFIXES)
        if (plots_dir and plots_dir.is_dir())
        else []
    )
    listing = ", ".join(f"`{name}`" for name in files) if files else "none were produced"
    if artifact_url:
        where = f"[the **{artifact}** artifact]({artifact_url})"
        where += f" of [this run]({run_url})" if run_url else ""
    elif run_url:
        where = f"the artifact **{artifact}** of [this run]({run_url})"
    else:
        where = f"`{plots_dir or 'evaluation/plots'}` locally"
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
    artifact_url: str | None = None,
    predictions: Path | None = None,
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
        origin_section(pair),
        per_class_section(pair),
        confusions_section(predictions),
        plots_section(plots_dir, run_url, artifact, artifact_url),
    ]
    return "\n\n".join(p for p in parts if p) + "\n", verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.report", description=__doc__.split("\n\n")[0])
    add_source_arguments(parser)
    parser.add_argument("--params", default="params.yaml", help="where the gate: section is")
    parser.add_argument("--title", default="Model report", help="heading of the comment")
    parser.add_argument("--plots-dir", default="evaluation/plots", type=Path)
    parser.add_argument("--run-url", help="link to the workflow run holding the plots artifact")
    parser.add_argument("--artifact", default="evaluation", help="name of the uploaded plots artifact")
    parser.add_argument("--artifact-url", help="link to that artifact (upload-artifact's `artifact-url`)")
    parser.add_argument(
        "--predictions",
        default="evaluation/predictions.csv",
        type=Path,
        help="this PR's per-image predictions, for the top confusions (skipped if absent)",
    )
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
        artifact_url=args.artifact_url,
        predictions=args.predictions,
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
