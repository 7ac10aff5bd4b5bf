"""The drift workflow: daily and on demand, read-only identity, report uploaded even when the check fails,
the issue logic in ci.drift_alert (tested in test_drift_alert.py)."""

from __future__ import annotations

from tests.ci.test_workflows import load


def test_runs_daily_and_by_hand_with_the_least_permissions():
    workflow = load("drift")
    assert "schedule" in workflow["on"] and "workflow_dispatch" in workflow["on"]
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "issues": "write", "id-token": "write"}
    assert job["env"]["MONITOR_SERVICE_ACCOUNT"] == "${{ vars.MONITOR_SERVICE_ACCOUNT }}"


def test_checks_the_log_uploads_the_report_always_then_alerts():
    (job,) = load("drift")["jobs"].values()
    names = [step.get("name", step.get("uses", "")) for step in job["steps"]]
    check = next(s for s in job["steps"] if s.get("name") == "Drift check")
    assert "python -m monitor.drift" in check["run"] and "--json" in check["run"]
    assert "monitoring/reference/current.npz" in check["run"]
    upload = next(s for s in job["steps"] if s.get("name") == "Upload the report")
    assert upload["if"] == "always()" and upload["with"]["path"] == "drift-report/"
    alert = next(s for s in job["steps"] if s.get("name") == "Open or update the drift issue")
    assert "ci.drift_alert" in alert["run"] and alert["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert names.index("Drift check") < names.index("Upload the report") < names.index(alert["name"])
