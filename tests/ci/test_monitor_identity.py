"""The drift job and the stack agree on the monitor account's GitHub environment (its WIF binding)."""

from __future__ import annotations

from ci.check_workflows import ENVIRONMENT_BOUND, MONITOR_IDENTITY
from infra.config import KEYS
from tests.ci.test_workflows import load


def test_the_drift_job_declares_the_environment_the_stack_binds_the_monitor_to():
    (job,) = load("drift")["jobs"].values()
    assert job["environment"] == KEYS["orbit:monitorEnvironment"].default == "monitoring"
    assert MONITOR_IDENTITY in ENVIRONMENT_BOUND  # check_workflows refuses the account outside an environment
