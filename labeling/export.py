"""Completed Label Studio annotations into the dataset: `data/raw/<Class>/<sha256>.<ext>`, with provenance.

    python -m labeling.export EXPORT.json [--raw data/raw] [--media-root DIR]

:func:`export_tasks` takes Label Studio's JSON export (``GET /api/projects/{id}/export?exportType=JSON``)
and a ``fetch(url) -> bytes`` that knows how to read the tasks' image URLs. The label of a task is its
``body`` choice, or, for ``"none of these"``, the new body typed into ``new_body`` (which creates the class
folder). Everything is checked before anything is written (every image decodes with ml.preprocess's
``load_image``, every class name is a safe folder name), so a refused export loses nothing and leaves
data/raw as it was. Then:

- each image is stored under its content hash, never overwriting; an image whose content is already anywhere
  in data/raw is skipped and counted, so running the export twice adds nothing;
- one image labelled differently by two annotations (or two tasks) is a conflict: it is not imported, and
  the result names the tasks, annotators and labels, to be resolved in Label Studio;
- skipped (cancelled), unlabelled and unnamed "none of these" tasks are counted, never imported;
- each imported file gets one record in ``data/raw/provenance.jsonl`` (ml/provenance.py): task, annotator,
  time, the model's pre-label, score and model_version, and whether the person changed it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from ml.prepare import IMAGE_SUFFIXES
from ml.preprocess import InvalidImageError, load_image
from ml.provenance import ProvenanceRecord, append_provenance, sha256_bytes, sha256_file

#: Names shared with the project's labeling config (docs/architecture.md, INTERFACES.md).
BODY = "body"
NEW_BODY = "new_body"
NONE_OF_THESE = "none of these"
IMAGE_KEY = "image"
#: A class becomes a folder name and a label the service answers: letters, digits, spaces, "_" and "-",
#: starting and ending with a letter or digit, at most 64 characters.
CLASS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9])?")
#: Pillow format -> file suffix; the formats prepare reads (ml.prepare.IMAGE_SUFFIXES).
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
#: Why a task was not imported (the keys of ExportResult.not_imported).
CANCELLED, UNLABELLED, UNNAMED = "cancelled", "unlabelled", "none of these, unnamed"

Fetch = Callable[[str], bytes]


class ExportError(RuntimeError):
    """The export cannot be applied; nothing was written. The message names each task and what to fix."""


@dataclass(frozen=True)
class Vote:
    """One person's label of one task's image."""

    task_id: int | str
    annotation_id: int | str | None
    annotator: str | None
    label: str

    def describe(self) -> str:
        who = f" by {self.annotator}" if self.annotator else ""
        return f"task {self.task_id} (annotation {self.annotation_id}{who}): {self.label}"


@dataclass(frozen=True)
class Conflict:
    """One image (content hash) with different labels: refused until resolved in Label Studio."""

    sha256: str
    source: str
    votes: tuple[Vote, ...]

    def describe(self) -> str:
        return f"image {self.sha256[:12]} ({self.source}): " + "; ".join(v.describe() for v in self.votes)


@dataclass
class ExportResult:
    before: dict[str, int]  # images per class folder before the export
    after: dict[str, int]
    added: dict[str, int] = field(default_factory=dict)  # new files per class
    files: list[str] = field(default_factory=list)  # the new files, relative to raw_dir
    new_classes: list[str] = field(default_factory=list)
    skipped_existing: int = 0  # images whose content was already in data/raw
    relabel_ignored: list[str] = field(default_factory=list)  # of those, labelled differently than stored
    duplicates: int = 0  # the same image in several tasks with one label: imported once
    not_imported: dict[str, int] = field(default_factory=dict)  # reason -> tasks
    conflicts: list[Conflict] = field(default_factory=list)

    def table(self) -> str:
        classes = sorted({*self.before, *self.after})
        width = max([len(c) for c in classes] + [5])
        rows = [f"  {'class':<{width}}  before  added  after"]
        for name in classes:
            new = "  (new class)" if name in self.new_classes else ""
            rows.append(
                f"  {name:<{width}}  {self.before.get(name, 0):>6}  {self.added.get(name, 0):>5}  "
                f"{self.after.get(name, 0):>5}{new}"
            )
        total = (sum(self.before.values()), sum(self.added.values()), sum(self.after.values()))
        rows.append(f"  {'total':<{width}}  {total[0]:>6}  {total[1]:>5}  {total[2]:>5}")
        return "\n".join(rows)

    def summary(self) -> str:
        lines = [self.table(), f"added {sum(self.added.values())} image(s)"]
        if self.skipped_existing:
            lines.append(f"skipped {self.skipped_existing} image(s) already in the dataset")
        lines += [f"  kept as stored, labelled otherwise now: {item}" for item in self.relabel_ignored]
        if self.duplicates:
            lines.append(f"{self.duplicates} task(s) repeat an image of another task with the same label")
        lines += [f"not imported: {n} task(s) {reason}" for reason, n in sorted(self.not_imported.items())]
        if self.conflicts:
            lines.append(
                f"REFUSED {len(self.conflicts)} image(s) with conflicting labels; resolve them in Label "
                "Studio and export again:"
            )
            lines += [f"  {c.describe()}" for c in self.conflicts]
        return "\n".join(lines)


@dataclass
class _Image:
    sha256: str
    suffix: str
    data: bytes
    source: str
    votes: list[tuple[Vote, dict, dict]] = field(default_factory=list)  # (vote, task, annotation)


def class_counts(raw_dir: Path) -> dict[str, int]:
    """Images per class folder, as prepare counts them."""
    if not raw_dir.is_dir():
        return {}
    return {
        folder.name: sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for folder in sorted(raw_dir.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }


def existing_hashes(raw_dir: Path) -> dict[str, str]:
    """Content hash -> path (relative) of every file in every class folder of `raw_dir`."""
    out: dict[str, str] = {}
    if raw_dir.is_dir():
        for path in sorted(raw_dir.glob("*/*")):
            if path.is_file() and not path.parent.name.startswith(".") and not path.name.startswith("."):
                out.setdefault(sha256_file(path), path.relative_to(raw_dir).as_posix())
    return out


def check_class_name(name: str) -> str | None:
    """None when `name` can be a class folder; otherwise why not."""
    if name.casefold() == NONE_OF_THESE:
        return f'"{NONE_OF_THESE}" is the choice for an unknown body, not a class'
    if not CLASS_NAME.fullmatch(name):
        return (
            "a class name has 1 to 64 letters, digits, spaces, '_' or '-', and starts and ends with a "
            "letter or digit"
        )
    return None


def _values(annotation: dict, from_name: str, key: str) -> list[str]:
    for item in annotation.get("result") or []:
        if item.get("from_name") == from_name:
            values = (item.get("value") or {}).get(key) or []
            return [str(v) for v in values if str(v).strip()]
    return []


def _annotator(annotation: dict) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):  # some exports embed the user
        who = who.get("email") or who.get("username") or who.get("id")
        return None if who is None else str(who)
    return None if who is None else f"user {who}"


def _prelabel(task: dict, annotation: dict) -> tuple[str | None, float | None, str | None]:
    """The model's pre-annotation the person saw: the prediction the annotation started from, else the
    latest one with a body choice. (label, score, model_version)."""
    predictions = [p for p in task.get("predictions") or [] if _values(p, BODY, "choices")]
    if not predictions:
        return None, None, None
    parent = annotation.get("parent_prediction")
    chosen = next((p for p in predictions if parent is not None and p.get("id") == parent), predictions[-1])
    score = chosen.get("score")
    if score is None:
        score = next((i.get("score") for i in chosen.get("result") or [] if i.get("from_name") == BODY), None)
    version = chosen.get("model_version")
    return (
        _values(chosen, BODY, "choices")[0],
        None if score is None else float(score),
        None if version is None else str(version),
    )


def _label(annotation: dict) -> tuple[str | None, str | None]:
    """(label as typed, reason it is not importable)."""
    choices = _values(annotation, BODY, "choices")
    if not choices:
        return None, UNLABELLED
    if choices[0] != NONE_OF_THESE:
        return choices[0].strip(), None
    typed = " ".join(t.strip() for t in _values(annotation, NEW_BODY, "text")).strip()
    return (typed or None), (None if typed else UNNAMED)


def _canonical(label: str, known: dict[str, str]) -> str:
    """One spelling per class, case-insensitively: "ceres" joins an existing "Ceres"."""
    return known.setdefault(label.casefold(), label)


def _read(task: dict, fetch: Fetch) -> tuple[bytes, str, str]:
    """(bytes, suffix, source) of the task's image, or InvalidImageError/ExportError saying why not."""
    source = (task.get("data") or {}).get(IMAGE_KEY)
    if not isinstance(source, str) or not source:
        raise ExportError(f"has no data.{IMAGE_KEY} (the labeling config reads the image from $image)")
    try:
        data = fetch(source)
    except Exception as exc:  # the caller's transport: name the task and the URL, whatever it raised
        raise ExportError(f"cannot read {source}: {exc}") from exc
    image = load_image(bytes(data))
    suffix = SUFFIXES.get(image.format or "")
    if suffix is None:
        raise InvalidImageError(f"{source}: {image.format} is not a training format; send a JPEG or PNG")
    return bytes(data), suffix, source


def _write_new(path: Path, data: bytes) -> None:
    """Write `path` atomically and never over an existing file (a hard link fails if the name exists)."""
    fd, tmp = tempfile.mkstemp(prefix=".export.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def export_tasks(tasks: list[dict], *, raw_dir: Path, fetch: Fetch) -> ExportResult:
    """Import the completed annotations of `tasks` into `raw_dir` (see the module's docstring)."""
    raw_dir = Path(raw_dir)
    before = class_counts(raw_dir)
    known = {name.casefold(): name for name in before}
    not_imported: Counter[str] = Counter()
    problems: list[str] = []
    images: dict[str, _Image] = {}
    for task in tasks:
        task_id = task.get("id", "?")
        votes, reasons, named_badly = [], [], False
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                reasons.append(CANCELLED)
                continue
            label, reason = _label(annotation)
            if label is None:
                reasons.append(reason)
                continue
            why = check_class_name(label)
            if why:
                problems.append(f"task {task_id}: {label!r} is not a usable class name: {why}; correct it")
                named_badly = True
                continue
            vote = Vote(task_id, annotation.get("id"), _annotator(annotation), _canonical(label, known))
            votes.append((vote, task, annotation))
        if not votes:
            if not named_badly:  # one reason per task, the most telling one
                order = (UNNAMED, UNLABELLED, CANCELLED)
                not_imported[next((r for r in order if r in reasons), UNLABELLED)] += 1
            continue
        try:
            data, suffix, source = _read(task, fetch)
        except (ExportError, InvalidImageError) as exc:
            problems.append(f"task {task_id}: {exc}")
            continue
        sha = sha256_bytes(data)
        images.setdefault(sha, _Image(sha, suffix, data, source)).votes += votes
    _refuse(problems)

    result = ExportResult(before=before, after=before, not_imported=dict(not_imported))
    stored = existing_hashes(raw_dir)
    exported_at = datetime.now(UTC)
    planned: list[tuple[_Image, ProvenanceRecord]] = []
    for image in images.values():
        labels = {vote.label for vote, _, _ in image.votes}
        if len(labels) > 1:
            result.conflicts.append(Conflict(image.sha256, image.source, tuple(v for v, _, _ in image.votes)))
            continue
        (label,) = labels
        result.duplicates += len({v.task_id for v, _, _ in image.votes}) - 1
        if image.sha256 in stored:
            result.skipped_existing += 1
            if stored[image.sha256].split("/")[0] != label:
                result.relabel_ignored.append(f"{stored[image.sha256]} (now labelled {label})")
            continue
        target = stored[image.sha256] = f"{label}/{image.sha256}{image.suffix}"
        if (raw_dir / target).exists():  # the name of this content hash, holding other bytes
            problems.append(
                f"task {image.votes[0][0].task_id}: {raw_dir / target} exists with other content (edited "
                "after an export?); move it away: its name is reserved for this image"
            )
            continue
        try:
            planned.append((image, _record(image, target, exported_at)))
        except (ValidationError, ValueError, TypeError) as exc:
            problems.append(f"task {image.votes[0][0].task_id}: unexpected field values ({exc})")
    _refuse(problems)

    for image, record in planned:  # only now is anything written
        folder = raw_dir / record.label
        if not folder.is_dir():
            folder.mkdir(parents=True)
            result.new_classes.append(record.label)
        _write_new(raw_dir / record.file, image.data)
        append_provenance(raw_dir, [record])
        result.files.append(record.file)
        result.added[record.label] = result.added.get(record.label, 0) + 1
    result.after = class_counts(raw_dir)
    return result


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ExportError(
            f"nothing was imported: {len(problems)} task(s) cannot be used:\n  " + "\n  ".join(problems)
        )


def _record(image: _Image, rel: str, exported_at: datetime) -> ProvenanceRecord:
    """The provenance of one new file, from its first annotation and the pre-label that person saw."""
    vote, task, annotation = image.votes[0]
    prelabel, score, version = _prelabel(task, annotation)
    return ProvenanceRecord(
        file=rel,
        sha256=image.sha256,
        label=vote.label,
        task_id=vote.task_id,
        annotation_id=vote.annotation_id,
        annotator=vote.annotator,
        annotated_at=annotation.get("updated_at") or annotation.get("created_at"),
        prelabel=prelabel,
        prelabel_score=score,
        model_version=version,
        changed=None if prelabel is None else prelabel != vote.label,
        source=image.source,
        exported_at=exported_at,
    )


def _local_fetch(base: Path) -> Fetch:
    """Read a task's image from a local path (relative ones from `base`) or a file:// URL."""

    def fetch(source: str) -> bytes:
        if "://" in source and not source.startswith("file://"):
            raise ExportError(
                "only local paths here; export through the Label Studio API (`make label-export`) for URLs"
            )
        path = Path(source.removeprefix("file://"))
        return (path if path.is_absolute() else base / path.as_posix().lstrip("/")).read_bytes()

    return fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling.export", description=__doc__.splitlines()[0])
    parser.add_argument("tasks", type=Path, help="Label Studio JSON export (a list of tasks)")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="the dataset (default data/raw)")
    parser.add_argument("--media-root", type=Path, help="where relative image paths start (default: the "
                        "export file's folder)")
    args = parser.parse_args(argv)
    try:
        tasks = json.loads(args.tasks.read_text())
        if not isinstance(tasks, list):
            raise ExportError(f"{args.tasks} is not a JSON list of tasks; use exportType=JSON")
        fetch = _local_fetch(args.media_root or args.tasks.parent)
        result = export_tasks(tasks, raw_dir=args.raw, fetch=fetch)
    except (OSError, json.JSONDecodeError, ExportError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    if result.files:
        print(f"next: dvc add {args.raw}")
    return 1 if result.conflicts else 0


if __name__ == "__main__":
    sys.exit(main())
