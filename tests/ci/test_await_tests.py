"""ci.await_tests: deploy and infra `up` start only once `test` passed on the same commit."""

from __future__ import annotations

import pytest

from ci import await_tests
from ci.await_tests import NotPassed, verdict, wait

SHA = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"


def run(id_: int, status: str = "completed", conclusion: str | None = "success") -> dict:
    return {"id": id_, "status": status, "conclusion": conclusion if status == "completed" else None,
            "html_url": f"https://github.com/o/r/actions/runs/{id_}"}


def test_verdicts():
    assert verdict([]) is None  # not started yet
    assert verdict([run(1, "in_progress")]) is None
    assert verdict([run(1)]) is True
    assert verdict([run(1, conclusion="failure"), run(2)]) is True  # a passing re-run counts
    with pytest.raises(NotPassed, match="'failure'.*runs/2"):
        verdict([run(1, conclusion="cancelled"), run(2, conclusion="failure")])


def test_wait_polls_until_the_tests_pass_and_asks_for_this_commit_only():
    answers = iter([{"workflow_runs": []}, {"workflow_runs": [run(5, "queued")]},
                    {"workflow_runs": [run(5)]}])
    urls, slept = [], []

    def fetch(url):
        urls.append(url)
        return next(answers)

    wait("o/r", "test.yml", SHA, timeout=100, interval=10, fetch=fetch, sleep=slept.append)
    assert slept == [10, 10]
    assert urls[0] == (f"https://api.github.com/repos/o/r/actions/workflows/test.yml/runs?head_sha={SHA}"
                       "&event=push&per_page=20")


def test_failed_tests_stop_the_deploy_at_once_and_a_missing_run_times_out():
    with pytest.raises(NotPassed, match="concluded 'failure'"):
        wait("o/r", "test.yml", SHA, timeout=100,
             fetch=lambda url: {"workflow_runs": [run(1, conclusion="failure")]},
             sleep=lambda s: pytest.fail("must not wait for a failed run"))
    with pytest.raises(NotPassed, match="no passing run of test.yml"):
        wait("o/r", "test.yml", SHA, timeout=30, interval=10, fetch=lambda url: {}, sleep=lambda s: None)


def test_cli_needs_the_token(monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert await_tests.main(["--sha", SHA]) == 2
    assert "actions: read" in capsys.readouterr().err
