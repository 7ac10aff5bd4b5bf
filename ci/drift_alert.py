"""Turn one drift check's JSON into GitHub: an issue when drift is found, or a comment on the one open.

One open issue per model tag, found again by a hidden marker; a later alert for the same model becomes a
comment with the new window's evidence, so no alert is swallowed by an issue that is already open. No drift,
and "no traffic in the window", write a line to the job summary and touch no issue: both are green.

    GITHUB_TOKEN=... GITHUB_REPOSITORY=owner/repo \\
        python -m ci.drift_alert --result drift.json [--run-url URL] [--summary $GITHUB_STEP_SUMMARY]

Exit 0 for every verdict; 1 when GitHub refused a write; 2 when the result file is missing or not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ci.comment import DEFAULT_API, CommentError, GitHubComments, compose, marker

LABEL = "drift"


def outcome(result: dict) -> str:
    """'drift' | 'no-drift' | 'no-traffic' | 'too-few'."""
    if result["drift"] is True:
        return "drift"
    if result["drift"] is False:
        return "no-drift"
    return "no-traffic" if result.get("n", 0) == 0 else "too-few"


def marker_name(model: str) -> str:
    """A marker per model tag: 'planet-classifier:abc' -> 'drift.planet-classifier.abc'."""
    return "drift." + "".join(c if c.isalnum() or c in "._-" else "." for c in model)[:58]


def evidence(result: dict, run_url: str) -> str:
    """The window's evidence as Markdown: the verdict, the window, every check."""
    window = result.get("window") or {}
    lines = [
        f"**{outcome(result)}** for `{result['model']}`: {result.get('reason', '')}.",
        "",
        f"Window: {result['n']} predictions from {window.get('first')} to {window.get('end')}; "
        f"reference {result.get('n_reference')} validation images; family-wise false-alarm rate "
        f"at most {result.get('alpha')} ({result.get('correction')}).",
        "",
        "| check | statistic | p-value | level | verdict |",
        "|---|---|---|---|---|",
    ]
    for name, c in (result.get("checks") or {}).items():
        flag = "**drift**" if c["verdict"] == "drift" else "ok"
        lines.append(
            f"| {name} | {c['statistic']:.4g} | {c['p_value']:.3g} | {c['threshold']:.3g} | {flag} |"
        )
    if run_url:
        lines += ["", f"The HTML report (distributions, most novel images) is an artifact of {run_url}."]
    return "\n".join(lines) + "\n"


class DriftIssues(GitHubComments):
    """Issues of the repository: the open drift issue of a model, a new one, a comment on it."""

    def open_issue(self, model: str) -> dict | None:
        tag = marker(marker_name(model))
        url: str | None = f"/repos/{self.repo}/issues"
        params: dict | None = {"state": "open", "labels": LABEL, "per_page": 100}
        while url:
            response = self._request("GET", url, params=params)
            for issue in response.json():
                if "pull_request" not in issue and tag in (issue.get("body") or ""):
                    return issue
            url = response.links.get("next", {}).get("url")
            params = None
        return None

    def alert(self, result: dict, run_url: str = "") -> tuple[str, str]:
        """('opened' | 'commented', html url) for a drift result."""
        model, body = result["model"], evidence(result, run_url)
        issue = self.open_issue(model)
        if issue is None:
            response = self._request(
                "POST",
                f"/repos/{self.repo}/issues",
                json={
                    "title": f"Drift: {model}",
                    "body": compose(body, marker_name(model)),
                    "labels": [LABEL],
                },
            )
            return "opened", response.json().get("html_url", "")
        response = self._request(
            "POST", f"/repos/{self.repo}/issues/{issue['number']}/comments", json={"body": body}
        )
        return "commented", response.json().get("html_url", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.drift_alert", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--result", type=Path, required=True, help="the JSON of `python -m monitor.drift --json`"
    )
    parser.add_argument(
        "--run-url", default="", help="link to the workflow run (its artifacts hold the report)"
    )
    parser.add_argument("--summary", type=Path, help="append a Markdown line here (the job summary)")
    args = parser.parse_args(argv)
    try:
        result = json.loads(args.result.read_text())
        verdict = outcome(result)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"drift-alert: {args.result} is not a drift result ({exc})", file=sys.stderr)
        return 2
    messages = {
        "no-drift": f"No drift for `{result['model']}` over {result['n']} predictions.",
        "no-traffic": f"No traffic in the window for `{result['model']}`: nothing to check.",
        "too-few": f"Only {result['n']} predictions for `{result['model']}` (minimum {result.get('min_n')}): "
        "no verdict, no alarm.",
    }
    line = messages.get(verdict)
    if verdict == "drift":
        try:
            client = DriftIssues(
                repo=os.environ.get("GITHUB_REPOSITORY", ""),
                token=os.environ.get("GITHUB_TOKEN", ""),
                api_url=os.environ.get("GITHUB_API_URL", DEFAULT_API),
            )
            action, url = client.alert(result, args.run_url)
        except CommentError as exc:
            print(f"drift-alert: {exc} (the job needs `permissions: issues: write`)", file=sys.stderr)
            return 1
        line = f"Drift found for `{result['model']}`: {action} {url}"
    print(line)
    if args.summary:
        with open(args.summary, "a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
