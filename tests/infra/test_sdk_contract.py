"""Private Pulumi SDK behaviour orbit relies on, each used from one module; an upgrade changing it fails here.

- infra/mocks.py: the secret wrapper of pulumi.runtime.rpc (is_secret) and MockMonitor's gRPC-named methods
  (RecordingMonitor);
- infra/policy/rules.py: the constructor of PolicyResourceOptions (ENGINE_OPTIONS).
"""

from __future__ import annotations

import inspect

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi_policy import PolicyResourceOptions

from infra.mocks import install, is_secret, reveal


class _Probe(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("orbit:test:Probe", name)
        self.child = pulumi.CustomResource(
            "random:index/randomId:RandomId",
            f"{name}-child",
            {"byteLength": 4, "prefix": pulumi.Output.secret("s3cret")},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"hex": self.child})


def test_the_recording_monitor_sees_registrations_secrets_and_component_outputs():
    monitor = install()
    start = len(monitor.registrations)

    @pulumi.runtime.test  # returns once every registration, including register_outputs, reached the monitor
    def program():
        return _Probe("sdk-contract").child.urn

    program()
    mine = [r for r in monitor.registrations[start:] if r.name.startswith("sdk-contract")]
    component = next(r for r in mine if r.type == "orbit:test:Probe")
    child = next(r for r in mine if r.type == "random:index/randomId:RandomId")
    assert child.parent == component.urn and child.custom and not component.custom
    prefix = child.inputs["prefix"]
    assert is_secret(prefix), f"the secret wrapper changed: {prefix!r} (infra/mocks.py is_secret)"
    assert reveal(child.inputs)["prefix"] == "s3cret" and not is_secret(child.inputs["byteLength"])
    assert child.outputs["hex"] == "a1b2c3"  # MockMonitor.resources[urn].state: what the mocks returned
    assert component.urn in monitor.outputs_registered


def test_mock_monitor_still_has_the_methods_recording_monitor_overrides():
    for method in ("RegisterResource", "RegisterResourceOutputs"):
        signature = inspect.signature(getattr(runtime_mocks.MockMonitor, method))
        assert list(signature.parameters) == ["self", "request"], method


def test_policy_resource_options_still_take_the_keywords_rules_py_passes():
    assert list(inspect.signature(PolicyResourceOptions.__init__).parameters)[1:7] == [
        "protect",
        "ignore_changes",
        "delete_before_replace",
        "aliases",
        "custom_timeouts",
        "additional_secret_outputs",
    ]
