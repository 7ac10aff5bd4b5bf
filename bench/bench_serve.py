"""Load test of the real server against a guide-style baseline and against the in-process limit.

    make bench-serve          (python bench/bench_serve.py [--seconds 8] [--levels 1,16,64])
    python bench/bench_serve.py --keras-checkout DIR   (also the TensorFlow service of an older checkout)

Starts `bentoml serve` on a free loopback port for our service (the exported model on onnxruntime) and for
`bench/baseline_service.py` (the guide's style: Keras, one `model.predict` per request), sends real images
from ../shared/data/planets/raw (synthetic ones when absent) at each concurrency level, and prints
throughput, p50/p95/p99 latency, errors, ready time and worker memory before/after. Our service runs with
the prediction log off and on (ORBIT_PREDICTION_LOG) side by side: both servers are up together and each
level alternates between them in `--rounds` short rounds, so that a change of the machine's load during
the run hits both alike. BentoML alone (`bench/empty_service.py`: the same upload, no model) gives the
framework's own ceiling on this machine. The in-process limit is decode + preprocess + batched inference of
the same images in this process without HTTP, with one thread as the server's inference thread runs it:
measured between the servers' rounds at the highest level (the ratio's denominator: same minutes, merged
the same way), and after them for onnxruntime (what the server runs) against Keras `predict_on_batch` (what
it ran before). Ours runs one worker per pinned CPU, as the GKE Deployment's ORBIT_WORKERS=cpu_count does.
Uses the trained bundle in model/ if present, otherwise a small model trained and exported here on
synthetic images. Models live in a temporary BentoML store, removed at the end. Figures are only comparable
within one run: the CPU is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402
from cpus import pin_to_target_cpus, usable_cpus  # noqa: E402  (bench/ is on sys.path as a script)

from local.server import running_server  # noqa: E402
from ml.bundle import KERAS_FILE, META_FILE, ONNX_FILE  # noqa: E402

REAL_DATA = Path(os.environ.get("ORBIT_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "planets" / "raw"))
OURS = "serving.service:PlanetClassifier"
BASELINE = "bench.baseline_service:GuideStyleClassifier"
EMPTY = "bench.empty_service:EmptyService"
BOUNDARY = "orbit-bench-boundary"
#: issue 9's targets. Throughput: the TensorFlow server's c=16 and c=64 figures (docs/serving.md, 2026-11-27);
#: memory: a third of its 680 MB worker; ready: a third of the guide-style baseline's, in the same run.
TARGETS = {
    "speedup_c16": 20.0, "p99_c16_ms": 50.0, "ready_ratio": 1 / 3, "limit_ratio_c64": 0.6,
    "rss_mb": 680 / 3, "req_s": {16: 725.0, 64: 1067.0},
}


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @staticmethod
    def merged(rounds: list[LevelResult]) -> LevelResult:
        """Several rounds at one level as one result (throughput over their summed time)."""
        return LevelResult(
            rounds[0].concurrency, sum(r.requests for r in rounds), sum(r.errors for r in rounds),
            sum(r.seconds for r in rounds), [ms for r in rounds for ms in r.latencies_ms],
        )


@dataclass
class ServerResult:
    name: str
    ready_s: float
    rss_before_mb: float
    rss_after_mb: float
    levels: dict[int, LevelResult]
    rounds: dict[int, list[LevelResult]] | None = None


def log(message: str) -> None:
    print(message, flush=True)


def load_images(limit: int) -> tuple[list[bytes], str]:
    files = sorted(REAL_DATA.glob("*/*.jpg")) if REAL_DATA.is_dir() else []
    if files:
        step = max(1, len(files) // limit)
        return [f.read_bytes() for f in files[::step][:limit]], f"{min(limit, len(files))} real images"
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(limit):
        pixels = np.zeros((128, 128, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:128, 0:128]
        pixels[(xx - 64) ** 2 + (yy - 64) ** 2 < 40**2] = rng.integers(30, 255, 3)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        images.append(buffer.getvalue())
    return images, f"{limit} synthetic images (real data not found at {REAL_DATA})"


def train_small_model(folder: Path) -> None:
    """The pipeline's architecture (ml.model, params.yaml), one epoch on noise, exported like train does."""
    import keras

    from ml.bundle import BundleMeta, write_bundle_meta
    from ml.export import export_onnx, runtime_versions
    from ml.model import build_model
    from ml.params import load_params
    from ml.synthetic import BODIES as CLASSES

    params = load_params(REPO_ROOT / "params.yaml")
    config = params.prepare.preprocess
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((128, *config.input_shape), dtype=np.float32)
    y = rng.integers(0, len(CLASSES), len(x))
    model = build_model(config.input_shape, len(CLASSES), params.train)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / KERAS_FILE)
    width = export_onnx(model, folder / ONNX_FILE)
    write_bundle_meta(folder, BundleMeta(
        classes=list(CLASSES), preprocess=config.to_dict(), params={"train": params.train.model_dump()},
        versions=runtime_versions(), n_train=len(x), embedding_dim=width,
    ))


def worker_rss_mb(pid: int) -> float:
    """Resident memory of the largest worker process of `bentoml serve` (the target is per worker;
    ORBIT_WORKERS=2 runs two, each with its own model)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return float("nan")
    largest = 0
    for child in children:
        try:
            largest = max(largest, child.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return largest / 2**20


def multipart_body(data: bytes) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="planet.jpg"\r\n'
    return (head + "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


async def run_level(url: str, bodies: list[bytes], concurrency: int, max_requests: int, seconds: float):
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
    ) as session:

        async def user() -> None:
            nonlocal errors, sent
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                latencies.append((time.perf_counter() - start) * 1000)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return LevelResult(concurrency, len(latencies), errors, elapsed, latencies)


@dataclass
class Started:
    name: str
    url: str
    pid: int
    ready_s: float
    rss_before_mb: float


@contextlib.contextmanager
def started(name: str, target: str, env: dict[str, str], bodies: list[bytes], workdir: Path,
            cwd: Path = REPO_ROOT, route: str = "/predict"):
    """A running, warmed-up server; stopped (SIGTERM) when the block ends."""
    log(f"==> {name}: starting {target}" + (f" from {cwd}" if cwd != REPO_ROOT else ""))
    with running_server(target, cwd=cwd, env={**env, "PYTHONPATH": str(cwd)},
                        log_path=workdir / f"{name}.log", ready_timeout=120) as server:
        log(f"    ready after {server.ready_after:.1f} s; warming up")
        asyncio.run(run_level(f"{server.url}{route}", bodies, 4, 40, 20))
        yield Started(name, f"{server.url}{route}", server.process.pid, server.ready_after,
                      worker_rss_mb(server.process.pid))


def measure(servers: list[Started], bodies: list[bytes], levels: list[int], seconds: float,
            max_requests: int, rounds: int = 1,
            after_round: Callable[[int, float], object] | None = None) -> dict[str, ServerResult]:
    """Each level on every server, alternating between them in `rounds` rounds (order reversed every
    other round); per server and level the rounds are merged, and kept in `ServerResult.rounds`.
    `after_round(concurrency, seconds)` runs after each round, in the same minutes as the servers."""
    per_round: dict[str, dict[int, list[LevelResult]]] = {s.name: {c: [] for c in levels} for s in servers}
    for concurrency in levels:
        for r in range(rounds):
            for server in servers if r % 2 == 0 else servers[::-1]:
                share = max(1, max_requests // rounds)
                result = asyncio.run(run_level(server.url, bodies, concurrency, share, seconds / rounds))
                per_round[server.name][concurrency].append(result)
            if after_round is not None:
                after_round(concurrency, seconds / rounds)
        for server in servers:
            result = LevelResult.merged(per_round[server.name][concurrency])
            log(
                f"    {server.name:<9} c={concurrency:<3} {result.throughput:7.1f} req/s  "
                f"p50 {result.percentile(50):7.1f} ms  "
                f"p99 {result.percentile(99):7.1f} ms  errors {result.errors}/{result.requests}"
            )
    return {
        s.name: ServerResult(
            s.name, s.ready_s, s.rss_before_mb, worker_rss_mb(s.pid),
            {c: LevelResult.merged(per_round[s.name][c]) for c in levels}, per_round[s.name],
        )
        for s in servers
    }


def bench_server(
    name: str,
    target: str,
    env: dict[str, str],
    bodies: list[bytes],
    levels: list[int],
    seconds: float,
    max_requests: int,
    workdir: Path,
    cwd: Path = REPO_ROOT,
    route: str = "/predict",
) -> ServerResult:
    with started(name, target, env, bodies, workdir, cwd, route) as server:
        return measure([server], bodies, levels, seconds, max_requests)[name]


def _run_for(classify, images: list[bytes], seconds: float) -> LevelResult:
    """Batches of 64 for about `seconds`; the images done and the time taken, as a level's result."""
    classify(images[:64])
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for start in range(0, len(images), 64):
            done += len(classify(images[start : start + 64]))
    return LevelResult(64, done, 0, time.perf_counter() - began, [])


class InterleavedLimit:
    """The in-process limit measured between the servers' rounds at one level, merged like theirs (images
    over summed time), so the ratio compares the same minutes with the same estimator. The machine's load
    moves a single round by ±25 % here; the best-of-three figure after the servers (in_process_limits) is
    kept for the runtime comparison."""

    def __init__(self, model_dir: Path, images: list[bytes], level: int) -> None:
        from serving.classifier import Classifier
        from serving.config import load_settings

        # as the server runs it; in_process_limits measures the same one after the servers
        self.classifier = Classifier.load(model_dir, threads=load_settings().inference_threads)
        self.classifier.warm_up()
        self.images, self.level, self.rounds = images, level, []

    def __call__(self, concurrency: int, seconds: float) -> None:
        import threadpoolctl

        if concurrency == self.level:
            with threadpoolctl.threadpool_limits(limits=1):  # as the service sets it
                self.rounds.append(_run_for(self.classifier.classify, self.images, seconds))

    @property
    def throughput(self) -> float:
        return LevelResult.merged(self.rounds).throughput if self.rounds else float("nan")


def in_process_limits(
    classifier, model_dir: Path, images: list[bytes], seconds: float
) -> tuple[float, float]:
    """Images per second for decode + preprocess + batched inference, no HTTP: the ceiling for the server.

    For onnxruntime (the server's runtime, `classifier`) and Keras, alternating in three rounds and keeping
    each one's best, so that a change of the machine's load in the meantime does not favour either.
    """
    import threadpoolctl

    keras_classify = keras_classifier(model_dir)
    onnx_rates, keras_rates = [], []
    # numpy's BLAS (the novelty score) on one thread, as the service sets it: its default pool spins
    # against the other thread on 2 cores and halved this figure on a busy machine.
    with threadpoolctl.threadpool_limits(limits=1):
        for _ in range(3):
            onnx_rates.append(_run_for(classifier.classify, images, seconds / 3).throughput)
            keras_rates.append(_run_for(keras_classify, images, seconds / 3).throughput)
    return max(onnx_rates), max(keras_rates)


def keras_classifier(model_dir: Path):
    """The same loop with Keras `predict_on_batch` (the runtime the server used before), one TF thread."""
    from ml.runtime import import_tensorflow

    tf = import_tensorflow()
    import keras

    from serving.classifier import Classifier

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.models.load_model(model_dir / KERAS_FILE, compile=False)
    prepare = Classifier.load(model_dir).prepare

    def classify(batch: list[bytes]) -> list:
        return list(model.predict_on_batch(np.stack([prepare(b).pixels for b in batch])))

    return classify


def keras_load_seconds(model_dir: Path) -> float:
    """Import TensorFlow and load model.keras in a fresh process, as a TensorFlow server worker would."""
    import subprocess

    code = ("import time; t = time.perf_counter(); import keras, sys; "
            "keras.models.load_model(sys.argv[1], compile=False); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir / KERAS_FILE)], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(out.stdout.split()[-1])


def onnx_load_seconds(model_dir: Path) -> float:
    """Import onnxruntime and open model.onnx in a fresh process, as our server worker does."""
    import subprocess

    code = ("import time; t = time.perf_counter(); import sys; from ml.inference import Predictor; "
            "Predictor.load(__import__('pathlib').Path(sys.argv[1])); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT)
    return float(out.stdout.split()[-1])


def package_keras_checkout(checkout: Path, model_dir: Path) -> str:
    """Store the model for the TensorFlow service of an older checkout (`git archive <commit>`); its tag.

    That service reads model.keras and meta.json, so its own `serving.package` stores them; the side by side
    run shows the runtimes on the same machine at the same time, which absolute figures cannot here.
    """
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "serving.package", "--model-dir", str(model_dir)], cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True, timeout=300,
    )
    if out.returncode != 0:
        raise SystemExit(f"packaging with {checkout} failed:\n{out.stderr[-2000:]}")
    return next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("stored "))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time limit per concurrency level")
    parser.add_argument("--requests", type=int, default=6000, help="request limit per level and server")
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels, comma-separated")
    parser.add_argument("--images", type=int, default=200, help="distinct images to send")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds per level alternating between ours, ours+log and BentoML alone")
    parser.add_argument("--keras-checkout", type=Path, default=None,
                        help="a checkout whose service still runs Keras, to run side by side (git archive)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.levels.split(",")]
    pinned = pin_to_target_cpus()
    # Ours runs as the GKE Deployment runs it (ORBIT_WORKERS=cpu_count) in a pod of the CPUs the targets are
    # stated for; cpu_count itself would count the machine's cores, not this process's affinity.
    os.environ.setdefault("ORBIT_WORKERS", str(usable_cpus()))
    log(f"==> cpus: {pinned}; workers per server: {os.environ['ORBIT_WORKERS']}")

    workdir = Path(tempfile.mkdtemp(prefix="orbit-bench-serve-"))
    try:
        os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
        (workdir / "bentoml" / "tmp").mkdir(parents=True)
        from serving.package import package

        model_dir = REPO_ROOT / "model"
        if all((model_dir / name).is_file() for name in (KERAS_FILE, ONNX_FILE, META_FILE)):
            log(f"==> model: the trained bundle in {model_dir}")
        else:
            model_dir = workdir / "model"
            log(
                "==> model: no trained bundle in model/, training a small stand-in on synthetic data "
                "(make repro gives the real one)"
            )
            train_small_model(model_dir)
        tag, _ = package(model_dir, REPO_ROOT)
        images, described = load_images(args.images)
        log(f"==> images: {described}")
        bodies = [multipart_body(data) for data in images]
        # The served model holds no Keras file; the baseline reads it from the bundle folder.
        env = {**os.environ, "ORBIT_MODEL_TAG": tag, "ORBIT_BENCH_KERAS_MODEL": str(model_dir / KERAS_FILE)}

        # Ours without and with the prediction log (ORBIT_PREDICTION_LOG, here a folder: the request's path
        # is the same as with a bucket, the upload runs on the log's own thread), and BentoML alone taking
        # the same uploads: up together, measured in alternating rounds.
        log_dir = workdir / "prediction-log"
        interleaved = InterleavedLimit(model_dir, images, max(levels))
        with contextlib.ExitStack() as stack:
            side_by_side = [
                stack.enter_context(started("ours", OURS, env, bodies, workdir)),
                stack.enter_context(started("ours+log", OURS, {**env, "ORBIT_PREDICTION_LOG": str(log_dir)},
                                            bodies, workdir)),
                stack.enter_context(started("bentoml", EMPTY, env, bodies, workdir, route="/upload")),
            ]
            log(f"==> ours, ours+log and BentoML alone, {args.rounds} alternating rounds per level")
            measured = measure(side_by_side, bodies, levels, args.seconds, args.requests, args.rounds,
                               after_round=interleaved)
        ours, logged, empty = measured["ours"], measured["ours+log"], measured["bentoml"]
        records_written = sum(p.read_bytes().count(b"\n") for p in log_dir.rglob("*.jsonl"))
        answered = sum(r.requests - r.errors for r in logged.levels.values())
        servers = [ours, logged]
        if args.keras_checkout:
            keras_tag = package_keras_checkout(args.keras_checkout.resolve(), model_dir)
            # ORBIT_WORKERS=1: that service as it was deployed (two gave it no more throughput; docs/serving)
            keras_env = {**env, "ORBIT_MODEL_TAG": keras_tag, "ORBIT_WORKERS": "1"}
            servers.append(bench_server(
                "keras", OURS, keras_env, bodies, levels, args.seconds,
                args.requests, workdir, cwd=args.keras_checkout.resolve(),
            ))
        baseline = bench_server(
            "baseline", BASELINE, env, bodies, levels, args.seconds, args.requests, workdir
        )
        log("==> in-process limit: decode + preprocess + batched inference (batches of 64), no HTTP")
        limit, keras_limit = in_process_limits(interleaved.classifier, model_dir, images, args.seconds)
        log(f"    onnxruntime {limit:.1f} images/s, keras {keras_limit:.1f} images/s")
        log("==> load in a fresh process: import the runtime + open the model")
        load_onnx, load_keras = onnx_load_seconds(model_dir), keras_load_seconds(model_dir)
        log(f"    onnxruntime {load_onnx:.2f} s, keras {load_keras:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'server':<9} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    servers += [baseline, empty]
    for server in servers:
        for c, r in server.levels.items():
            print(
                f"{server.name:<9} {c:>3} {r.throughput:>8.1f} "
                f"{r.percentile(50):>8.1f} {r.percentile(95):>8.1f} "
                f"{r.percentile(99):>8.1f} {r.errors:>7}"
            )
    for server in servers:
        print(
            f"{server.name:<9} ready {server.ready_s:.1f} s, "
            f"worker RSS {server.rss_before_mb:.0f} MB before, "
            f"{server.rss_after_mb:.0f} MB after"
        )
    print(f"bentoml = BentoML alone: a service taking the same upload without a model ({EMPTY})")
    print(f"in-process limit (batches of 64), best of 3 rounds after the servers: onnxruntime {limit:.1f} "
          f"images/s, keras {keras_limit:.1f}")
    each = ", ".join(f"{r.throughput:.0f}" for r in interleaved.rounds)
    print(f"in-process limit between the c={interleaved.level} rounds (onnxruntime): "
          f"{interleaved.throughput:.1f} images/s (rounds: {each})")
    print(f"runtime + model load in a fresh process: onnxruntime {load_onnx:.2f} s, keras {load_keras:.2f} s")
    print()
    if 16 in levels:
        o16, b16 = ours.levels[16], baseline.levels[16]
        speedup = o16.throughput / b16.throughput if b16.throughput else float("inf")
        print(
            f"[{verdict(speedup >= TARGETS['speedup_c16'])}] ours/baseline at c=16: {speedup:.1f}x "
            f"(target >= {TARGETS['speedup_c16']:.0f}x)"
        )
        print(
            f"[{verdict(o16.percentile(99) <= TARGETS['p99_c16_ms'])}] "
            f"p99 at c=16: {o16.percentile(99):.1f} ms "
            f"(target <= {TARGETS['p99_c16_ms']:.0f} ms)"
        )
    keras_server = next((s for s in servers if s.name == "keras"), None)
    for c, wanted in TARGETS["req_s"].items():
        if c not in levels:
            continue
        got = ours.levels[c].throughput
        if keras_server is not None:  # same machine, same minutes: the comparison that means something
            wanted, source = keras_server.levels[c].throughput, "the Keras service in this run"
        else:
            source = "the Keras service's on 2026-11-27, docs/serving.md"
        print(f"[{verdict(got >= wanted)}] throughput at c={c}: {got:.0f} req/s "
              f"(target >= {wanted:.0f}, {source})")
    if 16 in levels:
        on, off = logged.levels[16].throughput, ours.levels[16].throughput
        pairs = zip(logged.rounds[16], ours.rounds[16], strict=True)
        each = ", ".join(f"{a.throughput / b.throughput:.0%}" for a, b in pairs if b.throughput)
        print(f"[{verdict(on >= 0.9 * off)}] throughput at c=16 with the prediction log on: {on:.0f} req/s, "
              f"{on / off:.0%} of off's {off:.0f} (target >= 90 %; rounds: {each})")
    print(f"[{verdict(records_written >= answered)}] prediction log: {records_written} records written for "
          f"{answered} answered requests after the server stopped (target: none lost)")
    errors = sum(r.errors for r in ours.levels.values())
    print(f"[{verdict(errors == 0)}] errors: {errors} (target 0)")
    ready_ratio = ours.ready_s / baseline.ready_s if baseline.ready_s else float("inf")
    print(
        f"[{verdict(ready_ratio <= TARGETS['ready_ratio'])}] ready after start: {ours.ready_s:.1f} s, "
        f"{ready_ratio:.2f} of the baseline's {baseline.ready_s:.1f} s (target <= 1/3)"
    )
    rss = max(ours.rss_before_mb, ours.rss_after_mb)
    print(f"[{verdict(rss <= TARGETS['rss_mb'])}] worker RSS: {rss:.0f} MB "
          f"(target <= {TARGETS['rss_mb']:.0f} MB)")
    if 64 in levels:
        got, floor, same = ours.levels[64].throughput, empty.levels[64].throughput, interleaved.throughput
        print(
            f"[{verdict(got / same >= TARGETS['limit_ratio_c64'])}] ours at c=64 / in-process limit in the "
            f"same rounds: {got / same:.0%} (target >= {TARGETS['limit_ratio_c64']:.0%}; of the best round "
            f"after the servers: {got / limit:.0%}); BentoML alone at c=64: {floor / same:.0%} of the limit, "
            f"ours {got / floor:.0%} of it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
