"""Which image the model service runs: the one CI's deploy names, else the one that is live now.

CI's deploy passes `orbit:serviceImageTag` and `orbit:serviceImageDigest`; nobody else does. A person's plain
`pulumi up` (or the infra workflow's) passes neither, and must neither remove nor downgrade the service, so
the program reads the image its own stack served at the end of its last update (the `service_image` output,
through a StackReference to itself) and keeps it. Before the first deploy that output is empty: no service,
and the update says so. `orbit:serviceEnabled false` is the one way to remove the service.
"""

from __future__ import annotations

import pulumi
from pulumi.runtime.sync_await import _sync_await

from infra.config import StackConfig

OUTPUT = "service_image"


def self_reference_name() -> str:
    """organization/project/stack: the name that works on Pulumi Cloud and on a bucket backend alike."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def live_image() -> str | None:
    """The image (registry/name:tag@sha256:...) the stack's last update served; None before any deploy."""
    reference = pulumi.StackReference("live", stack_name=self_reference_name())
    # Whether a Service exists decides which resources are registered, so the value is needed now, not as
    # an Output; a StackReference's outputs are read from the backend during preview and update alike.
    details = _sync_await(reference.get_output_details(OUTPUT))
    value = details.value if details.value is not None else details.secret_value
    return value or None


def service_image(cfg: StackConfig, registry_path: pulumi.Input[str]) -> pulumi.Input[str] | None:
    """The image reference to deploy, or None for no service (logged, so the update shows why)."""
    s = cfg.service
    if s.enabled is False:
        pulumi.log.warn("orbit:serviceEnabled is false: the model service is removed (or stays absent).")
        return None
    if s.image_tag:
        # Tag for people and the release history; digest for the cluster: a moved tag changes nothing.
        return pulumi.Output.concat(registry_path, f"/{s.image_name}:{s.image_tag}@{s.image_digest}")
    live = live_image()
    if live:
        pulumi.log.info(f"keeping the live model service image {live} (no orbit:serviceImageTag given)")
        return live
    pulumi.log.warn("No model service yet: no image was ever deployed on this stack. CI's deploy workflow "
                    "creates it after its first image build (docs/deploy.md, step 5).")
    return None
