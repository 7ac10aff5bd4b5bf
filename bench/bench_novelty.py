"""`make bench-novelty`: the unknown-image detector on the real data, against the max-probability baseline.

For each seed it trains today's pipeline (`python -m ml.prepare`, `python -m ml.train` with params.yaml, in a
temporary workspace), which exports model.onnx and fits the novelty model (ml.novelty, on the *train* split,
threshold on the *validation* split, params.yaml `novelty:`) into the bundle. The bench then loads that
bundle as the service does (ml.inference.Predictor + ml.novelty.load_from_bundle), so it measures exactly
what serves. Then it scores:

- known: the validation split (the in-sample flagged share is the rate by construction, so a 2-fold
  estimate over the validation split is printed too: threshold from one half, measured on the other);
- unknown: the guide's 1,000 dwarf planets (extra-classes: measured here, never fitted on), random crops of
  the two photos scikit-learn ships, uniform and Gaussian noise, and flat colour gradients
  (ml.synthetic.probe_images), all through ml.preprocess like an upload.

Alongside the chosen method it prints the well-known alternatives on the same embeddings: max softmax
probability (the baseline), energy, Mahalanobis, kNN distance. Finally the cost per image of the score at
batch 1 and 64 with one BLAS thread, next to the baseline's, and at batch 64 with the default BLAS threads
(on a busy machine these can be far slower: set one thread in the serving worker).

    python bench/bench_novelty.py [--seeds 77 78 79] [--data DIR] [--extra DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from cpus import pin_to_target_cpus  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.inference import Predictor  # noqa: E402
from ml.novelty import NoveltyModel, embed_batches, load_from_bundle, threshold_for_rate  # noqa: E402
from ml.params import NoveltyParams, load_params  # noqa: E402
from ml.preprocess import preprocess  # noqa: E402
from ml.synthetic import PROBE_KINDS, probe_images  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "planets"
DEFAULT_DATA = Path(os.environ.get("ORBIT_REAL_DATA", SHARED / "raw"))
DEFAULT_EXTRA = SHARED / "extra-data" / "extra-classes"
TARGET_AUROC, TARGET_FLAGGED, MAX_KNOWN_FLAGGED = 0.99, 0.95, 0.02
OTHER_UNKNOWNS = PROBE_KINDS
N_SYNTHETIC = 200  # images per synthetic unknown set


# --- data -----------------------------------------------------------------------------------------


def body_of(path: Path) -> str:
    """extra-classes names hide the class: the stem is reversed, unpadded urlsafe base64 of <Body>_<N>."""
    stem = path.stem[::-1]
    return base64.urlsafe_b64decode(stem + "=" * (-len(stem) % 4)).decode().rsplit("_", 1)[0]


# --- training and embedding -------------------------------------------------------------------------


def train_workspace(root: Path, data: Path, seed: int) -> Path:
    """prepare + train as the DVC stages run them, with params.yaml and this seed, in a fresh folder."""
    ws = root / f"seed-{seed}"
    ws.mkdir(parents=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["seed"] = params["train"]["seed"] = seed
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (ws / "data").mkdir()
    (ws / "data" / "raw").symlink_to(data.resolve())
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for stage in ("prepare", "train"):
        command = [sys.executable, "-m", f"ml.{stage}"]
        run = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            output = (run.stdout + run.stderr)[-3000:]
            sys.exit(f"bench-novelty: ml.{stage} failed for seed {seed}:\n{output}")
    return ws


def embedder(model_dir: Path):
    """(embed(x) -> (embedding, probabilities), head weights, head bias, the bundle's novelty model).

    Embeddings and probabilities come from model.onnx through ml.inference.Predictor, as in the service;
    Keras is loaded only for the softmax layer's weights, which the energy score needs."""
    from ml.runtime import import_tensorflow

    predictor = Predictor.load(model_dir)
    detector = load_from_bundle(model_dir, predictor.meta)
    import_tensorflow()
    import keras

    model = keras.models.load_model(model_dir / "model.keras")
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.activation.__name__ != "softmax":
        sys.exit(f"bench-novelty: the last layer of {model_dir} is not a softmax Dense layer ({head.name})")
    weights, bias = head.get_weights()

    def embed(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embeddings = embed_batches(predictor.run, x)
        return embeddings, probabilities

    return embed, weights, bias, detector


# --- the scores compared ------------------------------------------------------------------------------

Score = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (embeddings, probabilities) -> novelty


def alternatives(train_e: np.ndarray, weights, bias) -> dict[str, Score]:
    """The well-known scores, fitted on the training split only (higher = more novel)."""
    from scipy.special import logsumexp
    from sklearn.neighbors import NearestNeighbors

    def unit(e):
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    knn = NearestNeighbors(n_neighbors=5).fit(unit(train_e))
    return {
        "max softmax (baseline)": lambda e, p: 1 - p.max(axis=1),
        "energy": lambda e, p: -logsumexp(e @ weights + bias, axis=1),
        "kNN k=1 (cosine)": lambda e, p: knn.kneighbors(unit(e), n_neighbors=1)[0][:, -1],
        "kNN k=5 (cosine)": lambda e, p: knn.kneighbors(unit(e))[0][:, -1],
    }


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown]))


def two_fold_known_rate(val_scores: np.ndarray, rate: float, seed: int) -> float:
    """Held-out false-unknown rate: threshold on one half of the validation split, measured on the other."""
    order = np.random.default_rng(seed).permutation(len(val_scores))
    halves = np.array_split(order, 2)
    flagged = [
        np.mean(val_scores[b] > threshold_for_rate(val_scores[a], rate))
        for a, b in (halves, halves[::-1])
    ]
    return float(np.mean(flagged))


def cost_us(
    score: Callable[[np.ndarray], np.ndarray], embeddings: np.ndarray, batch: int, threads: int | None = 1
) -> float:
    """Median microseconds per image over repeated calls, with `threads` BLAS threads (None: the default)."""
    from threadpoolctl import threadpool_limits

    x = embeddings[:batch].astype(np.float32)
    repeats = max(20, 2000 // batch)
    with threadpool_limits(threads):
        score(x)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(repeats):
                score(x)
            times.append((time.perf_counter() - start) / repeats / batch)
    return float(np.median(times) * 1e6)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_seed(ws: Path, extra: list[Path], novelty: NoveltyParams, seed: int) -> dict:
    from ml.prepare import load_split

    train, val = load_split("train", ws / "data" / "prepared"), load_split("val", ws / "data" / "prepared")
    config = train.config
    rng = np.random.default_rng(seed)
    inputs = {"dwarf planets": np.stack([preprocess(p, config) for p in extra])}
    for kind in OTHER_UNKNOWNS:
        inputs[kind] = np.stack([preprocess(im, config) for im in probe_images(kind, N_SYNTHETIC, rng)])
    embed, weights, bias, model = embedder(ws / "model")  # model: the novelty model ml.train fitted
    train_e, _ = embed(train.x)
    val_e, val_p = embed(val.x)
    outs = {name: embed(x) for name, x in inputs.items()}

    start = time.perf_counter()  # a refit on the same embeddings: its cost, and a check of the bundle's
    refit = NoveltyModel.fit(train_e, train.y, val_e, params=novelty)
    fit_s = time.perf_counter() - start
    if not np.isclose(refit.threshold, model.threshold, rtol=1e-6):
        sys.exit(f"bench-novelty: bundle threshold {model.threshold} != refit {refit.threshold}")
    scores: dict[str, Score] = {f"{novelty.method} (chosen)": lambda e, p: model.score(e, p)}
    for method in ("relative_mahalanobis", "mahalanobis"):
        if method != novelty.method:
            other = NoveltyModel.fit(train_e, train.y, val_e, params=NoveltyParams(method=method))
            scores[method] = lambda e, p, other=other: other.score(e)
    scores.update(alternatives(train_e, weights, bias))
    bodies = np.array([body_of(p) for p in extra])
    table = {}
    for name, score in scores.items():
        known = score(val_e, val_p)
        threshold = threshold_for_rate(known, novelty.false_unknown_rate)
        unknown = {k: score(*v) for k, v in outs.items()}
        table[name] = {
            "auroc": auroc(known, unknown["dwarf planets"]),
            "val": float(np.mean(known > threshold)),
            "val 2-fold": two_fold_known_rate(known, novelty.false_unknown_rate, seed),
            **{k: float(np.mean(v > threshold)) for k, v in unknown.items()},
            "per body": {b: float(np.mean(unknown["dwarf planets"][bodies == b] > threshold))
                         for b in sorted(set(bodies))},
        }
    baseline = scores["max softmax (baseline)"]
    return {
        "table": table,
        "accuracy": float(np.mean(val_p.argmax(axis=1) == val.y)),
        "n_val": len(val.y),
        "n_train": len(train.y),
        "train flagged": float(np.mean(model.is_unknown(train_e))),
        "threshold": model.threshold,
        "fit_s": fit_s,
        "cost": {
            batch: (
                cost_us(model.score, val_e, batch),
                cost_us(lambda e: baseline(e, val_p[: len(e)]), val_e, batch),
            )
            for batch in (1, 64)
        },
        "cost default threads": cost_us(model.score, val_e, 64, threads=None),
    }


def report(seed: int, r: dict, chosen: str, rate: float) -> None:
    print(f"\nseed {seed}: {r['n_train']} train / {r['n_val']} validation images, validation accuracy "
          f"{r['accuracy']:.4f} (the detector adds fields, it changes no prediction)")
    print(f"  threshold for {rate:.0%} of validation flagged: {r['threshold']:.2f}; training images flagged "
          f"{r['train flagged']:.2%}; fit {r['fit_s'] * 1e3:.0f} ms")
    head = (f"  {'score':<32} {'AUROC':>8} {'val':>6} {'2-fold':>7} {'dwarfs':>7} "
            + " ".join(f"{k:>9}" for k in OTHER_UNKNOWNS) + "   dwarfs per body")
    print(head)
    for name, row in r["table"].items():
        bodies = " ".join(f"{b} {v:.2f}" for b, v in row["per body"].items())
        print(f"  {name:<32} {row['auroc']:8.5f} {row['val']:6.1%} {row['val 2-fold']:7.1%} "
              f"{row['dwarf planets']:7.1%} " + " ".join(f"{row[k]:9.1%}" for k in OTHER_UNKNOWNS)
              + f"   {bodies}")
    for batch, (ours, base) in r["cost"].items():
        print(f"  cost at batch {batch:>2}: {chosen} {ours:6.1f} us/image, max softmax {base:5.1f} us/image "
              "(1 BLAS thread)")
    print(f"  cost at batch 64 with the default BLAS threads: {r['cost default threads']:.1f} us/image")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", help="default: params.yaml's train.seed")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <Class>/*.jpg")
    parser.add_argument("--extra", type=Path, default=DEFAULT_EXTRA, help="the guide's extra-classes folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    args = parser.parse_args(argv)
    cpus = pin_to_target_cpus()
    extra = sorted(args.extra.glob("*.jpg")) if args.extra.is_dir() else []
    if not (args.data.is_dir() and any(args.data.iterdir())) or not extra:
        print(f"bench-novelty: needs the real data at {args.data} and the dwarf planets at {args.extra}.\n"
              "  Pass --data DIR / --extra DIR (synthetic data says nothing about the real model).",
              file=sys.stderr)
        return 2
    params = load_params(REPO / "params.yaml")
    seeds = args.seeds or [params.train.seed]
    chosen = f"{params.novelty.method} (chosen)"
    load_before = os.getloadavg()
    print(f"bench-novelty: seeds {seeds}, novelty {params.novelty.model_dump()}, {len(extra)} dwarf planets, "
          f"{N_SYNTHETIC} each of {', '.join(OTHER_UNKNOWNS)}; {cpus}, load average {load_before[0]:.1f}")
    root = Path(tempfile.mkdtemp(prefix="orbit-bench-novelty-"))
    results = {}
    try:
        for seed in seeds:
            start = time.perf_counter()
            ws = train_workspace(root, args.data, seed)
            print(f"  seed {seed}: trained in {time.perf_counter() - start:.0f} s", flush=True)
            results[seed] = bench_seed(ws, extra, params.novelty, seed)
            report(seed, results[seed], params.novelty.method, params.novelty.false_unknown_rate)
    finally:
        if args.keep:
            print(f"  workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    rows = [results[s]["table"][chosen] for s in seeds]
    base = [results[s]["table"]["max softmax (baseline)"] for s in seeds]
    worst_auroc, worst_dwarfs = min(r["auroc"] for r in rows), min(r["dwarf planets"] for r in rows)
    worst_val = max(max(r["val"], r["val 2-fold"]) for r in rows)
    worst_other = {k: min(r[k] for r in rows) for k in OTHER_UNKNOWNS}
    accuracy = [results[s]["accuracy"] for s in seeds]
    print(f"\nsummary over seeds {seeds} ({chosen}; baseline = max softmax probability, same models)")
    base_auroc = min(b["auroc"] for b in base)
    print(f"  AUROC vs dwarf planets   min {worst_auroc:.5f} (baseline {base_auroc:.4f})   "
          f"target >= {TARGET_AUROC}: {_verdict(worst_auroc >= TARGET_AUROC)}")
    base_dwarfs = min(b["dwarf planets"] for b in base)
    print(f"  dwarf planets flagged    min {worst_dwarfs:.1%} (baseline {base_dwarfs:.1%})   "
          f"target >= {TARGET_FLAGGED:.0%}: {_verdict(worst_dwarfs >= TARGET_FLAGGED)}")
    print(f"  known (val) flagged      max {worst_val:.1%} (in-sample or 2-fold held-out)   "
          f"target <= {MAX_KNOWN_FLAGGED:.0%}: {_verdict(worst_val <= MAX_KNOWN_FLAGGED)}")
    for k, v in worst_other.items():
        print(f"  {k + ' flagged':<24} min {v:.1%} (baseline {min(b[k] for b in base):.1%})   "
              f"target >= {TARGET_FLAGGED:.0%}: {_verdict(v >= TARGET_FLAGGED)}")
    print(f"  accuracy on known images {' '.join(f'{a:.4f}' for a in accuracy)} "
          "(unchanged: the detector only adds fields)")
    for batch in (1, 64):
        ours = max(results[s]["cost"][batch][0] for s in seeds)
        print(f"  cost per image, batch {batch:>2}: {ours:.1f} us (max over seeds; 1 BLAS thread)")
    default = max(results[s]["cost default threads"] for s in seeds)
    print(f"  cost per image, batch 64: {default:.1f} us with the default BLAS threads (max over seeds)")
    load_after = os.getloadavg()
    n_cpus = len(os.sched_getaffinity(0))
    busy = max(load_before[0], load_after[0]) > n_cpus
    note = f" (above {n_cpus} CPUs: other work shared the cores, times are inflated)"
    print(f"  load average             {load_before[0]:.1f} before, {load_after[0]:.1f} after"
          f"{note if busy else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
