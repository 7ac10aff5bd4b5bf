"""`make demo`: the whole orbit loop on loopback, in the order a newcomer should see it.

Each step is the same command a developer would type (`python -m ml.data`, `dvc repro`, `dvc push`,
`bentoml serve`), run in turn with its output shown, so the demo teaches the real workflow rather than
hiding it behind a script. The server it starts is stopped again; the bucket is stopped only if the demo
started it, and its data stays in `.orbit/bucket` for the next `make bucket-start`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from local.server import ServerError, running_server
from ml.bundle import MODEL_DIR, read_bundle
from ml.data import SOURCES
from ml.params import ParamsError, load_params

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STEPS = 6
SAMPLES_PER_RUN = 5


def _style(code: str, stream=sys.stdout) -> tuple[str, str]:
    """ANSI style for a terminal; plain text in logs, pipes and with NO_COLOR set."""
    if stream.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m", "\033[0m"
    return "", ""


BOLD, RESET = _style("1")
RED, RED_RESET = _style("31", sys.stderr)


class DemoError(RuntimeError):
    """A step failed; the message says which and what to try."""


def _banner(number: int, title: str) -> float:
    print(f"\n{BOLD}[{number}/{STEPS}] {title}{RESET}", flush=True)
    return time.monotonic()


def _done(started: float, what: str = "done") -> None:
    print(f"      {what} in {time.monotonic() - started:.1f} s", flush=True)


def _run(root: Path, *args: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
    print(f"      $ {' '.join(args)}", flush=True)
    # dvc.yaml's stages run `python -m ...`: make it this environment's python, however the demo was started.
    env = dict(
        os.environ,
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(args, cwd=root, env=env)
    if check and proc.returncode != 0:
        raise DemoError(f"{what} failed (exit {proc.returncode}); the output above says why")
    return proc


def _tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*/*.jpg"))


def step_data(root: Path, source: str | None = None) -> str:
    started = _banner(1, "Data: get data/raw, validate it, track it with DVC")
    if _has_images(root / "data" / "raw"):
        print("      data/raw is already here; validating it")
        _run(root, sys.executable, "-m", "ml.data", "validate", "data/raw", what="validating data/raw")
        source = "the existing data/raw"
    else:
        # ml.data falls back from a missing data.folder to the guide's archive, then to synthetic renders;
        # an explicit source (`make demo DATA_SOURCE=synthetic`, as CI's macOS and arm64 jobs) does not.
        chosen = ["--source", source] if source else []
        _run(root, sys.executable, "-m", "ml.data", "fetch", *chosen, what="fetching the data")
        source = f"fetched into data/raw{f' ({source})' if source else ''}"
    _run(root, _tool("dvc"), "add", "-q", "data/raw", what="dvc add data/raw")
    _done(started)
    return source


def step_bucket(root: Path) -> bool:
    started = _banner(2, "Bucket: emulated GCS bucket on loopback as the DVC remote")
    status = subprocess.run([sys.executable, "-m", "local.bucket", "status"], cwd=root, capture_output=True)
    was_running = status.returncode == 0
    _run(root, sys.executable, "-m", "local.bucket", "start", what="starting the bucket")
    _done(started)
    return not was_running


def step_pipeline(root: Path) -> None:
    started = _banner(3, "Pipeline: dvc repro (prepare -> train -> evaluate; only what changed runs)")
    _run(root, _tool("dvc"), "repro", what="dvc repro")
    _done(started)


def step_push(root: Path) -> None:
    started = _banner(4, "Push: data and model to the bucket")
    _run(root, _tool("dvc"), "push", what="dvc push")
    _done(started)


def _samples(root: Path, classes: list[str]) -> list[tuple[str, Path]]:
    """A few validation images (never seen in training) of different classes, from prepare's manifest."""
    manifest = json.loads((root / "data" / "prepared" / "manifest.json").read_text())
    by_class: dict[str, list[str]] = {}
    for relative in manifest["files"]["val"]:
        by_class.setdefault(relative.split("/")[0], []).append(relative)
    step = max(1, len(classes) // SAMPLES_PER_RUN)
    picks = []
    for name in classes[::step][:SAMPLES_PER_RUN]:
        files = by_class.get(name, [])
        if files:
            picks.append((name, root / "data" / "raw" / files[len(files) // 2]))
    return picks


def step_serve(root: Path) -> list[dict]:
    started = _banner(5, "Serve: package the model for BentoML, start the service, ask it")
    _run(root, sys.executable, "-m", "serving.package", "--if-needed", what="packaging the model")
    meta = read_bundle(root / MODEL_DIR)
    results = []
    try:
        with running_server(cwd=root, log_path=root / ".orbit" / "logs" / "demo-serve.log") as server:
            print(f"      service ready at {server.url} after {server.ready_after:.1f} s")
            print(f"      {'validation image':<28} {'truth':<9} {'answer':<9} {'p':>6}")
            for truth, path in _samples(root, meta.classes):
                answer = server.predict(path)
                p = answer["probabilities"][answer["prediction"]]
                mark = "ok" if answer["prediction"] == truth else "WRONG"
                if answer.get("unknown"):  # the service thinks the image is none of the known classes
                    mark += f"  unknown (novelty {answer['novelty']:.1f})"
                print(f"      {path.name:<28} {truth:<9} {answer['prediction']:<9} {p:6.3f}  {mark}")
                results.append({"truth": truth, **answer})
    except ServerError as exc:
        raise DemoError(str(exc)) from None
    print("      server stopped")
    _done(started)
    return results


def summary(root: Path, source: str, results: list[dict], elapsed: float) -> None:
    print(f"\n{BOLD}[6/{STEPS}] Summary{RESET}")
    metrics_path = root / "evaluation" / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    right = sum(r["prediction"] == r["truth"] for r in results)
    lines = [
        f"data          {source}, tracked by data/raw.dvc",
        f"validation    accuracy {metrics.get('accuracy', float('nan')):.4f}, "
        f"macro F1 {metrics.get('f1_macro', float('nan')):.4f} on {metrics.get('n_val', '?')} images",
        f"served        {right}/{len(results)} sample images answered correctly",
        "remote        pushed to the emulated bucket (data in .orbit/bucket)",
        f"total         {elapsed:.0f} s",
        "",
        "look next     evaluation/report.html   every metric and plot, one offline page",
        "              make serve               the model on http://127.0.0.1:3000 (curl example in README)",
        "              make monitor-demo        the served model watched: prediction log, drift check",
        "              make label-demo          label unknown images in Label Studio, retrain on them",
        "              make test                the whole suite",
        "              docs/deploy.md           the same loop on Google Cloud",
    ]
    print("\n".join("      " + line for line in lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=PACKAGE_ROOT, help="the orbit checkout to run in")
    parser.add_argument("--source", choices=SOURCES, help="data/raw source if absent (default: params.yaml)")
    args = parser.parse_args(argv)
    root = args.repo.resolve()
    began = time.monotonic()
    print(f"{BOLD}orbit demo{RESET}: the whole loop on this machine, no cloud account needed")
    started_bucket = False
    try:
        load_params(root / "params.yaml")  # a wrong value fails here, before any step runs
        source = step_data(root, args.source)
        started_bucket = step_bucket(root)
        step_pipeline(root)
        step_push(root)
        results = step_serve(root)
    except (DemoError, ParamsError) as exc:
        print(f"\n{RED}demo stopped:{RED_RESET} {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if started_bucket:
            subprocess.run([sys.executable, "-m", "local.bucket", "stop"], cwd=root)
    summary(root, source, results, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
