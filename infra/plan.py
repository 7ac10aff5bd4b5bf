"""`make plan`: what a stack would create, rendered from the mocks, for people without cloud credentials.

    python -m infra.plan [--stack dev]

This is NOT `pulumi preview`: nothing asks Google Cloud or the cluster anything, so it shows what the program
requests (types, names, key properties), not a diff against what exists.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

from infra.components.edge import PLAN_PROPERTIES as EDGE_PLAN_PROPERTIES
from infra.components.monitoring import PLAN_PROPERTIES as MONITORING_PLAN_PROPERTIES
from infra.config import ConfigError, stack_file

# Per resource type, the input properties (camelCase paths) worth reading in a review. Registered outputs
# (names, URLs) would not show them; tests/infra/test_plan_and_entrypoint.py fails when one goes stale.
KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "gcp:projects/service:Service": ("service",),
    "gcp:storage/bucket:Bucket": ("name", "location", "uniformBucketLevelAccess", "publicAccessPrevention",
                                  "versioning.enabled", "forceDestroy",
                                  "softDeletePolicy.retentionDurationSeconds"),
    "gcp:artifactregistry/repository:Repository": ("repositoryId", "location", "format",
                                                   "dockerConfig.immutableTags", "cleanupPolicies"),
    "gcp:compute/network:Network": ("name", "autoCreateSubnetworks"),
    "gcp:compute/subnetwork:Subnetwork": ("name", "ipCidrRange", "privateIpGoogleAccess"),
    "gcp:compute/router:Router": ("name",),
    "gcp:compute/routerNat:RouterNat": ("name", "natIpAllocateOption"),
    "gcp:container/cluster:Cluster": ("name", "location", "releaseChannel.channel",
                                      "privateClusterConfig.enablePrivateNodes", "datapathProvider",
                                      "workloadIdentityConfig.workloadPool", "deletionProtection",
                                      "controlPlaneEndpointsConfig.dnsEndpointConfig.allowExternalTraffic",
                                      "masterAuthorizedNetworksConfig"),
    "gcp:container/nodePool:NodePool": ("name", "nodeConfig.machineType", "nodeConfig.spot",
                                        "autoscaling.totalMinNodeCount", "autoscaling.totalMaxNodeCount",
                                        "nodeConfig.taints", "nodeConfig.guestAccelerators"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    "gcp:billing/budget:Budget": ("amount.specifiedAmount", "thresholdRules"),
    "kubernetes:helm.sh/v3:Release": ("name", "namespace", "chart", "version", "values.maxRunners"),
    "kubernetes:apps/v1:Deployment": ("metadata.name", "spec.template.spec.containers",
                                      "spec.strategy.rollingUpdate.maxUnavailable"),
    "kubernetes:core/v1:Service": ("metadata.name", "spec.type", "spec.ports"),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": ("metadata.name", "spec.minReplicas",
                                                          "spec.maxReplicas"),
    "pulumi:providers:kubernetes": ("kubeconfig",),
}
KEY_PROPERTIES.update(EDGE_PLAN_PROPERTIES)
KEY_PROPERTIES.update(MONITORING_PLAN_PROPERTIES)
IAM_PROPERTIES = ("role", "member")
K8S_PROPERTIES = ("metadata.namespace", "metadata.name")


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _short(value: Any, limit: int = 100) -> str:
    from infra.mocks import is_secret

    if is_secret(value):
        return "[secret]"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        # Lists of objects (containers, taints, policies): their names/ids/keys are what a reader needs.
        keys = ("name", "id", "key", "type", "image", "description")
        value = [" ".join(str(v[k]) for k in keys if k in v and not isinstance(v[k], dict)) or "{...}"
                 for v in value]
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def properties(typ: str, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    if typ in KEY_PROPERTIES:
        paths = KEY_PROPERTIES[typ]
    elif typ.startswith("gcp:") and "iam" in typ.lower():
        paths = IAM_PROPERTIES
    elif typ.startswith("kubernetes:"):
        paths = K8S_PROPERTIES
    else:
        paths = ()
    result = []
    for path in paths:
        value = _at(inputs, path)
        if value is not None and value != [] and value != {}:
            result.append((path, _short(value)))
    return result


def render(run: Any) -> str:
    """The plan of one mocked run as text: a tree of components and resources, then a summary."""
    cfg = run.config
    children: dict[str, list] = {}
    for r in run.registrations:
        children.setdefault(r.parent, []).append(r)
    roots = [p for p in children if p not in {r.urn for r in run.registrations}]
    lines = [
        f"orbit plan for stack {cfg.stack!r}: project {cfg.project}, {cfg.location} "
        f"({'regional' if cfg.cluster.regional else 'zonal'} cluster)",
        "",
        "  THIS IS NOT `pulumi preview`: no cloud API was called. The program ran against Pulumi's",
        "  unit-test mocks, so this lists what it would ask for, not a diff with what exists; computed",
        "  values (IPs, e-mails, the project number, secrets) are fakes.",
        "",
    ]
    if not cfg.service.enabled:
        lines[-1:-1] = ["  The model service (and the Kubernetes half of an HTTPS edge) comes with CI's",
                        "  first deploy: `make plan STACK=<stack> TAG=<sha>` renders such a release."]

    def walk(parent: str, indent: str) -> None:
        items = sorted(children.get(parent, []), key=lambda r: (r.custom, r.type, r.name))
        for i, r in enumerate(items):
            last = i == len(items) - 1
            branch = "└─ " if last else "├─ "
            flags = "  [protected]" if r.protect else ""
            if r.custom:
                lines.append(f"{indent}{branch}{r.type}  {r.name}{flags}")
                for key, value in properties(r.type, r.inputs):
                    lines.append(f"{indent}{'   ' if last else '│  '}    {key}: {value}")
            else:
                lines.append(f"{indent}{branch}[{r.type}]  {r.name}")
            walk(r.urn, indent + ("   " if last else "│  "))

    for root in roots:
        walk(root, "")

    resources = run.resources
    clouds = Counter(r.type.split(":", 1)[0] for r in resources)
    protected = sum(r.protect for r in resources)
    lines += [
        "",
        f"Summary: {len(resources)} resources ("
        + ", ".join(f"{n} {kind}" for kind, n in sorted(clouds.items()))
        + f"), {protected} protected, in {sum(not r.custom for r in run.registrations)} components.",
        "Outputs:",
    ]
    width = max(len(k) for k in run.outputs)
    lines += [f"  {k.ljust(width)}  {_short(v, 100)}" for k, v in run.outputs.items()]
    return "\n".join(lines)


#: A release needs a digest (CI's deploy pulls by digest); a plan built no image, so it renders a stand-in.
PLAN_DIGEST = "sha256:" + "0" * 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev",
                        help="stack whose Pulumi.<stack>.yaml to render (default: dev)")
    parser.add_argument("--image-tag", help="render a release of this image tag, as CI's deploy runs it "
                        "(default: the stack file alone, i.e. the first `pulumi up`, without the service)")
    parser.add_argument("--image-digest", default=PLAN_DIGEST,
                        help="digest of that image (default: a stand-in, since a plan pushes nothing)")
    args = parser.parse_args(argv)

    from infra import mocks

    print(f"==> rendering {stack_file(args.stack).name} under Pulumi mocks (no cloud calls)...",
          file=sys.stderr)
    started = time.perf_counter()
    try:
        mocks.install(args.stack)
        release = {"orbit:serviceEnabled": True, "orbit:serviceImageTag": args.image_tag,
                   "orbit:serviceImageDigest": args.image_digest}
        cfg = mocks.stack_config(args.stack, release if args.image_tag else None)
        run = mocks.run(cfg)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(run))
    print(f"==> done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
