"""The Pulumi runtime points at orbit's mocks once, before any program code runs.

The whole program runs once per fixture stack file (tests/infra/fixtures: frozen copies of the examples)
and session, in two states:
`dev_run`/`prod_run` (and `stack_run`, both of them) as CI's deploy runs it, with the model service enabled
at an image tag; `first_up_run` from the stack file alone, as the very first `pulumi up` sees it. Tests apply
on the Outputs of what the program built under `@pulumi.runtime.test`; the mocks run with preview=False, so
every `apply` executes.
"""

from __future__ import annotations

import pytest

from infra import mocks
from infra.mocks import MockRun
from tests.infra.support import FIXTURES, RELEASED

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
    return mocks.run(mocks.stack_config("dev", RELEASED, FIXTURES))


@pytest.fixture(scope="session")
def prod_run() -> MockRun:
    return mocks.run(mocks.stack_config("prod", RELEASED, FIXTURES))


@pytest.fixture(scope="session", params=STACKS)
def stack_run(request: pytest.FixtureRequest) -> MockRun:
    """Each committed stack (Pulumi.dev.yaml, Pulumi.prod.yaml) with the service released, under the mocks."""
    return request.getfixturevalue(f"{request.param}_run")


@pytest.fixture(scope="session", params=STACKS)
def first_up_run(request: pytest.FixtureRequest) -> MockRun:
    """Each committed stack file exactly as it is: the first `pulumi up`, before any image exists."""
    return mocks.run(mocks.stack_config(request.param, root=FIXTURES))


@pytest.fixture(scope="session")
def run_with():
    """Run a committed, released stack with some config overridden (validated like the real thing)."""
    cache: dict[tuple, MockRun] = {}

    def run(stack: str, overrides: dict) -> MockRun:
        key = (stack, repr(sorted(overrides.items())))
        if key not in cache:
            cache[key] = mocks.run(mocks.stack_config(stack, {**RELEASED, **overrides}, FIXTURES))
        return cache[key]

    return run
