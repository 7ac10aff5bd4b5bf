"""`make label-demo`: the labelling loop end to end, on the dwarf planets the model has never seen.

1. baseline: data/raw and a trained model (`dvc repro`), its known-class accuracy;
2. Label Studio started (`make label`) and the project made from the model's class list;
3. 40 images of each dwarf planet imported as tasks, with the served model's pre-annotations;
4. labelled through the API as a person would: "none of these" plus the body's name. The guide hides the
   true class in the file names (reversed base64); this demo decodes them, nothing else in orbit does;
5. `make label-export`: the labels into data/raw with provenance, `dvc add`;
6. `dvc repro`: retrain; the classes now come from data/raw (the data work's class discovery);
7. the new model served, asked about held-out dwarf-planet images it was not trained on.

Each step prints what it did and its wall time. It changes data/raw (that is the point): undo with
`git checkout data/raw.dvc && dvc checkout data/raw`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from labeling import service
from labeling.client import LabelStudio
from labeling.project import (
    CHOICES_NAME,
    IMAGE_NAME,
    NEW_BODY_NAME,
    NONE_OF_THESE,
    ensure_project,
    model_classes,
)
from labeling.tasks import import_images, predict_batch, served_model_tag

ROOT = Path(__file__).resolve().parents[1]
EXTRA = ROOT.parent / "shared" / "data" / "planets" / "extra-data" / "extra-classes"
BIN = Path(sys.executable).parent
PER_CLASS = 40
HELD_OUT = 20
STEPS = 7


class DemoError(RuntimeError):
    """A step failed; the message says which and what to try."""


def true_class(path: Path) -> str | None:
    """The class the guide hid in a file name: the reversed stem is base64 of `<Class>_<n>`."""
    stem = path.stem[::-1]
    try:
        decoded = base64.b64decode(stem + "=" * (-len(stem) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, _, number = decoded.rpartition("_")
    return name if name and number.isdigit() else None


def pick(extra: Path, per_class: int, held_out: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """`per_class` images of each class to label and `held_out` others to test the new model on."""
    by_class: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(extra.glob("*.jpg")):
        name = true_class(path)
        if name:
            by_class[name].append(path)
    if not by_class:
        raise DemoError(f"no images with decodable names in {extra}; pass --extra DIR")
    label = {c: files[:per_class] for c, files in sorted(by_class.items())}
    test = {c: files[per_class : per_class + held_out] for c, files in sorted(by_class.items())}
    return label, test


def _banner(number: int, title: str) -> float:
    print(f"\n[{number}/{STEPS}] {title}", flush=True)
    return time.monotonic()


def _run(*args: str, what: str) -> None:
    print(f"      $ {' '.join(args)}", flush=True)
    env = dict(
        os.environ, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"
    )
    if subprocess.run(args, cwd=ROOT, env=env).returncode != 0:
        raise DemoError(f"{what} failed; the output above says why")


def _metrics() -> dict:
    path = ROOT / "evaluation" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _served(fn):
    """Run `fn(url)` against the current model served exactly as `make serve` serves it."""
    from local.server import ServerError, running_server

    _run(sys.executable, "-m", "serving.package", "--if-needed", what="packaging the model")
    try:
        with running_server(cwd=ROOT, log_path=ROOT / ".orbit" / "logs" / "label-demo-serve.log") as server:
            return fn(server.url)
    except ServerError as exc:
        raise DemoError(str(exc)) from None


def annotate_as_a_person(ls: LabelStudio, project_id: int, known: set[str]) -> Counter[str]:
    """Label every unlabelled task: a known class as itself, a new body as "none of these" + its name."""
    done: Counter[str] = Counter()
    for task in ls.tasks(project_id):
        if task.get("annotations"):
            continue
        truth = true_class(Path(task["data"].get("source", "")))
        if truth is None:
            continue
        choice = {"from_name": CHOICES_NAME, "to_name": IMAGE_NAME, "type": "choices"}
        if truth in known:
            result = [{**choice, "value": {"choices": [truth]}}]
        else:
            text = {"from_name": NEW_BODY_NAME, "to_name": IMAGE_NAME, "type": "textarea"}
            result = [{**choice, "value": {"choices": [NONE_OF_THESE]}}, {**text, "value": {"text": [truth]}}]
        ls.annotate(task["id"], result)
        done[truth] += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=Path, default=EXTRA, help="the guide's extra-classes folder")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    times: dict[str, float] = {}
    try:
        label, test = pick(args.extra, args.per_class, HELD_OUT)
        started = _banner(1, "Baseline: data/raw and the trained model (dvc repro runs only what changed)")
        if not any((ROOT / "data" / "raw").glob("*/*.jpg")):
            _run(sys.executable, "-m", "ml.data", "fetch", what="fetching data/raw")
            _run(str(BIN / "dvc"), "add", "-q", "data/raw", what="dvc add data/raw")
        _run(str(BIN / "dvc"), "repro", what="dvc repro")
        before = _metrics()
        classes = model_classes()
        print(
            f"      model knows {len(classes)} classes; validation accuracy {before.get('accuracy', 0):.4f}"
        )
        times["baseline"] = time.monotonic() - started

        started = _banner(2, "Label Studio: start it and make the project from the model's class list")
        service.start()
        ls = LabelStudio.local()
        project, action = ensure_project(ls, classes)
        print(f"      project {project['id']} ({action}): {ls.url}/projects/{project['id']}/data")
        times["label studio"] = time.monotonic() - started

        started = _banner(
            3, f"Tasks: {args.per_class} images of each of {', '.join(label)} with pre-annotations"
        )
        items = [(str(p), p.read_bytes()) for files in label.values() for p in files]

        def do_import(url: str):
            return import_images(
                ls,
                project["id"],
                items,
                predict=functools.partial(predict_batch, url),
                model_version=served_model_tag(),
            )

        report = _served(do_import)
        print(f"      {report}")
        pre = Counter(
            t["predictions"][0]["result"][0]["value"]["choices"][0]
            for t in ls.tasks(project["id"])
            if t["predictions"]
        )
        print(f"      the old model's pre-labels: {dict(pre.most_common())}")
        times["import"] = time.monotonic() - started

        started = _banner(4, "Annotate through the API, as a person would (names decoded here only)")
        done = annotate_as_a_person(ls, project["id"], set(classes))
        print(f"      labelled: {dict(done)}")
        times["annotate"] = time.monotonic() - started

        started = _banner(5, "make label-export: labels into data/raw with provenance, dvc add")
        from labeling.export_cli import run_export

        run_export(ls)
        times["export"] = time.monotonic() - started

        started = _banner(6, "dvc repro: retrain on the grown dataset")
        _run(str(BIN / "dvc"), "repro", what="dvc repro")
        after = _metrics()
        new_classes = model_classes()
        print(f"      model now knows {len(new_classes)} classes: {', '.join(new_classes)}")
        times["retrain"] = time.monotonic() - started

        started = _banner(7, f"Serve the new model; ask it about {HELD_OUT} held-out images per dwarf planet")

        def ask(url: str) -> dict[str, Counter[str]]:
            answers: dict[str, Counter[str]] = {}
            for name, files in test.items():
                got = predict_batch(url, [p.read_bytes() for p in files])
                answers[name] = Counter(a["prediction"] for a in got)
            return answers

        answers = _served(ask)
        for name, counts in answers.items():
            print(
                f"      {name:<9} right {counts[name]:>2}/{sum(counts.values())}"
                f"   answers {dict(counts.most_common(3))}"
            )
        times["serve new"] = time.monotonic() - started
    except (DemoError, RuntimeError, OSError) as exc:
        print(f"\nlabel demo stopped: {exc}", file=sys.stderr)
        return 1

    known_before = before.get("per_class_accuracy", {})
    known_after = {c: a for c, a in after.get("per_class_accuracy", {}).items() if c in known_before}
    mean = lambda d: sum(d.values()) / len(d) if d else float("nan")  # noqa: E731
    right = sum(c[n] for n, c in answers.items())
    total = sum(sum(c.values()) for c in answers.values())
    print("\nSummary")
    print(f"      held-out dwarf planets  {right}/{total} right ({right / max(total, 1):.1%})")
    print(
        f"      known classes           mean per-class accuracy {mean(known_before):.4f} before, "
        f"{mean(known_after):.4f} after"
    )
    print("      wall time               " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"      Label Studio keeps running at {ls.url}; `make label-stop` ends it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
