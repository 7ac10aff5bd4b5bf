"""Fail when dvc.lock is older than the pipeline it describes (params.yaml, ml/, data changed since).

The deploy builds the model that dvc.lock pins. If training was skipped on the pull request (a fork) or
failed before its lock commit, a merge brings new params or code with the old lock, and the release would
ship the old model under the new commit's name. `dvc status` compares every stage's dependencies and
command with what dvc.lock recorded; this reads its JSON and names the stale stages and why.

    dvc pull && python -m ci.lock_fresh          # after pulling every output, so nothing reads as deleted
"""

from __future__ import annotations

import json
import subprocess
import sys

#: What makes a stage stale. "changed outs" alone means an output is missing or edited in the workspace,
#: which says nothing about the lock (and the pull before this fetched them).
STALE_KEYS = ("changed deps", "changed command")


def stale(status: dict) -> dict[str, list[str]]:
    """stage -> what changed since dvc.lock, for every stage whose lock is out of date."""
    found: dict[str, list[str]] = {}
    for stage, entries in (status or {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue  # e.g. "always changed", which orbit's stages are not
            for key in STALE_KEYS:
                if key in entry:
                    changed = entry[key]
                    found.setdefault(stage, []).extend(
                        sorted(changed) if isinstance(changed, dict) else [key.removeprefix("changed ")])
    return found


def main(argv: list[str] | None = None) -> int:
    result = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"lock_fresh: `dvc status` failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return 2
    found = stale(json.loads(result.stdout or "{}"))
    if found:
        detail = "; ".join(f"{stage}: {', '.join(what)}" for stage, what in found.items())
        print(f"lock_fresh: dvc.lock is stale ({detail}). Run `dvc repro` and commit dvc.lock (the train "
              "workflow does both on a pull request of this repository), then merge again.", file=sys.stderr)
        return 1
    print("lock_fresh: dvc.lock matches params.yaml, the code and the data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
