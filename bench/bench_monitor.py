"""`make bench-monitor`: the drift check on real images, and what logging a prediction costs.

Data: ../shared/data/planets/raw (10 known classes) and extra-data/extra-classes (dwarf planets the model
never saw). A reference that overlaps the traffic would flatter the false-alarm rate, so the raw images
are cut into 5 stratified folds and each rotation uses 3 folds to train a model, 1 as the reference
(the "validation split") and 1 as traffic that neither the model nor the reference has seen. Per rotation,
10 windows of each kind are drawn from the traffic fold:

- known:  200 known images                         target: <= 5 % of windows raise drift
- dwarf:  150 known + 50 dwarf planets (25 %)      target: >= 95 % raise drift
- darker: 200 known images, 30 % darker            target: >= 95 %
- blurred: 200 known images, Gaussian blur         target: >= 95 %
- small:  50 images, half dwarf planets (< min_n)  target: every verdict null

The model of each rotation is the Keras model as a sub-model returning (probabilities, penultimate
embedding), the same two outputs ml.inference.Predictor reads from the exported graph (exporting 5 models
to ONNX would only add minutes). Two novelty scores, each with its threshold at 1 % of the reference
flagged: ml.novelty.NoveltyModel (what the service runs, params.yaml `novelty`) and 1 - max(probability)
as a baseline.

    python bench/bench_monitor.py [--rotations 5] [--windows 10] [--data DIR] [--extra DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cpus import pin_to_target_cpus  # bench/ is on sys.path when run as a script
from PIL import Image, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.bundle import MODEL_NAME  # noqa: E402
from ml.novelty import NoveltyModel  # noqa: E402
from ml.params import load_params  # noqa: E402
from ml.prepare import list_images  # noqa: E402
from monitor import drift  # noqa: E402
from monitor.log import PredictionLog  # noqa: E402
from monitor.records import LogEntry, observe_batch, upload_info  # noqa: E402
from monitor.reference import build_reference, records_for_images  # noqa: E402
from monitor.sinks import DirSink  # noqa: E402

SHARED = Path(os.environ.get("ORBIT_REAL_DATA", REPO.parent / "shared" / "data" / "planets" / "raw"))
EXTRA = SHARED.parent / "extra-data" / "extra-classes"
WINDOW, DWARF_SHARE, DARKER, BLUR_RADIUS, SMALL = 200, 0.25, 0.7, 2.0, 50
TARGET_FALSE, TARGET_FOUND = 0.05, 0.95
MODEL_TAG = f"{MODEL_NAME}:bench"


class KerasStandIn:
    """The Predictor's shape (classes, preprocess, run -> (probabilities, embedding)) over a Keras model."""

    def __init__(self, model, classes: list[str], config):
        import keras

        head = model.get_layer("probabilities")
        self.graph = keras.Model(model.inputs, [model.output, head.input])
        self.classes, self.preprocess = classes, config

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, embedding = self.graph.predict_on_batch(x)
        return np.asarray(probabilities, np.float32), np.asarray(embedding, np.float32)


class MaxProbabilityNovelty:
    """Stand-in for ml.novelty.NoveltyModel: 1 - max(probability); threshold flags 1 % of validation."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    @classmethod
    def fit(cls, val_top_probability: np.ndarray, false_unknown_rate: float = 0.01) -> MaxProbabilityNovelty:
        return cls(float(np.quantile(1 - val_top_probability, 1 - false_unknown_rate)))

    def score(self, embeddings: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
        return 1.0 - probabilities.max(axis=1)


def train_standin(paths, labels, classes, params, seed: int) -> tuple[KerasStandIn, np.ndarray]:
    import math

    from ml.model import build_model
    from ml.preprocess import preprocess
    from ml.runtime import make_deterministic

    make_deterministic(seed)
    config = params.prepare.preprocess
    x = np.stack([preprocess(p, config) for p in paths])
    batch = params.prepare.batch_size
    model = build_model(config.input_shape, len(classes), params.train, math.ceil(len(x) / batch))
    model.fit(x, labels, batch_size=batch, epochs=params.train.epochs, verbose=0, shuffle=True)
    predictor = KerasStandIn(model, classes, config)
    return predictor, predictor.run(x)[1]


def transformed(paths, folder: Path, change) -> list[Path]:
    """Re-encode each image after `change` (as an upload would arrive), JPEG quality 95 like the data."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        with Image.open(path) as image:
            target = folder / Path(path).name
            change(image.convert("RGB")).save(target, format="JPEG", quality=95)
        out.append(target)
    return out


def rate(results: list[dict]) -> float:
    return float(np.mean([r["drift"] is True for r in results]))


def rotation(
    r: int, folds, inventory, extra_paths, params, args, tmp: Path
) -> dict[tuple[str, str], list[dict]]:
    k = len(folds)
    traffic_idx, ref_idx = folds[r], folds[(r + 1) % k]
    train_idx = np.concatenate([folds[i] for i in range(k) if i not in (r, (r + 1) % k)])
    paths = np.asarray(inventory.paths)
    started = time.perf_counter()
    predictor, train_embeddings = train_standin(
        paths[train_idx], inventory.labels[train_idx], inventory.classes, params, seed=77 + r
    )
    trained = time.perf_counter() - started
    probe = MaxProbabilityNovelty(threshold=1.0)
    probed = records_for_images(predictor, list(paths[ref_idx]), probe, model=MODEL_TAG, data_version="bench")
    ref_top = np.asarray([x.top_probability for x in probed])
    ref_embeddings = np.asarray([x.embedding for x in probed], np.float32)
    novelties = {
        "maxprob": MaxProbabilityNovelty.fit(ref_top),
        # the service's detector (ml/novelty.py), fitted as train fits it: training embeddings, threshold on
        # the reference (validation) fold for params.novelty.false_unknown_rate
        "novelty": NoveltyModel.fit(
            train_embeddings, inventory.labels[train_idx], ref_embeddings, params=params.novelty
        ),
    }
    sources = {
        "reference": list(paths[ref_idx]),
        "known": list(paths[traffic_idx]),
        "darker": transformed(
            paths[traffic_idx], tmp / f"dark{r}", lambda im: ImageEnhance.Brightness(im).enhance(DARKER)
        ),
        "blurred": transformed(
            paths[traffic_idx], tmp / f"blur{r}", lambda im: im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        ),
        "dwarfs": list(extra_paths),
    }
    pools: dict[str, dict[str, list]] = {}
    for name, novelty in novelties.items():
        if name not in args.novelty:
            continue
        pools[name] = {
            kind: records_for_images(predictor, files, novelty, model=MODEL_TAG, data_version="bench")
            for kind, files in sources.items()
        }
        pool = pools[name]
        truth = [inventory.classes[y] for y in inventory.labels[traffic_idx]]
        accuracy = np.mean([x.prediction == t for x, t in zip(pool["known"], truth, strict=True)])
        flagged = {
            kind: np.mean([x.unknown for x in pool[kind]]) for kind in ("reference", "known", "dwarfs")
        }
        print(
            f"rotation {r + 1} [{name}]: trained on {len(train_idx)} in {trained:.0f} s, accuracy on traffic "
            f"{accuracy:.3f}; unknown rate: reference {flagged['reference']:.3f}, "
            f"known {flagged['known']:.3f}, "
            f"dwarfs {flagged['dwarfs']:.3f}",
            flush=True,
        )
    rng = np.random.default_rng(1000 + r)
    n_known, n_dwarfs = len(traffic_idx), len(extra_paths)
    n_dwarf = int(WINDOW * DWARF_SHARE)
    out: dict[tuple[str, str], list[dict]] = {}
    for w in range(args.windows):
        picks = {
            "known": (rng.choice(n_known, WINDOW, replace=False), None),
            "dwarf": (
                rng.choice(n_known, WINDOW - n_dwarf, replace=False),
                rng.choice(n_dwarfs, n_dwarf, replace=False),
            ),
            "darker": (rng.choice(n_known, WINDOW, replace=False), None),
            "blurred": (rng.choice(n_known, WINDOW, replace=False), None),
            "small": (
                rng.choice(n_known, SMALL // 2, replace=False),
                rng.choice(n_dwarfs, SMALL // 2, replace=False),
            ),
        }
        source = {
            "known": "known",
            "dwarf": "known",
            "darker": "darker",
            "blurred": "blurred",
            "small": "known",
        }
        for name, pool in pools.items():
            reference = build_reference(pool["reference"])
            for kind, (first, dwarfs) in picks.items():
                window = [pool[source[kind]][i] for i in first]
                window += [pool["dwarfs"][i] for i in dwarfs] if dwarfs is not None else []
                result = drift.check(reference, window, alpha=args.alpha, seed=r * 1000 + w)
                out.setdefault((name, kind), []).append(result)
    return out


def _blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def logging_cost(config, tmp: Path, repeats: int = 20_000) -> dict[str, float]:
    """Microseconds per prediction, as the service logs it: describing it with its batch of 64 (statistics,
    packed embedding, hash; the inference thread), the request's record() (time, id, buffer append), the
    flush thread's JSON line, or that line written to stdout instead.

    Measured first, before TensorFlow is imported: its idle thread pools spin after each model call and
    would bill their CPU time to whatever is timed next on 2 cores."""
    import hashlib

    from ml.preprocess import preprocess

    upload = (sorted(SHARED.glob("*/*.jpg"))[:1] or [None])[0]
    upload = upload.read_bytes() if upload else _blank_jpeg()
    rng = np.random.default_rng(0)
    batch = 64
    probabilities = np.full((batch, 10), 0.01, np.float32)
    probabilities[:, 3] = 0.91
    embeddings = rng.random((batch, 128)).astype(np.float32)
    pixels = np.stack([preprocess(upload, config)] * batch)
    classes = [f"c{i}" for i in range(10)]
    info = upload_info(upload)
    rounds = 60
    observations = []
    start = time.perf_counter()
    for _ in range(rounds):
        observations = observe_batch(
            classes=classes, probabilities=probabilities, embeddings=embeddings, novelty=np.full(batch, 0.1),
            unknown=np.zeros(batch, bool), pixels=pixels,
            uploads=[{**info, "sha256": hashlib.sha256(upload).hexdigest()} for _ in range(batch)],
        )
    observe = (time.perf_counter() - start) / (rounds * batch) * 1e6
    log = PredictionLog(DirSink(tmp / "log"), model=MODEL_TAG, max_records=repeats + 1, flush_records=1000)
    start = time.perf_counter()
    for i in range(repeats):
        log.record(LogEntry(datetime.now(UTC), str(i), MODEL_TAG, "bench", observations[i % batch]), upload)
    per_record = (time.perf_counter() - start) / repeats * 1e6
    start = time.perf_counter()
    log.close()
    close_s = time.perf_counter() - start
    entries = [LogEntry(datetime.now(UTC), str(i), MODEL_TAG, "bench", o) for i, o in enumerate(observations)]
    n = 20 * batch
    start = time.perf_counter()
    "".join([entries[i % batch].json_line() + "\n" for i in range(n)]).encode()
    flush = (time.perf_counter() - start) / n * 1e6
    with open(os.devnull, "w") as devnull:
        start = time.perf_counter()
        for i in range(n):
            devnull.write(entries[i % batch].json_line() + "\n")
        stdout = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(200):
        preprocess(upload, config)
    decode = (time.perf_counter() - start) / 200 * 1e6
    return {"observe": observe, "record": per_record, "flush": flush, "stdout": stdout, "decode": decode,
            "close_s": close_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=5, help="folds used as traffic (1-5)")
    parser.add_argument("--windows", type=int, default=10, help="windows of each kind per rotation")
    parser.add_argument("--alpha", type=float, default=drift.DEFAULT_ALPHA)
    parser.add_argument(
        "--novelty",
        nargs="+",
        choices=("maxprob", "novelty"),
        default=["maxprob", "novelty"],
        help="novelty scores to run: 1 - max(p) (a baseline), the NoveltyModel the service runs",
    )
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--extra", type=Path, default=EXTRA)
    args = parser.parse_args()
    for folder in (args.data, args.extra):
        if not folder.is_dir():
            sys.exit(f"bench-monitor: {folder} not found; it needs the real data (../shared/data/planets)")
    print(f"bench-monitor: {pin_to_target_cpus()}; shared machine, times are noisy")
    with tempfile.TemporaryDirectory() as tmp:
        params = load_params(REPO / "params.yaml")
        cost = logging_cost(params.prepare.preprocess, Path(tmp))
    from ml.runtime import import_tensorflow

    import_tensorflow()  # without its start-up banner
    from sklearn.model_selection import StratifiedKFold

    params = load_params(REPO / "params.yaml")
    inventory = list_images(args.data)
    extra_paths = sorted(args.extra.glob("*.jpg"))
    folds = [
        idx
        for _, idx in StratifiedKFold(5, shuffle=True, random_state=77).split(
            inventory.paths, inventory.labels
        )
    ]
    results: dict[tuple[str, str], list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rotations):
            out = rotation(r, folds, inventory, extra_paths, params, args, Path(tmp))
            for key, values in out.items():
                results.setdefault(key, []).extend(values)
    check_s = time.perf_counter() - started
    ok = True  # the targets are the service's: the NoveltyModel; 1 - max(p) is printed as a baseline only
    for name in args.novelty:
        n = len(results[(name, "known")])
        what = "NoveltyModel (the service's)" if name == "novelty" else "1 - max(p) (baseline, not a target)"
        print(
            f"\n[{what}] {n} windows of each kind ({args.rotations} rotations x "
            f"{args.windows}), alpha {args.alpha}, min_n {drift.DEFAULT_MIN_N}, "
            f"{drift.DEFAULT_PERMUTATIONS} permutations"
        )
        rows = [
            ("known (200 known images)", "known", lambda v: v <= TARGET_FALSE, f"<= {TARGET_FALSE:.0%}"),
            (
                f"dwarf ({DWARF_SHARE:.0%} dwarf planets)",
                "dwarf",
                lambda v: v >= TARGET_FOUND,
                f">= {TARGET_FOUND:.0%}",
            ),
            (f"darker ({1 - DARKER:.0%})", "darker", lambda v: v >= TARGET_FOUND, f">= {TARGET_FOUND:.0%}"),
            (
                f"blurred (Gaussian r={BLUR_RADIUS} px at 128 px)",
                "blurred",
                lambda v: v >= TARGET_FOUND,
                f">= {TARGET_FOUND:.0%}",
            ),
        ]
        print(f"  {'window':<40} {'drift raised':>12}  target")
        for label, kind, passes, target in rows:
            value = rate(results[(name, kind)])
            ok &= passes(value) or name != "novelty"
            print(f"  {label:<40} {value:>12.1%}  {target}  {'PASS' if passes(value) else 'FAIL'}")
        nulls = np.mean([x["drift"] is None for x in results[(name, "small")]])
        ok &= nulls == 1 or name != "novelty"
        verdict = "PASS" if nulls == 1 else "FAIL"
        label = f"small ({SMALL} images, half dwarf)"
        print(f"  {label:<40} {'null ' + format(nulls, '.0%'):>12}  all null  {verdict}")
        for kind in ("known", "dwarf", "darker", "blurred"):
            fired: dict[str, int] = {}
            for res in results[(name, kind)]:
                for check, c in res["checks"].items():
                    fired[check] = fired.get(check, 0) + (c["verdict"] == "drift")
            top = ", ".join(f"{k} {v}" for k, v in sorted(fired.items(), key=lambda kv: -kv[1])[:5] if v)
            print(f"  checks that fired on {kind}: {top or 'none'}")
    print(f"\n{check_s:.0f} s in all")
    print("\nlogging cost per prediction (hot path), microseconds:")
    print(f"  describe it with its batch of 64 (stats, hash, JSON) {cost['observe']:8.1f}  inference thread")
    print(f"  the request's record() (time, id, buffer append)     {cost['record']:8.1f}  event loop")
    print(f"  its JSON line when the buffer is flushed             {cost['flush']:8.1f}  flush thread")
    print(f"  alternative: the JSON line written to stdout         {cost['stdout']:8.1f}")
    print(f"  for scale: decode + preprocess of a 128 px JPEG      {cost['decode']:8.1f}")
    print(f"  close() flushing 20,000 buffered records to a folder: {cost['close_s']:.2f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
