"""Create or update ONE pull-request comment, found again by a hidden marker.

Every push to a pull request re-runs the train (or infra) workflow; editing one comment in place keeps the
conversation readable instead of stacking a report per push.

    GITHUB_TOKEN=... GITHUB_REPOSITORY=owner/repo \\
        python -m ci.comment --pr 12 --marker train-report --body-file report.md
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

DEFAULT_API = "https://api.github.com"
#: GitHub rejects comment bodies over 65,536 characters.
MAX_BODY = 65_000
BOT = "github-actions[bot]"
_MARKER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CommentError(RuntimeError):
    """The comment could not be written; the message says why and what to change."""


def marker(name: str) -> str:
    if not _MARKER_NAME.fullmatch(name):
        raise CommentError(f"marker name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return f"<!-- orbit:{name} -->"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def code_block(text: str, title: str, limit: int = MAX_BODY - 2_000) -> str:
    """Command output (e.g. `pulumi preview`) as a collapsible block, cut in the middle if too long."""
    text = _ANSI.sub("", text).replace("```", "` ` `")
    if len(text) > limit:
        half = limit // 2
        cut = len(text) - 2 * half
        text = f"{text[:half]}\n... ({cut} characters cut; the run's log has all of it) ...\n{text[-half:]}"
    return f"### {title}\n\n<details><summary>output</summary>\n\n```\n{text.strip()}\n```\n\n</details>\n"


def compose(body: str, name: str) -> str:
    """The body with the marker on top, cut to GitHub's limit with a visible note."""
    tag = marker(name)
    if len(body) + len(tag) + 1 > MAX_BODY:
        note = "\n\n_(truncated: the full report is in the workflow run's artifacts)_\n"
        body = body[: MAX_BODY - len(tag) - len(note) - 1] + note
    return f"{tag}\n{body}"


@dataclass(frozen=True)
class Result:
    action: str  # "created" | "updated"
    comment_id: int
    url: str


class GitHubComments:
    """The three REST calls this needs; `transport` lets tests answer them without a network."""

    def __init__(
        self,
        repo: str,
        token: str,
        api_url: str = DEFAULT_API,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 20.0,
    ):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo or ""):
            raise CommentError(f"repository must be 'owner/name', got {repo!r} (set GITHUB_REPOSITORY)")
        if not token:
            raise CommentError(
                "no token: set GITHUB_TOKEN (in a workflow: env: GITHUB_TOKEN: ${{ github.token }} "
                "with permissions: pull-requests: write)"
            )
        self.repo = repo
        self.client = httpx.Client(
            base_url=api_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "orbit-ci",
            },
        )

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise CommentError(f"{method} {url}: {exc}") from None
        if response.status_code in (401, 403):
            raise CommentError(
                f"{method} {url}: HTTP {response.status_code}. The token may not write comments: the job "
                "needs `permissions: pull-requests: write`; pull requests from forks get a read-only token."
            )
        if response.status_code == 404:
            raise CommentError(
                f"{method} {url}: HTTP 404; check the repository {self.repo!r} and the PR number"
            )
        if response.is_error:
            raise CommentError(f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def comments(self, number: int) -> list[dict]:
        found: list[dict] = []
        url: str | None = f"/repos/{self.repo}/issues/{number}/comments"
        params: dict | None = {"per_page": 100}
        while url:
            response = self._request("GET", url, params=params)
            found.extend(response.json())
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        return found

    def upsert(self, number: int, body: str, name: str, author: str | None = BOT) -> Result:
        text = compose(body, name)
        tag = marker(name)
        mine = [
            c
            for c in self.comments(number)
            if tag in (c.get("body") or "")
            and (author is None or (c.get("user") or {}).get("login") == author)
        ]
        if mine:
            comment_id = mine[0]["id"]
            response = self._request(
                "PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", json={"body": text}
            )
            action = "updated"
        else:
            response = self._request(
                "POST", f"/repos/{self.repo}/issues/{number}/comments", json={"body": text}
            )
            action = "created"
        data = response.json()
        return Result(action=action, comment_id=int(data["id"]), url=data.get("html_url", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.comment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pr", type=int, required=True, help="pull request number")
    parser.add_argument(
        "--marker", required=True, help="name that identifies this comment, e.g. train-report"
    )
    parser.add_argument("--body-file", type=Path, required=True, help="Markdown to post")
    parser.add_argument("--code", metavar="TITLE", help="post the file as command output under this heading")
    parser.add_argument(
        "--author",
        default=BOT,
        help=f"only update a marked comment written by this login (default {BOT}; '' for any)",
    )
    args = parser.parse_args(argv)
    if not args.body_file.is_file():
        print(f"comment: {args.body_file} not found", file=sys.stderr)
        return 2
    try:
        client = GitHubComments(
            repo=os.environ.get("GITHUB_REPOSITORY", ""),
            token=os.environ.get("GITHUB_TOKEN", ""),
            api_url=os.environ.get("GITHUB_API_URL", DEFAULT_API),
        )
        body = args.body_file.read_text()
        if args.code:
            body = code_block(body, args.code)
        result = client.upsert(args.pr, body, args.marker, author=args.author or None)
    except CommentError as exc:
        print(f"comment: {exc}", file=sys.stderr)
        return 1
    print(f"comment: {result.action} {result.url or result.comment_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
