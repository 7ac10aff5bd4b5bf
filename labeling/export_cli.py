"""`make label-export`: completed annotations from Label Studio into `data/raw`, then `dvc add`.

Reads Label Studio's JSON export over the API, hands it to `labeling.export.export_tasks` (which
writes the files, the provenance manifest and refuses conflicts), runs `dvc add data/raw`, and prints
the per-class image counts before and after.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from labeling.client import LabelStudio
from labeling.project import PROJECT_TITLE
from labeling.tasks import IMAGE_SUFFIXES

RAW_DIR = Path("data/raw")


class ExportCommandError(RuntimeError):
    """The export could not run; the message says what to do."""


def class_counts(raw_dir: Path) -> Counter[str]:
    """Images per class folder of `raw_dir`."""
    if not raw_dir.is_dir():
        return Counter()
    return Counter(
        {
            folder.name: sum(1 for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            for folder in sorted(raw_dir.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")
        }
    )


def counts_table(before: Counter[str], after: Counter[str]) -> str:
    lines = [f"{'class':<16}{'before':>8}{'after':>8}{'added':>8}"]
    for name in sorted(set(before) | set(after)):
        added = after[name] - before[name]
        lines.append(f"{name:<16}{before[name]:>8}{after[name]:>8}{added:>+8}")
    lines.append(f"{'total':<16}{sum(before.values()):>8}{sum(after.values()):>8}")
    return "\n".join(lines)


def find_project(ls: LabelStudio, title: str = PROJECT_TITLE) -> dict:
    found = [p for p in ls.projects() if p.get("title") == title]
    if not found:
        raise ExportCommandError(f"Label Studio has no project {title!r}; create it with `make label`")
    return found[0]


def run_export(
    ls: LabelStudio, *, raw_dir: Path = RAW_DIR, dvc: bool = True, title: str = PROJECT_TITLE
) -> object:
    """Export the project's annotated tasks into `raw_dir`, then `dvc add` it (unless `dvc` is False)."""
    try:
        from labeling.export import export_tasks
    except ImportError:
        raise ExportCommandError(
            "labeling/export.py (export_tasks) is not on this branch yet; it comes with the data work"
        ) from None
    project = find_project(ls, title)
    tasks = ls.export_with_predictions(project["id"])
    done = [t for t in tasks if any(not a.get("was_cancelled") for a in t.get("annotations", []))]
    print(f"project {project['id']}: {len(done)} annotated task(s) of {len(tasks)} exported")
    before = class_counts(raw_dir)
    result = export_tasks(done, raw_dir=raw_dir, fetch=ls.fetch)
    summary = getattr(result, "summary", None)  # export_tasks' own before/after table, when it has one
    print(summary() if callable(summary) else counts_table(before, class_counts(raw_dir)))
    if dvc:
        from local.bucket import run_dvc

        run_dvc(["add", str(raw_dir)], Path("."))
        print(f"dvc add {raw_dir}: done (commit {raw_dir}.dvc with the change)")
    return result


def main(state: Path | None = None) -> int:
    try:
        with LabelStudio.local(state) as ls:
            run_export(ls)
    except RuntimeError as exc:  # ExportCommandError, LabelStudioError, ExportError, BucketError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
