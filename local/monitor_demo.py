"""`make monitor-demo`: the prediction log and the drift check on loopback, as they run in the cloud.

Starts the emulated bucket and the service with its prediction log in that bucket, sends known images
(the validation split), runs the drift check (expected: no drift), sends a mix where a quarter are dwarf
planets the model never saw (the guide's extra-classes from ../shared when present, synthetic renders
otherwise), runs the check again (expected: drift), says where the reports are, and stops what it started.
Each check is the command a person would type (`python -m monitor.drift ...`), shown with its output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from local.demo import BOLD, RED, RED_RESET, RESET, DemoError, _run, _tool
from local.server import ServerError, running_server

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
EXTRA_CLASSES = Path("..") / "shared" / "data" / "planets" / "extra-data" / "extra-classes"
STEPS = 7
WINDOW = 200  # images per window (fewer when the validation split is smaller)
UNKNOWN_SHARE = 0.25
FLUSH_WAIT_S = 30.0


def _banner(number: int, title: str) -> float:
    print(f"\n{BOLD}[{number}/{STEPS}] {title}{RESET}", flush=True)
    return time.monotonic()


def _validation_files(root: Path) -> list[Path]:
    manifest = root / "data" / "prepared" / "manifest.json"
    if not manifest.is_file():
        raise DemoError(f"{manifest} not found: run `make repro` (or the whole `make demo`) first")
    return [root / "data" / "raw" / f for f in json.loads(manifest.read_text())["files"]["val"]]


def _unknown_images(root: Path, n: int, out: Path) -> tuple[list[Path], str]:
    """n dwarf planets: the guide's extra-classes when present, else renders of ml.synthetic."""
    extra = (root / EXTRA_CLASSES).resolve()
    found = sorted(extra.rglob("*.jpg")) if extra.is_dir() else []
    if len(found) >= n:
        return random.Random(1).sample(found, n), f"the guide's extra-classes ({extra})"
    from ml.synthetic import UNKNOWN_BODIES, generate_unknown

    generate_unknown(out, per_body=-(-n // len(UNKNOWN_BODIES)), size=128, seed=11)
    return sorted(out.rglob("*.jpg"))[:n], f"synthetic dwarf planets ({out}; ../shared is absent)"


def _count_records(sink, tag: str) -> int:
    from monitor.log import records_prefix

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return sum(sink.get(name).count(b"\n") for name in sink.list(records_prefix(tag, day)))


def _send(url: str, images: list[Path], sink, tag: str, expected_total: int) -> dict[str, int]:
    """POST each image to /predict, then wait until the log's background flush has written them all."""
    answers = {"unknown": 0, "known": 0}
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in images:
            response = http.post("/predict", files={"image": (path.name, path.read_bytes())})
            response.raise_for_status()
            answers["unknown" if response.json()["unknown"] else "known"] += 1
    deadline = time.monotonic() + FLUSH_WAIT_S
    while (written := _count_records(sink, tag)) < expected_total:
        if time.monotonic() > deadline:
            raise DemoError(f"{written} of {expected_total} records reached the bucket in {FLUSH_WAIT_S} s")
        time.sleep(0.5)
    print(f"      sent {len(images)}: answered {answers['known']} known, {answers['unknown']} unknown; "
          f"{written} records in the bucket so far")
    return answers


def _drift(root: Path, env: dict, bucket: str, tag: str, last: int, report: Path) -> dict:
    command = [sys.executable, "-m", "monitor.drift", "--log", f"gs://{bucket}", "--reference",
               "model/reference.npz", "--model", tag, "--last", str(last), "--report", str(report), "--json"]
    print(f"      $ STORAGE_EMULATOR_HOST={env['STORAGE_EMULATOR_HOST']} python -m monitor.drift "
          + " ".join(command[3:]), flush=True)
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise DemoError(f"the drift check could not run (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    report.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    fired = [name for name, check in result["checks"].items() if check.get("verdict") == "drift"]
    verdict = {True: "DRIFT", False: "no drift", None: "no verdict"}[result["drift"]]
    print(f"      {verdict} over n={result['n']} records of {result['model']} "
          f"(checks that fired: {', '.join(fired) or 'none'})")
    return result


def run(root: Path, unknown_share: float = UNKNOWN_SHARE) -> tuple[dict, dict]:
    from local.bucket import remote_bucket, start, stop
    from monitor.sinks import GCSSink
    from serving.package import package

    state = root / ".orbit"
    out = state / "monitor-demo"
    out.mkdir(parents=True, exist_ok=True)
    if not (root / "data" / "raw.dvc").is_file():
        raise DemoError("data/raw is not tracked yet: run `make data` (or the whole `make demo`) first")

    _banner(1, "Model: dvc repro (only what changed runs; the reference stage builds model/reference.npz)")
    _run(root, _tool("dvc"), "repro", what="dvc repro")
    val = _validation_files(root)
    tag, _ = package(root / "model", root, if_needed=True)
    print(f"      serving {tag}")

    _banner(2, "Bucket: the emulated GCS bucket, where the service writes its prediction log")
    was_running = subprocess.run([sys.executable, "-m", "local.bucket", "status"], cwd=root,
                                 capture_output=True).returncode == 0
    bucket_state = start(root)
    bucket = remote_bucket(root)[1]
    env = dict(os.environ, STORAGE_EMULATOR_HOST=bucket_state.endpoint, PYTHONUNBUFFERED="1")
    os.environ["STORAGE_EMULATOR_HOST"] = bucket_state.endpoint  # for this process's GCSSink
    sink = GCSSink(bucket)
    try:
        n = min(WINDOW, len(val))
        n_unknown = int(n * unknown_share)
        unknown, origin = _unknown_images(root, n_unknown, out / "unknown")
        rng = random.Random(0)
        server_env = {"ORBIT_MODEL_TAG": tag, "ORBIT_PREDICTION_LOG": f"gs://{bucket}",
                      "STORAGE_EMULATOR_HOST": bucket_state.endpoint}
        _banner(3, f"Serve: the service with ORBIT_PREDICTION_LOG=gs://{bucket}")
        serve_log = state / "logs" / "monitor-demo-serve.log"
        with running_server(cwd=root, env=server_env, log_path=serve_log) as server:
            print(f"      service ready at {server.url} after {server.ready_after:.1f} s")
            before = _count_records(sink, tag)
            _banner(4, f"Traffic: {n} known images (validation split)")
            _send(server.url, rng.sample(val, n), sink, tag, before + n)
            _banner(5, "Drift check of those predictions (expected: no drift)")
            known = _drift(root, env, bucket, tag, n, out / "drift-known.html")
            _banner(6, f"Traffic: {n - n_unknown} known + {n_unknown} dwarf planets from {origin}")
            mix = rng.sample(val, n - n_unknown) + unknown
            rng.shuffle(mix)
            _send(server.url, mix, sink, tag, before + 2 * n)
            _banner(7, "Drift check of the mixed window (expected: drift)")
            mixed = _drift(root, env, bucket, tag, n, out / "drift-mixed.html")
        print("      server stopped (its log flushed on shutdown)")
    except ServerError as exc:
        raise DemoError(str(exc)) from None
    finally:
        if not was_running:
            stop(root, quiet=True)
            print("      bucket stopped (its objects stay in .orbit/bucket)")
    return known, mixed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.monitor_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=PACKAGE_ROOT, help="the orbit checkout to run in")
    parser.add_argument("--unknown-share", type=float, default=UNKNOWN_SHARE,
                        help=f"share of dwarf planets in the second window (default {UNKNOWN_SHARE})")
    args = parser.parse_args(argv)
    if not 0 < args.unknown_share < 1:
        parser.error("--unknown-share must be between 0 and 1")
    root = args.repo.resolve()
    print(f"{BOLD}orbit monitor demo{RESET}: prediction log and drift check, on this machine")
    try:
        known, mixed = run(root, args.unknown_share)
    except DemoError as exc:
        print(f"\n{RED}monitor demo stopped:{RED_RESET} {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"\n{BOLD}Summary{RESET}")
    for label, result, expected in (("known", known, False), ("mixed", mixed, True)):
        note = "as expected" if result["drift"] is expected else f"UNEXPECTED (expected drift={expected})"
        print(f"      {label:<6} drift={result['drift']!s:<5} n={result['n']:<4} {note}")
        print(f"             report {result['report']}")
    print("      the log     .orbit/bucket (monitoring/records/..., monitoring/images/... for kept images)")
    print("      docs        docs/monitoring.md: what each check means and what to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
