"""The Pulumi runtime points at orbit's mocks once, before any program code runs.

The whole program runs once per committed stack file (dev, prod) per session; tests read what it registered
or apply its Outputs under `@pulumi.runtime.test`. Mocks run with preview=False, so every `apply` executes.
"""

from __future__ import annotations

import pytest

from infra import mocks
from infra.mocks import MockRun

MONITOR = mocks.install("dev")

STACKS = ("dev", "prod")


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_gcp warns about its own deprecated aliases when the mocks resolve its modules.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_gcp.*")


@pytest.fixture(scope="session")
def monitor() -> mocks.RecordingMonitor:
    return MONITOR


@pytest.fixture(scope="session")
def dev_run() -> MockRun:
    return mocks.run(mocks.stack_config("dev"))


@pytest.fixture(scope="session")
def prod_run() -> MockRun:
    return mocks.run(mocks.stack_config("prod"))


@pytest.fixture(scope="session", params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> MockRun:
    """Each committed stack (Pulumi.dev.yaml, Pulumi.prod.yaml) run under the mocks."""
    return request.getfixturevalue(f"{request.param}_run")


@pytest.fixture(scope="session")
def run_with():
    """Run the program for a committed stack with some config overridden (validated like the real thing)."""
    cache: dict[tuple, MockRun] = {}

    def run(stack: str, overrides: dict) -> MockRun:
        key = (stack, repr(sorted(overrides.items())))
        if key not in cache:
            cache[key] = mocks.run(mocks.stack_config(stack, overrides))
        return cache[key]

    return run
