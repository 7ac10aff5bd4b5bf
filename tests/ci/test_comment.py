"""ci.comment: one pull-request comment, created once and then edited in place (GitHub REST API mocked)."""

from __future__ import annotations

import json

import httpx
import pytest

from ci import comment
from ci.comment import CommentError, GitHubComments

REPO = "octo/orbit"


class FakeGitHub:
    """Just enough of the issues-comments API, recording every request."""

    def __init__(self, comments: list[dict] | None = None, page_size: int = 100, status: int | None = None):
        self.comments = comments or []
        self.page_size = page_size
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Bearer t0ken"
        if self.status:
            return httpx.Response(self.status, json={"message": "Resource not accessible by integration"})
        path = request.url.path
        if request.method == "GET" and path == f"/repos/{REPO}/issues/7/comments":
            page = int(request.url.params.get("page", "1"))
            chunk = self.comments[(page - 1) * self.page_size : page * self.page_size]
            headers = {}
            if page * self.page_size < len(self.comments):
                nxt = f"https://api.github.test/repos/{REPO}/issues/7/comments?page={page + 1}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return httpx.Response(200, json=chunk, headers=headers)
        if request.method == "POST" and path == f"/repos/{REPO}/issues/7/comments":
            new = {
                "id": 1000 + len(self.comments),
                "body": json.loads(request.content)["body"],
                "user": {"login": "github-actions[bot]"},
                "html_url": "https://github.test/c/new",
            }
            self.comments.append(new)
            return httpx.Response(201, json=new)
        if request.method == "PATCH" and path.startswith(f"/repos/{REPO}/issues/comments/"):
            comment_id = int(path.rsplit("/", 1)[1])
            for item in self.comments:
                if item["id"] == comment_id:
                    item["body"] = json.loads(request.content)["body"]
                    return httpx.Response(
                        200, json={**item, "html_url": f"https://github.test/c/{comment_id}"}
                    )
        return httpx.Response(404)


def client(fake: FakeGitHub) -> GitHubComments:
    return GitHubComments(
        REPO, "t0ken", api_url="https://api.github.test", transport=httpx.MockTransport(fake)
    )


def test_first_report_creates_a_comment_with_the_marker():
    fake = FakeGitHub([{"id": 1, "body": "LGTM", "user": {"login": "alice"}}])
    result = client(fake).upsert(7, "accuracy 0.95", "train-report")
    assert result.action == "created"
    assert fake.comments[-1]["body"] == "<!-- orbit:train-report -->\naccuracy 0.95"
    assert [r.method for r in fake.requests] == ["GET", "POST"]


def test_next_report_edits_the_same_comment_found_on_a_later_page():
    others = [{"id": i, "body": f"comment {i}", "user": {"login": "alice"}} for i in range(1, 5)]
    mine = {"id": 42, "body": "<!-- orbit:train-report -->\nold", "user": {"login": "github-actions[bot]"}}
    fake = FakeGitHub([*others, mine], page_size=2)
    result = client(fake).upsert(7, "new numbers", "train-report")
    assert (result.action, result.comment_id) == ("updated", 42)
    assert mine["body"] == "<!-- orbit:train-report -->\nnew numbers"
    assert [r.method for r in fake.requests] == ["GET", "GET", "GET", "PATCH"]
    assert len(fake.comments) == 5


def test_marker_copied_by_someone_else_is_not_taken_over():
    fake = FakeGitHub([{"id": 3, "body": "<!-- orbit:train-report --> quoted", "user": {"login": "mallory"}}])
    assert client(fake).upsert(7, "report", "train-report").action == "created"
    assert fake.comments[0]["body"] == "<!-- orbit:train-report --> quoted"


def test_other_markers_are_separate_comments():
    fake = FakeGitHub(
        [{"id": 5, "body": "<!-- orbit:infra-preview -->\nplan", "user": {"login": "github-actions[bot]"}}]
    )
    assert client(fake).upsert(7, "report", "train-report").action == "created"
    assert fake.comments[0]["body"].endswith("plan")


def test_forbidden_token_explains_permissions_and_forks():
    with pytest.raises(CommentError, match="pull-requests: write.*forks"):
        client(FakeGitHub(status=403)).upsert(7, "x", "train-report")


def test_missing_token_and_bad_repository_are_clear():
    with pytest.raises(CommentError, match="set GITHUB_TOKEN"):
        GitHubComments(REPO, "")
    with pytest.raises(CommentError, match="owner/name"):
        GitHubComments("not a repo", "t")
    with pytest.raises(CommentError, match="marker name"):
        comment.marker("has space")


def test_long_bodies_are_cut_to_githubs_limit_with_a_note():
    text = comment.compose("x" * 100_000, "train-report")
    assert len(text) <= comment.MAX_BODY
    assert text.startswith("<!-- orbit:train-report -->") and "truncated" in text


def test_code_block_strips_colours_and_keeps_both_ends_of_long_output():
    output = "\x1b[32m+ create\x1b[0m bucket\n" + "line\n" * 50 + "```end```"
    block = comment.code_block(output, "pulumi preview of dev", limit=120)
    assert "\x1b" not in block and "+ create bucket" in block
    assert "characters cut" in block and "end" in block
    assert block.count("```") == 2  # output cannot close the fence early


def test_cli_posts_the_file(tmp_path, monkeypatch, capsys):
    fake = FakeGitHub()
    real_client = httpx.Client

    def patched(*args, **kwargs):
        kwargs["transport"] = httpx.MockTransport(fake)
        return real_client(*args, **kwargs)

    monkeypatch.setattr(comment.httpx, "Client", patched)
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    monkeypatch.setenv("GITHUB_API_URL", "https://api.github.test")
    body = tmp_path / "report.md"
    body.write_text("hello")
    assert comment.main(["--pr", "7", "--marker", "train-report", "--body-file", str(body)]) == 0
    assert "created" in capsys.readouterr().out
    assert fake.comments[0]["body"].endswith("hello")
    monkeypatch.delenv("GITHUB_TOKEN")
    assert comment.main(["--pr", "7", "--marker", "train-report", "--body-file", str(body)]) == 1
    assert "GITHUB_TOKEN" in capsys.readouterr().err
