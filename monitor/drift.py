"""The drift check: is a window of one model's logged predictions still like its reference?

    python -m monitor.drift --log gs://BUCKET --reference model/reference.npz [--model TAG]
                            [--last N | --since 2026-11-01 [--until 2026-11-30]] [--alpha 0.05] [--json]

Checks, each a test whose null hypothesis is "the window comes from the reference's distribution":

- `embedding_mmd`: MMD between the standardised embeddings (a sum of RBF kernels at several multiples of
  the median distance) with a permutation p-value (scipy.stats.permutation_test): the multivariate test;
- `ks_<stat>`: two-sample Kolmogorov-Smirnov (scipy) on each channel's mean and std of the preprocessed
  pixels, on their sharpness (blur), and one-sided on the novelty score (higher);
- `predictions`: chi-square test of homogeneity (scipy) of the predicted-class counts;
- `unknown_rate`: one-sided Fisher exact test (the two-sample binomial comparison; the reference rate is
  itself estimated from a few hundred images) that the window's unknown rate is higher.

Holm's step-down correction over the family keeps the probability that a window without drift raises
drift at most `alpha` (default 0.05), whatever the dependence between the tests. A window smaller than
`--min-n` (default 100) gets `drift: null`, never an alarm; an empty window says "no traffic".
Exit code 0 whether or not drift was found; 2 when the check could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel

from monitor.log import records_prefix
from monitor.records import PredictionRecord, split_tag
from monitor.reference import Records, ReferenceError
from monitor.sinks import Sink, SinkError, open_sink

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_N = 100
DEFAULT_PERMUTATIONS = 1999
#: How far back `--last N` looks for records when no --since is given.
DEFAULT_LOOKBACK_DAYS = 30


class DriftError(RuntimeError):
    """The check could not run (no reference, unreadable log, bad arguments); the message says why."""


@dataclass
class Check:
    name: str
    statistic: float
    p_value: float
    threshold: float  # the Holm level this p-value was compared with
    verdict: str  # "drift" | "ok"
    what: str


# --- the statistics -------------------------------------------------------------------------------


#: Bandwidths of the MMD kernel, as multiples of the median squared distance. One bandwidth (the median
#: alone) misses a minority of images that moved (25 % dwarf planets); a sum of RBF kernels is still a
#: characteristic kernel and sees changes at several scales.
BANDWIDTHS = (0.1, 0.3, 1.0, 3.0)


def mmd_test(a: np.ndarray, b: np.ndarray, *, n_resamples: int, seed: int) -> tuple[float, float]:
    """Squared MMD (biased estimate) of two samples and its permutation p-value.

    The pooled sample is standardised per dimension, so no single wide unit dominates the distances
    (pooled, not the reference's statistics: a transform blind to the labels keeps the test exact). The
    kernel matrix is computed once; each permutation is a weight vector w with 1/n_a on one side and
    -1/n_b on the other, and MMD^2 = w' K w, so scipy evaluates thousands of permutations as one product."""
    pooled = np.concatenate([a, b]).astype(np.float64)
    pooled = (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-6)
    distances = euclidean_distances(pooled, squared=True)
    median = max(float(np.median(distances[np.triu_indices(len(pooled), k=1)])), 1e-12)
    kernel = sum(rbf_kernel(pooled, gamma=1.0 / (factor * median)) for factor in BANDWIDTHS)
    n_a, n_total = len(a), len(pooled)

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.atleast_2d(x).astype(int), np.atleast_2d(y).astype(int)
        weights = np.zeros((x.shape[0], n_total))
        np.put_along_axis(weights, x, 1.0 / x.shape[1], axis=1)
        np.put_along_axis(weights, y, -1.0 / y.shape[1], axis=1)
        values = np.einsum("bi,bi->b", weights @ kernel, weights)
        return values if values.size > 1 else values[0]

    result = stats.permutation_test(
        (np.arange(n_a), np.arange(n_a, n_total)),
        statistic,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="greater",
        batch=250,
        rng=np.random.default_rng(seed),
    )
    return float(result.statistic), float(result.pvalue)


def _prediction_test(ref: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    classes = sorted(set(ref) | set(win))
    table = np.array([[np.sum(ref == c) for c in classes], [np.sum(win == c) for c in classes]])
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def holm(p_values: list[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm's step-down levels and rejections (scipy has FDR control only, not family-wise)."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    levels, rejected, still = [0.0] * m, [False] * m, True
    for rank, i in enumerate(order):
        levels[i] = alpha / (m - rank)
        still = still and p_values[i] <= levels[i]
        rejected[i] = still
    return levels, rejected


def run_checks(
    reference: Records,
    window: Records,
    *,
    alpha: float = DEFAULT_ALPHA,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> list[Check]:
    if reference.embeddings.shape[1] != window.embeddings.shape[1]:
        raise DriftError(
            f"embedding width differs (reference {reference.embeddings.shape[1]}, window "
            f"{window.embeddings.shape[1]}): the reference belongs to another model; rebuild it"
        )
    raw: list[tuple[str, float, float, str]] = []
    statistic, p = mmd_test(reference.embeddings, window.embeddings, n_resamples=n_permutations, seed=seed)
    raw.append(("embedding_mmd", statistic, p, "MMD^2 of the embeddings, permutation p-value"))
    channels = reference.channel_mean.shape[1]
    names = "rgb" if channels == 3 else [str(c) for c in range(channels)]
    for kind, ref_values, win_values in (
        ("mean", reference.channel_mean, window.channel_mean),
        ("std", reference.channel_std, window.channel_std),
    ):
        for c in range(channels):
            result = stats.ks_2samp(ref_values[:, c], win_values[:, c])
            raw.append(
                (f"ks_{kind}_{names[c]}", result.statistic, result.pvalue, f"KS, pixel {kind} of {names[c]}")
            )
    result = stats.ks_2samp(reference.sharpness, window.sharpness)
    raw.append(("ks_sharpness", result.statistic, result.pvalue, "KS, sharpness (blur)"))
    # one-sided: the alarm is for images MORE novel than the reference (the window's CDF lies below)
    result = stats.ks_2samp(reference.novelty, window.novelty, alternative="greater")
    raw.append(("ks_novelty", result.statistic, result.pvalue, "KS, novelty score higher"))
    statistic, p = _prediction_test(reference.predictions, window.predictions)
    raw.append(("predictions", statistic, p, "chi-square, predicted-class counts"))
    table = [
        [int(window.unknown.sum()), int((~window.unknown).sum())],
        [int(reference.unknown.sum()), int((~reference.unknown).sum())],
    ]
    result = stats.fisher_exact(table, alternative="greater")
    rate = window.unknown.mean()
    raw.append(("unknown_rate", float(rate), float(result.pvalue), "Fisher exact, unknown rate higher"))
    if (n_permutations + 1) * alpha < len(raw):
        raise DriftError(
            f"{n_permutations} permutations cannot give a p-value below alpha/{len(raw)} = "
            f"{alpha / len(raw):.2g}; use at least {int(np.ceil(len(raw) / alpha)) - 1}"
        )
    levels, rejected = holm([r[2] for r in raw], alpha)
    return [
        Check(name, float(s), float(p), level, "drift" if rej else "ok", what)
        for (name, s, p, what), level, rej in zip(raw, levels, rejected, strict=True)
    ]


def check(
    reference: Records,
    records: list[PredictionRecord],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_n: int = DEFAULT_MIN_N,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> dict:
    """The verdict on one window as a dict (the JSON the CLI prints, less `report` and `window`)."""
    result: dict = {
        "drift": None,
        "n": len(records),
        "min_n": min_n,
        "model": reference.model,
        "n_reference": len(reference),
        "alpha": alpha,
        "correction": "holm",
        "checks": {},
    }
    if not records:
        result["reason"] = "no traffic in the window"
        return result
    if len(records) < min_n:
        result["reason"] = f"{len(records)} predictions < min_n {min_n}: too few to judge, no alarm"
        return result
    window = Records.from_records(records)
    if window.model != reference.model:
        raise DriftError(f"the window is of {window.model}, the reference of {reference.model}")
    checks = run_checks(reference, window, alpha=alpha, n_permutations=n_permutations, seed=seed)
    result["checks"] = {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in checks}
    result["drift"] = any(c.verdict == "drift" for c in checks)
    found = [c.name for c in checks if c.verdict == "drift"]
    result["reason"] = f"drift in {', '.join(found)}" if found else "no check rejected"
    return result


# --- reading the window ---------------------------------------------------------------------------


def _days(since: date, until: date) -> Iterator[date]:
    day = until
    while day >= since:
        yield day
        day -= timedelta(days=1)


def load_window(
    sink: Sink,
    model: str,
    *,
    last: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
) -> list[PredictionRecord]:
    """One model's records in [since, until], newest day first until `last` records are found."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=lookback_days)
    found: list[PredictionRecord] = []
    for day in _days(since.date(), until.date()):
        for name in sorted(sink.list(records_prefix(model, day.isoformat()))):
            for line in sink.get(name).splitlines():
                if not line.strip():
                    continue
                rec = PredictionRecord.model_validate_json(line)
                if rec.model == model and since <= rec.time <= until:
                    found.append(rec)
        if last is not None and len(found) >= last:
            break
    found.sort(key=lambda r: r.time)
    return found[-last:] if last is not None else found


# --- the command ----------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time (2026-11-30 or 2026-11-30T12:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitor.drift", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log", required=True, help="gs://BUCKET (the emulator with STORAGE_EMULATOR_HOST) or a folder"
    )
    parser.add_argument(
        "--reference", default="model/reference.npz", help="the reference file, or gs://BUCKET/OBJECT"
    )
    parser.add_argument("--model", help="model tag name:version (default: the reference's)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--last", type=int, help="the newest N records")
    parser.add_argument("--since", type=_when, help="from this UTC date/time (default: 30 days back)")
    parser.add_argument("--until", type=_when, help="up to this UTC date/time (default: now)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="family-wise false-alarm rate")
    parser.add_argument("--min-n", type=int, default=DEFAULT_MIN_N, help="smaller windows get drift: null")
    parser.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS)
    parser.add_argument("--report", type=Path, default=Path(".orbit/drift/report.html"))
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha must be between 0 and 1; got {args.alpha}")
    if args.last is not None and args.last < 1:
        parser.error("--last must be at least 1")
    if args.min_n < 2:
        parser.error("--min-n must be at least 2")
    if args.since and args.until and args.since > args.until:
        parser.error("--since is after --until")
    return args


def load_reference(location: str) -> Records:
    """A reference file on disk, or gs://BUCKET/OBJECT (where the deploy publishes it next to the log)."""
    if location.startswith("gs://"):
        bucket, _, name = location[5:].partition("/")
        if not bucket or not name:
            raise DriftError(f"{location}: expected gs://BUCKET/PATH/reference.npz")
        try:
            data = open_sink(f"gs://{bucket}").get(name)
        except Exception as exc:
            raise DriftError(f"cannot read the reference {location}: {type(exc).__name__}: {exc}") from None
        return Records.from_bytes(data, location)
    return Records.load(location)


def run(args: argparse.Namespace) -> dict:
    from monitor.report import write_report

    reference = load_reference(args.reference)
    model = args.model or reference.model
    if split_tag(model)[0] != reference.model_name or (
        reference.model_has_version and model != reference.model
    ):
        raise DriftError(
            f"the reference {args.reference} was built for {reference.model}, not {model}: "
            "build the reference of this model version first"
        )
    if not reference.model_has_version and not args.model:
        raise DriftError(f"the reference names no version ({reference.model}): pass --model NAME:VERSION")
    reference = replace(reference, model=model)
    sink = open_sink(args.log)
    records = load_window(sink, model, last=args.last, since=args.since, until=args.until)
    result = check(reference, records, alpha=args.alpha, min_n=args.min_n, n_permutations=args.permutations)
    result["window"] = {
        "last": args.last,
        "since": args.since.isoformat() if args.since else None,
        "until": args.until.isoformat() if args.until else None,
        "first": records[0].time.isoformat() if records else None,
        "end": records[-1].time.isoformat() if records else None,
    }
    result["report"] = str(write_report(args.report, reference, records, result, sink=sink))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (DriftError, ReferenceError, SinkError, ValueError, OSError) as exc:
        print(f"drift: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # google.api_core errors and the like: the check did not run
        print(
            f"drift: error: could not read the log at {args.log}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        verdict = {True: "DRIFT", False: "no drift", None: "no verdict"}[result["drift"]]
        print(f"{verdict}: {result['reason']} (model {result['model']}, n={result['n']})")
        for name, c in result["checks"].items():
            print(f"  {name:<16} p={c['p_value']:.4g}  level={c['threshold']:.4g}  {c['verdict']}")
        print(f"report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
