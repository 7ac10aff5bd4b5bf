"""Wait until the `test` workflow has passed on this exact commit; fail if it failed.

GitHub has no `needs:` across workflows, so `deploy` and `infra`'s `up` on main start at the same time as
`test` on the same push. Their first job runs this: it polls the Actions API for the runs of the test
workflow on the commit (push event) and exits 0 once one succeeded, 1 as soon as the newest finished
otherwise (or none started within the timeout), naming its conclusion and link. Stdlib only: the job runs it
before installing anything.

    python -m ci.await_tests --workflow test.yml --sha "$GITHUB_SHA"   # GITHUB_TOKEN needs actions: read
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable

Fetch = Callable[[str], dict]


class NotPassed(RuntimeError):
    """The tests of the commit failed, were cancelled, or never ran; the message says which and where."""


def _fetch(url: str) -> dict:
    request = urllib.request.Request(url, headers={
        "Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}",
        "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the API URL of the run)
        return json.load(response)


def verdict(runs: list[dict]) -> bool | None:
    """True: passed; None: still to come; raises NotPassed when the newest finished run did not pass."""
    if any(run.get("conclusion") == "success" for run in runs):
        return True  # a re-run that passed counts
    finished = [run for run in runs if run.get("status") == "completed"]
    if not finished or len(finished) < len(runs):
        return None
    newest = max(finished, key=lambda run: run.get("id", 0))
    raise NotPassed(f"the test workflow concluded {newest.get('conclusion')!r} on this commit: "
                      f"{newest.get('html_url', '')} (fix it, or re-run it; then re-run this workflow)")


def wait(repo: str, workflow: str, sha: str, *, timeout: float, interval: float = 20.0,
         fetch: Fetch = _fetch, sleep: Callable[[float], None] = time.sleep,
         api: str = "https://api.github.com") -> None:
    url = f"{api}/repos/{repo}/actions/workflows/{workflow}/runs?head_sha={sha}&event=push&per_page=20"
    waited = 0.0
    while True:
        if verdict(fetch(url).get("workflow_runs") or []):
            return
        if waited >= timeout:
            raise NotPassed(f"no passing run of {workflow} for {sha[:12]} after {timeout:.0f} s")
        sleep(interval)
        waited += interval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.await_tests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", default="test.yml", help="file name of the test workflow")
    parser.add_argument("--sha", required=True, help="the commit whose tests must have passed")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds to wait (default 40 min)")
    args = parser.parse_args(argv)
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY"):
        if not os.environ.get(name):
            print(f"await_tests: {name} is not set (give the job `actions: read` and pass github.token)",
                  file=sys.stderr)
            return 2
    try:
        wait(os.environ["GITHUB_REPOSITORY"], args.workflow, args.sha, timeout=args.timeout,
             api=os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    except NotPassed as exc:
        print(f"await_tests: {exc}", file=sys.stderr)
        return 1
    print(f"await_tests: {args.workflow} passed on {args.sha[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
