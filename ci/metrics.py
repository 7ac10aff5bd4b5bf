"""Read `evaluation/metrics.json` pairs (main vs candidate) for the report and the gate.

The two sides can come from two files, from a git revision (`git show REV:path`), or from the JSON that
`dvc metrics diff --all --json REV` prints; whichever way, the callers get the same two plain dicts, so the
report and the gate never disagree about what was compared.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

METRICS_PATH = "evaluation/metrics.json"
#: Scalar metrics in the order people read them; anything else in the file is listed after these.
SCALARS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "loss", "n_val")
PER_CLASS = "per_class_accuracy"
LOWER_IS_BETTER = frozenset({"loss"})


class MetricsError(ValueError):
    """A metrics file or diff is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class MetricsPair:
    """The baseline (None when main has no metrics yet) and the candidate metrics, as nested dicts."""

    base: dict | None
    head: dict
    base_label: str = "main"
    head_label: str = "this PR"


def _check(data: object, source: str) -> dict:
    if not isinstance(data, dict):
        raise MetricsError(f"{source}: expected a JSON object of metrics, got {type(data).__name__}")
    per_class = data.get(PER_CLASS, {})
    if not isinstance(per_class, dict):
        raise MetricsError(f"{source}: '{PER_CLASS}' must be an object of class -> accuracy")
    for key, value in [*data.items(), *((f"{PER_CLASS}.{k}", v) for k, v in per_class.items())]:
        if key == PER_CLASS:
            continue
        if value is not None and not _is_number(value):
            raise MetricsError(f"{source}: metric '{key}' must be a number, got {value!r}")
    return data


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"{path} not found; run `make repro` (or `dvc pull`) to produce it")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{path} is not valid JSON ({exc}); re-run the evaluate stage") from None
    return _check(data, str(path))


def load_revision(rev: str, path: str = METRICS_PATH, cwd: str | Path | None = None) -> dict | None:
    """Metrics committed at `rev`, or None when that revision has no metrics file yet (first run)."""
    if not rev or rev.startswith("-"):
        raise MetricsError(f"invalid git revision {rev!r}")
    probe = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise MetricsError(f"git revision {rev!r} not found; fetch it first (e.g. `git fetch origin main`)")
    shown = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=cwd, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        return None
    try:
        return _check(json.loads(shown.stdout), f"{rev}:{path}")
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{rev}:{path} is not valid JSON ({exc})") from None


def _unflatten(flat: dict[str, object]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        if value is None:
            continue
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            nested[key] = value
    return nested


def from_dvc_diff(diff: dict, path: str = METRICS_PATH) -> tuple[dict | None, dict]:
    """Split `dvc metrics diff --all --json` output into (base, head); base is None if main had no file."""
    if not isinstance(diff, dict):
        raise MetricsError("dvc metrics diff output must be a JSON object of {file: {metric: {old, new}}}")
    entries = diff.get(path)
    if entries is None:
        if len(diff) != 1:
            raise MetricsError(
                f"dvc metrics diff has no entry for {path}; found: {', '.join(diff) or 'none'}"
            )
        entries = next(iter(diff.values()))
    if not isinstance(entries, dict):
        raise MetricsError(f"dvc metrics diff entry for {path} must be an object")
    old = {k: v.get("old") for k, v in entries.items() if isinstance(v, dict)}
    new = {k: v.get("new") for k, v in entries.items() if isinstance(v, dict)}
    base = _unflatten(old)
    head = _unflatten(new)
    if not head:
        raise MetricsError(f"dvc metrics diff shows no current value for {path}; run `dvc repro` first")
    return (_check(base, "dvc diff (old)") if base else None), _check(head, "dvc diff (new)")


def load_pair(
    head: str | Path | None = None,
    base: str | Path | None = None,
    base_rev: str | None = None,
    dvc_diff: str | Path | None = None,
) -> MetricsPair:
    """One entry point for the CLIs: a dvc diff file, or a head file plus a base file or git revision."""
    if dvc_diff is not None:
        path = Path(dvc_diff)
        if not path.is_file():
            raise MetricsError(
                f"{path} not found; write it with `dvc metrics diff --all --json REV > {path}`"
            )
        try:
            raw = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise MetricsError(f"{path} is not valid JSON ({exc})") from None
        old, new = from_dvc_diff(raw)
        return MetricsPair(base=old, head=new)
    if head is None:
        raise MetricsError("give the candidate metrics (--head FILE) or a dvc diff (--dvc-diff FILE)")
    if base is not None and base_rev is not None:
        raise MetricsError("give either --base FILE or --base-rev REV, not both")
    head_data = load_file(head)
    if base is not None:
        return MetricsPair(base=load_file(base), head=head_data)
    if base_rev is not None:
        return MetricsPair(base=load_revision(base_rev), head=head_data, base_label=base_rev)
    return MetricsPair(base=None, head=head_data)


def add_source_arguments(parser) -> None:
    """The same input options for `ci.report` and `ci.gate`."""
    parser.add_argument("--head", default=METRICS_PATH, help=f"candidate metrics (default {METRICS_PATH})")
    parser.add_argument("--base", help="baseline metrics file (e.g. main's)")
    parser.add_argument(
        "--base-rev", help="read the baseline from this git revision instead, e.g. origin/main"
    )
    parser.add_argument("--dvc-diff", help="output of `dvc metrics diff --all --json REV` (takes precedence)")


def pair_from_args(args) -> MetricsPair:
    return load_pair(head=args.head, base=args.base, base_rev=args.base_rev, dvc_diff=args.dvc_diff)
