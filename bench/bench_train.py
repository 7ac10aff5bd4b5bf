"""`make bench-train`: the pipeline on the real data over 3 seeds, printing accuracy, time and memory.

Each seed runs prepare -> train -> evaluate as the DVC stages run them (`python -m ml.<stage>`, one process
each) in its own temporary workspace, so the repository's outputs are never touched. The split seed and
the training seed both change per seed. Wall time and peak RSS are measured per stage process
(os.wait4); CPU seconds are printed too because the wall clock is noisy on a shared machine. Finally a
no-op `dvc repro` is timed in a workspace whose lock file is up to date.

    python bench/bench_train.py [--seeds 77 78 79] [--data DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from cpus import pin_to_target_cpus, usable_cpus  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ORBIT_REAL_DATA", REPO.parent / "shared" / "data" / "planets" / "raw"))
STAGES = ("prepare", "train", "evaluate")
TARGET_ACCURACY, TARGET_TRAIN_S, TARGET_NOOP_S = 0.995, 15.0, 2.0


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    output: str


def run_process(args: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """Run to completion and return wall time, CPU time and peak RSS of that process alone."""
    log = tempfile.TemporaryFile(mode="w+")
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.seek(0)
    output = log.read()
    if proc.returncode != 0:
        command = " ".join(args)
        sys.exit(f"bench-train: `{command}` failed in {cwd} (exit {proc.returncode}):\n{output[-3000:]}")
    rss_unit = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / rss_unit, output)


def make_workspace(root: Path, data: Path, seed: int) -> Path:
    """A copy of what the pipeline needs (dvc.yaml, params.yaml with this seed, ml/, data/raw)."""
    ws = root / f"seed-{seed}"
    shutil.copytree(REPO / "ml", ws / "ml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", ws)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["seed"] = seed
    params["train"]["seed"] = seed
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(data, ws / "data" / "raw")
    return ws


def bench_seed(ws: Path, env: dict[str, str]) -> dict:
    runs = {stage: run_process([sys.executable, "-m", f"ml.{stage}"], ws, env) for stage in STAGES}
    metrics = json.loads((ws / "evaluation" / "metrics.json").read_text())
    return {"runs": runs, "metrics": metrics}


def time_noop_repro(ws: Path, env: dict[str, str], repeats: int = 3) -> list[float]:
    """Record the finished workspace in dvc.lock, then time `dvc repro` when nothing changed."""
    dvc = [sys.executable, "-m", "dvc"]
    run_process([*dvc, "init", "--no-scm", "-q"], ws, env)
    run_process([*dvc, "commit", "--force", "-q"], ws, env)
    times = []
    for _ in range(repeats):
        run = run_process([*dvc, "repro"], ws, env)
        if "Running stage" in run.output:
            sys.exit(f"bench-train: the no-op `dvc repro` ran a stage:\n{run.output}")
        times.append(run.wall_s)
    return times


def _join(values: list[float], digits: int) -> str:
    return "  ".join(f"{v:.{digits}f}" for v in values)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[77, 78, 79])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <Class>/*.jpg")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    args = parser.parse_args(argv)
    cpus = pin_to_target_cpus()
    if not (args.data.is_dir() and any(args.data.iterdir())):
        print(f"bench-train: the real data is not at {args.data}.\n  Put the 10 class folders there, or pass "
              "--data DIR / set ORBIT_REAL_DATA (synthetic data says nothing about the real model).",
              file=sys.stderr)
        return 2
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    root = Path(tempfile.mkdtemp(prefix="orbit-bench-train-"))
    load_before = os.getloadavg()
    print(f"bench-train: {len(args.seeds)} seeds on {args.data.name}/ with params.yaml, "
          f"{cpus}, load average {load_before[0]:.1f}")
    results = {}
    try:
        for seed in args.seeds:
            ws = make_workspace(root, args.data, seed)
            results[seed] = bench_seed(ws, env)
            r, m = results[seed]["runs"], results[seed]["metrics"]
            wrong = round((1 - m["accuracy"]) * m["n_val"])
            print(f"  seed {seed}: val acc {m['accuracy']:.4f} ({wrong} of {m['n_val']} wrong)  "
                  f"prepare {r['prepare'].wall_s:.1f} s  train {r['train'].wall_s:.1f} s "
                  f"(CPU {r['train'].cpu_s:.1f} s)  evaluate {r['evaluate'].wall_s:.1f} s", flush=True)
        noop = time_noop_repro(root / f"seed-{args.seeds[0]}", env)
    finally:
        if args.keep:
            print(f"  workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    acc = [results[s]["metrics"]["accuracy"] for s in args.seeds]
    train_wall = [results[s]["runs"]["train"].wall_s for s in args.seeds]
    train_cpu = [results[s]["runs"]["train"].cpu_s for s in args.seeds]
    peak = {st: max(results[s]["runs"][st].peak_rss_mb for s in args.seeds) for st in STAGES}
    mean_acc, spread = statistics.mean(acc), (statistics.stdev(acc) if len(acc) > 1 else 0.0)
    median_noop = statistics.median(noop)
    print("\nsummary")
    print(f"  val accuracy      mean {mean_acc:.4f}  std {spread:.4f}  min {min(acc):.4f}  "
          f"max {max(acc):.4f}   "
          f"target mean >= {TARGET_ACCURACY}: {_verdict(mean_acc >= TARGET_ACCURACY)}")
    print(f"  train stage wall  {_join(train_wall, 1)} s (max {max(train_wall):.1f})   "
          f"target <= {TARGET_TRAIN_S:.0f} s: {_verdict(max(train_wall) <= TARGET_TRAIN_S)}")
    print(f"  train stage CPU   {_join(train_cpu, 1)} s (user+sys over all threads)")
    print("  peak RSS          " + "  ".join(f"{st} {peak[st]:.0f} MB" for st in STAGES))
    print(f"  no-op dvc repro   {_join(noop, 2)} s (median {median_noop:.2f})   "
          f"target <= {TARGET_NOOP_S:.0f} s: {_verdict(median_noop <= TARGET_NOOP_S)}")
    load_after = os.getloadavg()
    n_cpus = usable_cpus()
    busy = max(load_before[0], load_after[0]) > n_cpus
    note = f" (above {n_cpus} CPUs: other work shared the cores, wall times are inflated)"
    print(f"  load average      {load_before[0]:.1f} before, {load_after[0]:.1f} after{note if busy else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
