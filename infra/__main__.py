"""Entry point of `pulumi up/preview/destroy` (Pulumi.yaml: `main: infra/`)."""

import sys
from pathlib import Path

# Pulumi runs this file by path; make `infra.*` importable even without the editable install.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pulumi  # noqa: E402

from infra.config import ConfigError, from_pulumi  # noqa: E402
from infra.program import build  # noqa: E402

try:
    stack_config = from_pulumi()
except ConfigError as err:
    # RunError: Pulumi shows the message (every problem and its fix) without a stack trace.
    raise pulumi.RunError(str(err)) from None

platform = build(stack_config)
for name, value in platform.outputs.items():
    pulumi.export(name, value)
