"""ci.drift_alert: one issue per model, later alerts as comments on it, green outcomes touch nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from ci import drift_alert
from ci.comment import marker
from ci.drift_alert import DriftIssues, marker_name

REPO = "octo/orbit"
MODEL = "planet-classifier:abc123"


def result(drift, n=200, model=MODEL) -> dict:
    checks = {"unknown_rate": {"statistic": 0.2, "p_value": 1e-9, "threshold": 0.0045, "verdict": "drift"}}
    return {
        "drift": drift,
        "n": n,
        "min_n": 100,
        "model": model,
        "n_reference": 300,
        "alpha": 0.05,
        "correction": "holm",
        "reason": "drift in unknown_rate",
        "checks": checks if drift else {},
        "window": {"first": "2026-11-30T00:00:00+00:00", "end": "2026-11-30T23:00:00+00:00"},
        "report": "r.html",
    }


class FakeGitHub:
    def __init__(self, issues: list[dict]):
        self.issues, self.posts = issues, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == f"/repos/{REPO}/issues":
            assert request.url.params["labels"] == "drift" and request.url.params["state"] == "open"
            return httpx.Response(200, json=self.issues)
        if request.method == "POST":
            body = json.loads(request.content)
            self.posts.append((path, body))
            return httpx.Response(201, json={"html_url": f"https://github.test{path}"})
        return httpx.Response(404)


def client(fake) -> DriftIssues:
    return DriftIssues(REPO, "t0ken", api_url="https://api.github.test", transport=httpx.MockTransport(fake))


def test_first_alert_opens_an_issue_with_the_evidence_and_the_model_marker():
    fake = FakeGitHub([{"number": 3, "body": marker(marker_name("planet-classifier:old")) + "\nold model"}])
    action, url = client(fake).alert(result(True), run_url="https://github.test/run/1")
    assert action == "opened" and url.endswith("/issues")
    ((path, body),) = fake.posts
    assert path == f"/repos/{REPO}/issues" and body["labels"] == ["drift"] and MODEL in body["title"]
    assert marker(marker_name(MODEL)) in body["body"]
    assert "unknown_rate" in body["body"] and "https://github.test/run/1" in body["body"]


def test_a_later_alert_comments_on_the_open_issue_of_the_same_model():
    pull = {"number": 5, "body": marker(marker_name(MODEL)), "pull_request": {}}  # not an issue
    fake = FakeGitHub([pull, {"number": 9, "body": marker(marker_name(MODEL)) + "\nfirst alert"}])
    action, _ = client(fake).alert(result(True))
    assert action == "commented"
    ((path, body),) = fake.posts
    assert path == f"/repos/{REPO}/issues/9/comments" and "unknown_rate" in body["body"]


@pytest.mark.parametrize(
    ("res", "expected"),
    [
        (result(False), "No drift"),
        (result(None, n=0), "No traffic in the window"),
        (result(None, n=12), "no alarm"),
    ],
)
def test_green_outcomes_touch_no_issue_and_say_what_happened(tmp_path, monkeypatch, res, expected):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)  # a GitHub call would fail for want of a token
    (tmp_path / "r.json").write_text(json.dumps(res))
    summary = tmp_path / "summary.md"
    assert drift_alert.main(["--result", str(tmp_path / "r.json"), "--summary", str(summary)]) == 0
    assert expected in summary.read_text()


def test_a_refused_write_fails_and_a_bad_result_file_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)
    (tmp_path / "r.json").write_text(json.dumps(result(True)))
    assert drift_alert.main(["--result", str(tmp_path / "r.json")]) == 1
    assert "no token" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert drift_alert.main(["--result", str(tmp_path / "bad.json")]) == 2
