"""Pulumi's unit-test mocks for the whole program, shared by the tests and `make plan`.

No cloud is asked: the mocks return each resource's inputs plus the few computed outputs the program reads
(a cluster's endpoints, a service account's email, a load balancer's IP), using documentation-only IP ranges
and a fake project number. The monitor records every registration (type, name, parent, inputs, options) so
tests and the plan can inspect exactly what `pulumi up` would ask for.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc

from infra.config import PROJECT_NAME, REPO_ROOT, StackConfig, from_stack_file

FAKE_PROJECT_NUMBER = "123456789012"
FAKE_ENDPOINT = "192.0.2.10"  # TEST-NET-1
FAKE_LB_IP = "198.51.100.7"  # TEST-NET-2
FAKE_EDGE_IP = "198.51.100.80"  # TEST-NET-2
FAKE_DNS_ENDPOINT = "gke-0123456789abcdef0123456789abcdef-123456789012.europe-west1.gke.goog"
FAKE_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nmock\n-----END CERTIFICATE-----\n").decode()
FAKE_PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nbW9jaw==\n-----END RSA PRIVATE KEY-----\n"


@dataclass
class Registration:
    """One resource as the engine would have received it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def is_kubernetes_object(self) -> bool:
        """A Kubernetes API object (not a Helm release, not a provider)."""
        return self.custom and self.type.startswith("kubernetes:") and ":helm.sh/" not in self.type

    def manifest(self) -> dict[str, Any]:
        """The object as the API server would receive it: secrets revealed, whole numbers as integers."""
        if not self.is_kubernetes_object:
            raise TypeError(f"{self.type} is not a Kubernetes object")
        return _integers(reveal(self.inputs))


def reveal(value: Any) -> Any:
    """`value` with every secret wrapper replaced by its plaintext (what providers and policies receive)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def _integers(value: Any) -> Any:
    """The engine's wire format has only floats; Kubernetes schemas want integers where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    """Whether `value` is a secret as a mock monitor receives it.

    Private SDK behaviour, read only here: pulumi.runtime.rpc serializes a secret as the dict
    ``{rpc._special_sig_key: rpc._special_secret_sig, "value": plaintext}``, and deserialize_properties keeps
    that wrapper for a monitor. tests/infra/test_sdk_contract.py fails if an upgrade changes it.
    """
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


class PlatformMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        # The outputs a StackReference to the stack itself reads: what its last update left (infra/live.py).
        self.live_outputs: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            return args.resource_id, {"name": args.resource_id, "outputs": dict(self.live_outputs),
                                      "secretOutputNames": []}
        inputs = dict(args.inputs)
        outputs = dict(inputs)
        outputs.update(_computed(args.typ, args.name, inputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId", "mock-project")
            return {"projectId": project, "number": FAKE_PROJECT_NUMBER, "name": project}
        raise NotImplementedError(f"the mocks do not answer {args.token}")


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    project = inputs.get("project", "mock-project")
    if typ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
        return {"email": email, "member": f"serviceAccount:{email}",
                "name": f"projects/{project}/serviceAccounts/{email}", "uniqueId": "100000000000000000001"}
    if typ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
        pool = inputs["workloadIdentityPoolId"]
        return {"name": f"projects/{FAKE_PROJECT_NUMBER}/locations/global/workloadIdentityPools/{pool}",
                "state": "ACTIVE"}
    if typ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
        return {"name": f"projects/{FAKE_PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                        f"{inputs['workloadIdentityPoolId']}/providers/{inputs['workloadIdentityPoolProviderId']}",
                "state": "ACTIVE"}
    if typ == "gcp:container/cluster:Cluster":
        endpoints = inputs.get("controlPlaneEndpointsConfig") or {}
        return {"endpoint": FAKE_ENDPOINT,
                "masterAuth": {**inputs.get("masterAuth", {}), "clusterCaCertificate": FAKE_CA},
                # GKE gives every cluster a DNS endpoint, whether or not it admits external traffic.
                "controlPlaneEndpointsConfig": {**endpoints, "dnsEndpointConfig": {
                    **(endpoints.get("dnsEndpointConfig") or {}), "endpoint": FAKE_DNS_ENDPOINT}}}
    if typ == "gcp:storage/bucket:Bucket":
        return {"url": f"gs://{inputs['name']}", "selfLink": f"https://www.googleapis.com/storage/v1/b/{inputs['name']}"}
    if typ == "random:index/randomPassword:RandomPassword":
        length = int(inputs.get("length", 16))
        return {"result": f"mock-{name}-{'x' * length}"[:length]}
    if typ == "random:index/randomId:RandomId":
        return {"hex": "a1b2c3", "b64Url": "obLD", "dec": "10597059"}
    if typ == "gcp:compute/globalAddress:GlobalAddress":
        return {"address": FAKE_EDGE_IP}
    if typ == "gcp:certificatemanager/dnsAuthorization:DnsAuthorization":
        return {"dnsResourceRecords": [{"name": f"_acme-challenge.{inputs['domain']}.", "type": "CNAME",
                                        "data": "0123abcd-4567-89ef.1.authorize.certificatemanager.goog."}]}
    if typ == "kubernetes:core/v1:Service" and (inputs.get("spec") or {}).get("type") == "LoadBalancer":
        return {"status": {"loadBalancer": {"ingress": [{"ip": FAKE_LB_IP}]}}}
    return {}


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The stock mock monitor, also keeping every registration in order (including components).

    MockMonitor is not a documented extension point: this relies on its gRPC-named methods RegisterResource
    and RegisterResourceOutputs receiving the engine's requests, and on ``self.resources[urn].state`` holding
    what Mocks.new_resource returned. tests/infra/test_sdk_contract.py fails if an upgrade changes either.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.outputs_registered: set[str] = set()  # URNs of components that called register_outputs
        self._lock = threading.Lock()

    def RegisterResourceOutputs(self, request):  # noqa: N802 (gRPC method name)
        with self._lock:
            self.outputs_registered.add(request.urn)
        return super().RegisterResourceOutputs(request)

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            registration = Registration(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent,
                custom=request.custom, inputs=rpc.deserialize_properties(request.object),
                outputs=self.resources[response.urn].state, protect=bool(request.protect),
                provider=request.provider, dependencies=list(request.dependencies),
                ignore_changes=list(request.ignoreChanges),
            )
            with self._lock:
                self.registrations.append(registration)
        return response


@dataclass
class MockRun:
    """The program run once under mocks: its config, components, resolved outputs and registrations."""

    config: StackConfig
    platform: Any  # infra.program.Platform
    outputs: dict[str, Any]
    registrations: list[Registration]

    @property
    def resources(self) -> list[Registration]:
        """Custom resources only: what a provider would create (components and providers excluded)."""
        return [r for r in self.registrations if r.custom and not r.type.startswith("pulumi:providers:")]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(typ) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {typ} named {name!r}, found {[r.name for r in found]}")
        return found[0]


_monitor: RecordingMonitor | None = None


def install(stack: str = "dev") -> RecordingMonitor:
    """Point the Pulumi runtime at the mocks, once per process (a second call reuses the first)."""
    global _monitor
    if _monitor is None:
        _monitor = RecordingMonitor(PlatformMocks())
        pulumi.runtime.set_mocks(_monitor.mocks, project=PROJECT_NAME, stack=stack, preview=False,
                                 monitor=_monitor)
    return _monitor


def run(cfg: StackConfig, live: dict[str, Any] | None = None) -> MockRun:
    """Run the whole program for `cfg` under the mocks and wait until every output has resolved.

    `live`: the outputs the stack's previous update left (none: a stack never updated).
    """
    from infra.program import build

    monitor = install(cfg.stack)
    monitor.mocks.live_outputs = dict(live or {})
    start = len(monitor.registrations)
    result: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        result["platform"] = platform = build(cfg)
        return pulumi.Output.all(**platform.outputs).apply(lambda resolved: result.update(outputs=resolved))

    program()
    return MockRun(cfg, result["platform"], result["outputs"], monitor.registrations[start:])


def stack_config(stack: str, overrides: dict[str, Any] | None = None, root: Path = REPO_ROOT) -> StackConfig:
    """The validated config of a committed Pulumi.<stack>.yaml, with fake secrets (mocks only)."""
    return from_stack_file(stack, root, overrides, secret=pulumi.Output.secret(FAKE_PRIVATE_KEY))
