"""orbit-guardrails: what every resource of the stack must satisfy before `pulumi up` touches the cloud.

Each rule is a `ResourceValidationPolicy` whose check is a plain function of the resource's inputs, in
camelCase as the engine sends them. `violations()` runs them without the engine, so the unit tests and the
mocked program can feed resources through exactly the code `pulumi up --policy-pack infra/policy` runs.

This module imports only the policy SDK (no provider SDKs, nothing else of the repo): the pack's own
virtualenv installs nothing more, and the CLI imports it as a top-level module from the pack directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

# The label keys every labelled resource carries, so billing reports can group cost by app and stack.
# The program sets them itself (infra/config.py: app=orbit, stack=<stack>, managed-by=pulumi).
REQUIRED_LABELS = ("app", "stack", "managed-by")

Props = Mapping[str, Any]
Check = Callable[[str, Props], Iterable[str]]

# ---------------------------------------------------------------------------------------------- type tokens
BUCKET = "gcp:storage/bucket:Bucket"
REGISTRY = "gcp:artifactregistry/repository:Repository"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
WIF_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
SA_KEY = "gcp:serviceaccount/key:Key"
FIREWALL = "gcp:compute/firewall:Firewall"
HMAC_KEY = "gcp:storage/hmacKey:HmacKey"

# Grants on the resource hierarchy: they reach every bucket, repository and service account below.
HIERARCHY_IAM = frozenset(
    f"gcp:{module}/iAM{kind}:IAM{kind}"
    for module in ("projects", "folder", "organizations")
    for kind in ("Member", "Binding", "Policy")
)
AUTHORITATIVE_HIERARCHY_IAM = frozenset(t for t in HIERARCHY_IAM if not t.endswith("Member"))

STORAGE_ACL_ENTITIES = frozenset(
    {
        "gcp:storage/bucketAccessControl:BucketAccessControl",
        "gcp:storage/defaultObjectAccessControl:DefaultObjectAccessControl",
        "gcp:storage/objectAccessControl:ObjectAccessControl",
    }
)
STORAGE_ACL_LISTS = frozenset(
    {
        "gcp:storage/bucketACL:BucketACL",
        "gcp:storage/defaultObjectACL:DefaultObjectACL",
        "gcp:storage/objectACL:ObjectACL",
    }
)
STORAGE_PREDEFINED_ACL = STORAGE_ACL_LISTS | {"gcp:storage/bucketObject:BucketObject"}

# Where each labelled type keeps its labels. GKE copies the cluster's labels onto its nodes and disks.
LABEL_FIELDS = {
    BUCKET: "labels",
    REGISTRY: "labels",
    CLUSTER: "resourceLabels",
    "gcp:compute/address:Address": "labels",
    "gcp:compute/globalAddress:GlobalAddress": "labels",
    "gcp:compute/disk:Disk": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
    "gcp:pubsub/topic:Topic": "labels",
    "gcp:kms/cryptoKey:CryptoKey": "labels",
    "gcp:cloudrunv2/service:Service": "labels",
}

# Kubernetes workloads and the path from the object to its pod spec.
POD_SPEC_PATHS = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
LONG_RUNNING = frozenset(
    {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:apps/v1:ReplicaSet",
    }
)
HELM_CHARTS = frozenset(
    {"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v4:Chart"}
)

PUBLIC_PRINCIPALS = frozenset({"allusers", "allauthenticatedusers"})
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
IMPERSONATION_ROLES = frozenset(
    {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.serviceAccountOpenIdTokenCreator",
        "roles/iam.workloadIdentityUser",
    }
)
REGISTRY_WRITE_ROLES = frozenset(
    {
        "roles/artifactregistry.writer",
        "roles/artifactregistry.repoAdmin",
        "roles/artifactregistry.createOnPushWriter",
        "roles/artifactregistry.createOnPushRepoAdmin",
        "roles/artifactregistry.admin",
    }
)
ADMIN_ROLE = re.compile(r"^roles/[A-Za-z0-9]+\.(admin|[A-Za-z0-9]*Admin)$")
WHOLE_POOL = re.compile(r"^principalSet://iam\.googleapis\.com/.*/workloadIdentityPools/[^/]+/\*$")
DEFAULT_COMPUTE_SA = re.compile(r"-compute@developer\.gserviceaccount\.com$")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ANYWHERE = frozenset({"0.0.0.0/0", "::/0"})
ADMIN_PORTS = (22, 3389)  # SSH and RDP
RELEASE_CHANNELS = frozenset({"RAPID", "REGULAR", "STABLE", "EXTENDED"})
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
# One top-level `&&` term of a CEL condition that compares the repository with one literal.
REPO_PIN = re.compile(
    r"""^(?:(?:assertion|attribute)\.repository(?P<id1>_id)?\s*==\s*(?P<q1>['"])(?P<v1>[^'"*]+)(?P=q1)"""
    r"""|(?P<q2>['"])(?P<v2>[^'"*]+)(?P=q2)\s*==\s*(?:assertion|attribute)\.repository(?P<id2>_id)?)$"""
)


class Unreadable(ValueError):
    """A property the check needs cannot be parsed: the rule fails closed and says why."""


# ---------------------------------------------------------------------------------------------- helpers
def _get(obj: Any, *path: str | int) -> Any:
    """The value at `path`, or None when any step is missing (Mapping/Sequence: the engine sends proxies)."""
    for key in path:
        if isinstance(obj, Mapping):
            obj = obj.get(key)
        elif _is_list(obj) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
        if obj is None:
            return None
    return obj


def _is_list(obj: Any) -> bool:
    return isinstance(obj, Sequence) and not isinstance(obj, str | bytes)


def _items(obj: Any) -> list[Any]:
    return list(obj) if _is_list(obj) else []


def _is_iam(resource_type: str) -> bool:
    kind = resource_type.rsplit(":", 1)[-1].lower()
    return resource_type.startswith("gcp:") and kind.endswith(("iammember", "iambinding", "iampolicy"))


def _grants(resource_type: str, props: Props) -> Iterator[tuple[str, str]]:
    """(role, member) pairs of any IAM member, binding or policy resource."""
    kind = resource_type.rsplit(":", 1)[-1].lower()
    if kind.endswith("iammember"):
        yield str(props.get("role") or ""), str(props.get("member") or "")
    elif kind.endswith("iambinding"):
        for member in _items(props.get("members")):
            yield str(props.get("role") or ""), str(member)
    elif kind.endswith("iampolicy"):
        data = props.get("policyData")
        try:
            policy = json.loads(data) if isinstance(data, str) else data
        except json.JSONDecodeError as err:
            raise Unreadable(f"policyData is not valid JSON ({err.msg} at position {err.pos})") from err
        for binding in _items(_get(policy, "bindings")):
            for member in _items(_get(binding, "members")):
                yield str(_get(binding, "role") or ""), str(member)


def _pod_spec(resource_type: str, props: Props) -> Mapping[str, Any]:
    spec = _get(props, *POD_SPEC_PATHS[resource_type])
    return spec if isinstance(spec, Mapping) else {}


def _containers(pod: Mapping[str, Any], *, init: bool = True) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(display name, container) for the containers and, unless init=False, the init containers."""
    fields = ("containers", "initContainers") if init else ("containers",)
    for field in fields:
        for index, container in enumerate(_items(pod.get(field))):
            if isinstance(container, Mapping):
                name = container.get("name") or f"#{index}"
                kind = "init container" if field == "initContainers" else "container"
                yield f"{kind} '{name}'", container


def _node_configs(resource_type: str, props: Props) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, nodeConfig) of every node pool a NodePool or Cluster resource creates and keeps."""
    if resource_type == NODE_POOL:
        yield "nodeConfig", _get(props, "nodeConfig") or {}
        return
    if _get(props, "removeDefaultNodePool") is not True and not _items(props.get("nodePools")):
        yield "the default node pool (nodeConfig)", _get(props, "nodeConfig") or {}
    for index, pool in enumerate(_items(props.get("nodePools"))):
        yield f"nodePools[{index}].nodeConfig", _get(pool, "nodeConfig") or {}


def _node_pools(resource_type: str, props: Props) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, pool) for a NodePool resource or the inline node pools of a Cluster."""
    if resource_type == NODE_POOL:
        yield "node pool", props
    else:
        for index, pool in enumerate(_items(props.get("nodePools"))):
            if isinstance(pool, Mapping):
                yield f"nodePools[{index}]", pool


def _top_level_conjuncts(expression: str) -> list[str]:
    """The terms a CEL expression requires all of: split on `&&` outside parentheses and quotes.

    A top-level `||` makes the whole expression one term (`a && b || c` admits c alone), and so does
    anything this small parser does not understand: such a condition fails the pin check, closed.
    """
    terms, depth, quote, start = [], 0, "", 0
    i = 0
    while i < len(expression):
        char = expression[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif expression.startswith("||", i) and depth == 0:
            return [expression.strip()]
        elif expression.startswith("&&", i) and depth == 0:
            terms.append(expression[start:i])
            start = i + 2
            i += 1
        i += 1
    terms.append(expression[start:])
    result = []
    for term in (t.strip() for t in terms):
        while term.startswith("(") and term.endswith(")") and _balanced(term[1:-1]):
            term = term[1:-1].strip()
        if term:
            result.append(term)
    if len(result) == 1 and result[0] != expression.strip():
        return _top_level_conjuncts(result[0])
    return result


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _pins_repository(term: str) -> bool:
    match = REPO_PIN.match(term)
    if not match:
        return False
    value = match.group("v1") or match.group("v2")
    by_id = bool(match.group("id1") or match.group("id2"))
    return value.isdigit() if by_id else re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value) is not None


def _image_problem(image: Any) -> str | None:
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    if "@sha256:" in image:
        return None
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"image '{image}' has no tag (it means :latest)"
    if name.rsplit(":", 1)[1] == "latest":
        return f"image '{image}' uses the :latest tag"
    return None


# ---------------------------------------------------------------------------------------------- checks
def check_uniform_access(_: str, props: Props) -> Iterator[str]:
    if props.get("uniformBucketLevelAccess") is not True:
        yield ("uniformBucketLevelAccess is not true: object ACLs could grant access that bucket IAM does "
               "not show. Set uniform_bucket_level_access=True.")


def check_public_access_prevention(_: str, props: Props) -> Iterator[str]:
    value = props.get("publicAccessPrevention")
    if value != "enforced":
        yield (f"publicAccessPrevention is {value!r}, not 'enforced': a later IAM grant could make the data "
               "public. Set public_access_prevention=\"enforced\".")


def check_versioning(_: str, props: Props) -> Iterator[str]:
    if _get(props, "versioning", "enabled") is not True:
        yield ("versioning is not enabled: an overwritten or deleted DVC object could not be recovered. "
               "Set versioning={\"enabled\": True}.")


def check_noncurrent_lifecycle(_: str, props: Props) -> Iterator[str]:
    if _get(props, "versioning", "enabled") is not True:
        return
    for rule in _items(props.get("lifecycleRules")):
        condition = _get(rule, "condition") or {}
        if _get(rule, "action", "type") == "Delete" and (
            _get(condition, "withState") == "ARCHIVED"
            or any(_get(condition, key) is not None
                   for key in ("numNewerVersions", "daysSinceNoncurrentTime", "noncurrentTimeBefore"))
        ):
            return
    yield ("versioning is on but no lifecycle rule deletes noncurrent versions, so storage grows forever. "
           "Add a Delete rule with days_since_noncurrent_time or num_newer_versions.")


def check_public_acls(resource_type: str, props: Props) -> Iterator[str]:
    predefined = props.get("predefinedAcl")
    if resource_type in STORAGE_PREDEFINED_ACL and predefined in ("publicRead", "publicReadWrite"):
        yield f"predefinedAcl {predefined!r} makes objects public. Remove it."
    entities = []
    if resource_type in STORAGE_ACL_ENTITIES:
        entities.append(str(props.get("entity") or ""))
    if resource_type in STORAGE_ACL_LISTS:
        entities += [str(entry).split(":", 1)[-1] for entry in _items(props.get("roleEntities"))]
    for entity in entities:
        if entity.lower() in PUBLIC_PRINCIPALS:
            yield f"the ACL grants access to {entity}: anyone could read. Remove that entry."


def check_public_principals(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if member.lower() in PUBLIC_PRINCIPALS:
            yield f"{role or 'a role'} is granted to {member}, i.e. everyone. Grant it to named principals."


def check_no_keys(resource_type: str, _: Props) -> Iterator[str]:
    kind = "HMAC key" if resource_type == HMAC_KEY else "service-account key"
    yield (f"a {kind} is a long-lived secret that can leak and never expires. Use Workload Identity "
           "(GKE) or Workload Identity Federation (CI) instead.")


def check_basic_roles(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if role in BASIC_ROLES:
            yield f"{member} gets the basic role {role}, which spans every service. Grant a predefined role."


def check_hierarchy_admin(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if ADMIN_ROLE.match(role):
            yield (f"{member} gets {role} on the whole project/folder/organization. Grant it on the one "
                   "resource that needs it, or a narrower role.")


def check_hierarchy_impersonation(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if role in IMPERSONATION_ROLES:
            yield (f"{member} gets {role} project-wide, so it can act as every service account. "
                   "Grant it on the one service account (gcp.serviceaccount.IAMMember).")


def check_hierarchy_data_roles(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if role.startswith("roles/storage.") or role in REGISTRY_WRITE_ROLES:
            yield (f"{member} gets {role} project-wide, i.e. on every bucket/repository. Bind it on the "
                   "bucket (storage.BucketIAMMember) or repository (artifactregistry.RepositoryIamMember).")


def check_authoritative_iam(resource_type: str, _: Props) -> Iterator[str]:
    yield (f"{resource_type.rsplit(':', 1)[-1]} is authoritative: it removes grants made outside this stack "
           "(Google's service agents, the people running it). Use the additive IAMMember instead.")


def check_whole_pool(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if WHOLE_POOL.match(member):
            yield (f"{role} is granted to every identity of the pool ({member}). Grant it to "
                   "principalSet://.../attribute.repository/OWNER/REPO instead.")


def check_wif_condition(_: str, props: Props) -> Iterator[str]:
    condition = props.get("attributeCondition")
    if not isinstance(condition, str) or not condition.strip():
        yield ("the provider has no attributeCondition, so any token from the issuer (any GitHub repository) "
               "can authenticate. Set attribute_condition.")


def check_wif_repository(_: str, props: Props) -> Iterator[str]:
    issuer = str(_get(props, "oidc", "issuerUri") or "").rstrip("/")
    if issuer != GITHUB_ISSUER:
        return
    condition = props.get("attributeCondition")
    terms = _top_level_conjuncts(condition) if isinstance(condition, str) else []
    if not any(_pins_repository(term) for term in terms):
        yield (f"attributeCondition {condition!r} does not pin one repository: it needs a top-level "
               "`&&` term like assertion.repository == 'OWNER/REPO' (or assertion.repository_id == '123').")


def _opens(allow: Mapping[str, Any], port: int) -> bool:
    """Whether one `allow` entry of a firewall admits TCP traffic to `port`."""
    if str(allow.get("protocol") or "").lower() not in ("tcp", "all", "6"):
        return False
    ports = [str(p) for p in _items(allow.get("ports"))]
    if not ports:
        return True
    for entry in ports:
        low, _, high = entry.partition("-")
        if low.isdigit() and int(low) <= port <= int(high or low):
            return True
    return False


def check_firewall_admin_ports(_: str, props: Props) -> Iterator[str]:
    if str(props.get("direction") or "INGRESS").upper() != "INGRESS" or props.get("disabled") is True:
        return
    if not ANYWHERE & {str(r) for r in _items(props.get("sourceRanges"))}:
        return
    for allow in _items(props.get("allows")):
        if isinstance(allow, Mapping):
            for port in ADMIN_PORTS:
                if _opens(allow, port):
                    yield (f"ingress from anywhere reaches port {port} ({allow.get('protocol')}): "
                           "SSH/RDP are scanned within minutes. Use IAP TCP forwarding (35.235.240.0/20).")
                    break


def check_private_nodes(resource_type: str, props: Props) -> Iterator[str]:
    if resource_type == CLUSTER and _get(props, "privateClusterConfig", "enablePrivateNodes") is not True:
        yield ("privateClusterConfig.enablePrivateNodes is not true: nodes get public IPs. Enable private "
               "nodes (egress goes through Cloud NAT).")
    for where, pool in _node_pools(resource_type, props):
        if _get(pool, "networkConfig", "enablePrivateNodes") is False:
            yield f"{where} sets networkConfig.enablePrivateNodes=false: its nodes get public IPs."


def check_control_plane_access(_: str, props: Props) -> Iterator[str]:
    """The IP endpoint must not take connections from any address; the DNS endpoint is gated by IAM."""
    if _get(props, "controlPlaneEndpointsConfig", "ipEndpointsConfig", "enabled") is False:
        return  # no IP endpoint at all
    if _get(props, "privateClusterConfig", "enablePrivateEndpoint") is True:
        return  # the IP endpoint is internal to the VPC
    networks = _get(props, "masterAuthorizedNetworksConfig")
    if not isinstance(networks, Mapping):
        yield ("the control plane's external IP endpoint accepts connections from any address: set "
               "master_authorized_networks_config (an empty cidr_blocks list admits no one) and reach the "
               "cluster at its IAM-checked DNS endpoint instead.")
        return
    for block in _items(networks.get("cidrBlocks")):
        cidr = str(_get(block, "cidrBlock") or "")
        if cidr.endswith("/0"):
            yield (f"authorized network {cidr} admits the whole internet to the control plane's IP endpoint: "
                   "list your own ranges, or rely on the IAM-checked DNS endpoint.")
    if networks.get("gcpPublicCidrsAccessEnabled") is True:
        yield ("gcpPublicCidrsAccessEnabled admits every Compute Engine public IP (any Google Cloud "
               "customer's VM) to the control plane's IP endpoint: set it to false.")


def check_workload_identity(_: str, props: Props) -> Iterator[str]:
    pool = _get(props, "workloadIdentityConfig", "workloadPool")
    if not isinstance(pool, str) or not pool.endswith(".svc.id.goog"):
        yield ("workloadIdentityConfig.workloadPool is not set to PROJECT.svc.id.goog: pods would use the "
               "node's identity. Enable Workload Identity.")


def check_shielded_nodes(resource_type: str, props: Props) -> Iterator[str]:
    if resource_type == CLUSTER and props.get("enableShieldedNodes") is False:
        yield "enableShieldedNodes is false: nodes boot without verified firmware. Remove the override."
    for where, config in _node_configs(resource_type, props):
        if _get(config, "shieldedInstanceConfig", "enableIntegrityMonitoring") is False:
            yield f"{where} turns off integrity monitoring. Remove the override."


def check_legacy_abac(_: str, props: Props) -> Iterator[str]:
    if props.get("enableLegacyAbac") is True:
        yield "enableLegacyAbac is true: ABAC grants bypass RBAC. Set enable_legacy_abac=False."


def check_network_policy(_: str, props: Props) -> Iterator[str]:
    dataplane_v2 = props.get("datapathProvider") == "ADVANCED_DATAPATH"
    if not dataplane_v2 and _get(props, "networkPolicy", "enabled") is not True:
        yield ("no NetworkPolicy enforcement: set datapath_provider=\"ADVANCED_DATAPATH\" (Dataplane V2) or "
               "network_policy={\"enabled\": True}.")


def check_release_channel(_: str, props: Props) -> Iterator[str]:
    channel = _get(props, "releaseChannel", "channel")
    if channel not in RELEASE_CHANNELS:
        yield (f"releaseChannel is {channel!r}: without a channel nobody schedules security upgrades. "
               f"Set release_channel to one of {sorted(RELEASE_CHANNELS)}.")


def check_client_certificate(_: str, props: Props) -> Iterator[str]:
    if _get(props, "masterAuth", "clientCertificateConfig", "issueClientCertificate") is True:
        yield ("issueClientCertificate is true: a never-expiring admin credential would be minted. "
               "Set it to false; use IAM (gcloud/gke-gcloud-auth-plugin).")


def check_node_service_account(resource_type: str, props: Props) -> Iterator[str]:
    configs = list(_node_configs(resource_type, props))
    if resource_type == CLUSTER and _get(props, "clusterAutoscaling", "enabled") is True:
        configs.append(("clusterAutoscaling.autoProvisioningDefaults",
                        _get(props, "clusterAutoscaling", "autoProvisioningDefaults") or {}))
    for where, config in configs:
        account = _get(config, "serviceAccount")
        if not isinstance(account, str) or account in ("", "default") or DEFAULT_COMPUTE_SA.search(account):
            yield (f"{where} runs as {account or 'the default compute service account'}, which has Editor on "
                   "the project. Set service_account to a dedicated node service account.")


def check_workload_metadata(resource_type: str, props: Props) -> Iterator[str]:
    for where, config in _node_configs(resource_type, props):
        mode = _get(config, "workloadMetadataConfig", "mode")
        if mode != "GKE_METADATA":
            yield (f"{where}.workloadMetadataConfig.mode is {mode!r}: pods could read the node's credentials "
                   "from the metadata server. Set it to \"GKE_METADATA\".")


def check_auto_repair_upgrade(resource_type: str, props: Props) -> Iterator[str]:
    for where, pool in _node_pools(resource_type, props):
        for key in ("autoRepair", "autoUpgrade"):
            if _get(pool, "management", key) is False:
                yield f"{where} sets management.{key}=false: broken or unpatched nodes would stay. Remove it."


def check_cleanup_policies(_: str, props: Props) -> Iterator[str]:
    policies = _items(props.get("cleanupPolicies"))
    if not any(str(_get(p, "action") or "").upper() == "DELETE" for p in policies):
        yield ("no DELETE cleanup policy: every pushed image is kept and billed forever. Add one (e.g. "
               "untagged older than 7 days) next to a KEEP most-recent-versions policy.")
    if props.get("cleanupPolicyDryRun") is True:
        yield "cleanupPolicyDryRun is true: the cleanup policies only log. Set cleanup_policy_dry_run=False."


def check_labels(resource_type: str, props: Props) -> Iterator[str]:
    field = LABEL_FIELDS.get(resource_type, "labels")
    labels = props.get(field)
    labels = labels if isinstance(labels, Mapping) else {}
    if resource_type in LABEL_FIELDS:
        missing = [key for key in REQUIRED_LABELS if not labels.get(key)]
        if missing:
            yield (f"{field} lacks {', '.join(missing)} (required: {', '.join(REQUIRED_LABELS)}), so its "
                   "cost cannot be attributed. Add the labels.")
    for key, value in labels.items():
        if not LABEL_KEY.match(str(key)) or not isinstance(value, str) or not LABEL_VALUE.match(value):
            yield (f"label {key}={value!r} is not a valid GCP label: lowercase letters, digits, '_' and '-', "
                   "at most 63 characters, keys start with a letter.")


def check_image_pinned(resource_type: str, props: Props) -> Iterator[str]:
    for who, container in _containers(_pod_spec(resource_type, props)):
        problem = _image_problem(container.get("image"))
        if problem:
            yield f"{who} {problem}: a restart could run other code. Use an explicit version tag or digest."


def check_probes(resource_type: str, props: Props) -> Iterator[str]:
    for who, container in _containers(_pod_spec(resource_type, props), init=False):
        missing = [probe for probe in ("livenessProbe", "readinessProbe")
                   if not isinstance(container.get(probe), Mapping)]
        if missing:
            yield (f"{who} has no {' or '.join(missing)}: Kubernetes would route traffic to, or keep, a pod "
                   "that cannot answer.")


def check_resources(resource_type: str, props: Props) -> Iterator[str]:
    for who, container in _containers(_pod_spec(resource_type, props)):
        missing = [f"{kind}.{name}" for kind, name in (("requests", "cpu"), ("requests", "memory"),
                                                       ("limits", "memory"))
                   if _get(container, "resources", kind, name) in (None, "")]
        if missing:
            yield (f"{who} has no resources.{', resources.'.join(missing)}: the scheduler cannot place it "
                   "and one pod could starve the node.")


def check_non_root(resource_type: str, props: Props) -> Iterator[str]:
    pod = _pod_spec(resource_type, props)
    pod_context = pod.get("securityContext") or {}
    for who, container in _containers(pod):
        context = container.get("securityContext") or {}
        non_root = _get(context, "runAsNonRoot")
        if non_root is None:
            non_root = _get(pod_context, "runAsNonRoot")
        user = _get(context, "runAsUser")
        if user is None:
            user = _get(pod_context, "runAsUser")
        if non_root is not True:
            yield f"{who} may run as root: set securityContext.runAsNonRoot=true (pod or container)."
        elif user == 0:
            yield f"{who} sets runAsUser 0 (root). Use a non-zero UID."


def check_privileged(resource_type: str, props: Props) -> Iterator[str]:
    pod = _pod_spec(resource_type, props)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field) is True:
            yield f"the pod sets {field}=true: it shares the node's namespaces. Remove it."
    for who, container in _containers(pod):
        if _get(container, "securityContext", "privileged") is True:
            yield f"{who} is privileged: it has root on the node. Remove securityContext.privileged."


def check_privilege_escalation(resource_type: str, props: Props) -> Iterator[str]:
    for who, container in _containers(_pod_spec(resource_type, props)):
        if _get(container, "securityContext", "allowPrivilegeEscalation") is not False:
            yield (f"{who} does not set securityContext.allowPrivilegeEscalation=false (the default allows "
                   "setuid binaries to gain privileges).")


def check_chart_version(_: str, props: Props) -> Iterator[str]:
    chart = str(props.get("chart") or "")
    if chart.startswith(("./", "../", "/")):
        return
    version = props.get("version")
    if not isinstance(version, str) or not EXACT_VERSION.match(version):
        yield (f"chart {chart!r} has version {version!r}, not an exact version: the next `pulumi up` could "
               "install a different chart. Pin version=\"X.Y.Z\".")


# ---------------------------------------------------------------------------------------------- the rules
def _rule(
    name: str,
    applies_to: Collection[str] | Callable[[str], bool],
    check: Check,
    description: str,
    severity: Severity = Severity.HIGH,
) -> ResourceValidationPolicy:
    """A policy that runs `check` on the resource types it applies to and reports each problem it yields."""
    applies = applies_to if callable(applies_to) else frozenset(applies_to).__contains__

    def validate(args: ResourceValidationArgs, report_violation: Callable[..., None]) -> None:
        if not applies(args.resource_type):
            return
        try:
            problems = list(check(args.resource_type, args.props))
        except Unreadable as err:
            problems = [f"cannot be checked: {err}"]
        for problem in problems:
            report_violation(problem, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate, severity=severity)


_k8s = frozenset(POD_SPEC_PATHS)
_gke = (CLUSTER, NODE_POOL)

RULES: list[ResourceValidationPolicy] = [
    # Storage: the DVC remote holds the data and the models.
    _rule("storage-uniform-bucket-level-access", {BUCKET}, check_uniform_access,
          "Buckets use uniform bucket-level access: IAM is the only access control."),
    _rule("storage-public-access-prevention", {BUCKET}, check_public_access_prevention,
          "Buckets enforce public access prevention.", Severity.CRITICAL),
    _rule("storage-versioning", {BUCKET}, check_versioning,
          "Buckets keep object versions, so an overwrite or delete can be undone.", Severity.MEDIUM),
    _rule("storage-noncurrent-version-lifecycle", {BUCKET}, check_noncurrent_lifecycle,
          "Versioned buckets delete noncurrent versions after a while.", Severity.LOW),
    _rule("storage-no-public-acls", STORAGE_ACL_ENTITIES | STORAGE_PREDEFINED_ACL, check_public_acls,
          "No storage ACL grants allUsers or allAuthenticatedUsers.", Severity.CRITICAL),
    # IAM: keyless and least privilege.
    _rule("iam-no-public-principals", _is_iam, check_public_principals,
          "No IAM grant to allUsers or allAuthenticatedUsers, on any resource.", Severity.CRITICAL),
    _rule("iam-no-service-account-keys", {SA_KEY, HMAC_KEY}, check_no_keys,
          "No service-account or HMAC keys: identities are federated, never exported.", Severity.CRITICAL),
    _rule("iam-no-basic-roles", _is_iam, check_basic_roles,
          "No basic roles (owner, editor, viewer) anywhere.", Severity.CRITICAL),
    _rule("iam-no-project-wide-admin", HIERARCHY_IAM, check_hierarchy_admin,
          "No *Admin role granted on the project, folder or organization."),
    _rule("iam-no-project-wide-impersonation", HIERARCHY_IAM, check_hierarchy_impersonation,
          "Service-account user/token-creator roles are granted on one service account, not the project."),
    _rule("iam-data-roles-on-resource", HIERARCHY_IAM, check_hierarchy_data_roles,
          "Storage roles and registry write roles are bound on the bucket or repository, not the project."),
    _rule("iam-no-authoritative-project-iam", AUTHORITATIVE_HIERARCHY_IAM, check_authoritative_iam,
          "Project/folder/organization IAM is changed additively (IAMMember), never replaced."),
    _rule("iam-no-whole-pool-principals", _is_iam, check_whole_pool,
          "No grant to every identity of a workload identity pool."),
    # Workload Identity Federation for GitHub Actions.
    _rule("wif-provider-has-condition", {WIF_PROVIDER}, check_wif_condition,
          "Workload identity pool providers carry an attribute condition.", Severity.CRITICAL),
    _rule("wif-provider-pins-repository", {WIF_PROVIDER}, check_wif_repository,
          "GitHub OIDC providers only accept tokens from one repository.", Severity.CRITICAL),
    # Network.
    _rule("network-no-open-admin-ports", {FIREWALL}, check_firewall_admin_ports,
          "No firewall opens SSH or RDP to the whole internet.", Severity.CRITICAL),
    # GKE cluster and node pools.
    _rule("gke-private-nodes", _gke, check_private_nodes, "GKE nodes have no public IP addresses."),
    _rule("gke-control-plane-restricted", {CLUSTER}, check_control_plane_access,
          "The GKE control plane's IP endpoint is closed to the internet (authorized networks or private)."),
    _rule("gke-workload-identity", {CLUSTER}, check_workload_identity,
          "GKE clusters have Workload Identity on: pods get their own Google identity."),
    _rule("gke-shielded-nodes", _gke, check_shielded_nodes, "GKE nodes are shielded VMs.", Severity.MEDIUM),
    _rule("gke-legacy-abac-disabled", {CLUSTER}, check_legacy_abac, "GKE legacy ABAC is off."),
    _rule("gke-network-policy", {CLUSTER}, check_network_policy,
          "GKE enforces NetworkPolicy (Dataplane V2 or the network policy add-on).", Severity.MEDIUM),
    _rule("gke-release-channel", {CLUSTER}, check_release_channel,
          "GKE clusters are enrolled in a release channel.", Severity.MEDIUM),
    _rule("gke-no-client-certificate", {CLUSTER}, check_client_certificate,
          "GKE issues no client certificate (a static admin credential)."),
    _rule("gke-node-service-account", _gke, check_node_service_account,
          "GKE nodes run as a dedicated service account, never the default compute service account."),
    _rule("gke-node-workload-metadata", _gke, check_workload_metadata,
          "GKE node pools expose the GKE metadata server (GKE_METADATA), not the node's."),
    _rule("gke-node-auto-repair-upgrade", _gke, check_auto_repair_upgrade,
          "GKE node pools keep auto-repair and auto-upgrade on.", Severity.MEDIUM),
    # Artifact Registry.
    _rule("registry-cleanup-policies", {REGISTRY}, check_cleanup_policies,
          "Artifact Registry repositories delete old images with active cleanup policies.", Severity.LOW),
    # Cost attribution.
    _rule("labels-required", lambda t: t.startswith("gcp:"), check_labels,
          f"Labelled GCP resources carry the labels {', '.join(REQUIRED_LABELS)}, all valid.", Severity.LOW),
    # Kubernetes workloads.
    _rule("k8s-image-pinned", _k8s, check_image_pinned,
          "Containers use an explicit image tag or digest, never latest."),
    _rule("k8s-probes", LONG_RUNNING, check_probes,
          "Long-running containers have liveness and readiness probes.", Severity.MEDIUM),
    _rule("k8s-resources", _k8s, check_resources,
          "Containers request CPU and memory and limit memory.", Severity.MEDIUM),
    _rule("k8s-run-as-non-root", _k8s, check_non_root, "Containers run as a non-root user."),
    _rule("k8s-no-privileged", _k8s, check_privileged,
          "No privileged containers and no host network/PID/IPC namespaces.", Severity.CRITICAL),
    _rule("k8s-no-privilege-escalation", _k8s, check_privilege_escalation,
          "Containers set allowPrivilegeEscalation=false."),
    # Helm.
    _rule("helm-chart-version-pinned", HELM_CHARTS, check_chart_version,
          "Helm charts are installed at an exact version.", Severity.MEDIUM),
]


#: The options of a resource with none set, for violations() and stack_violations(). The engine builds these,
#: a pack never does: pulumi_policy documents no constructor for them, so this is the one place that calls it
#: (by keyword). tests/infra/test_sdk_contract.py fails if an upgrade changes its parameters.
ENGINE_OPTIONS = PolicyResourceOptions(
    protect=False,
    ignore_changes=[],
    delete_before_replace=None,
    aliases=[],
    custom_timeouts=PolicyCustomTimeouts(create_seconds=0, update_seconds=0, delete_seconds=0),
    additional_secret_outputs=[],
)


def violations(resource_type: str, props: dict, name: str = "resource") -> list[tuple[str, str]]:
    """(policy name, message) for every rule `props` (camelCase inputs) breaks, exactly as the engine would.

    The props go through the same unknown-checking proxy the engine uses, so a check that works here works
    under `pulumi up`.
    """
    found: list[tuple[str, str]] = []
    args = ResourceValidationArgs(
        resource_type=resource_type,
        props=unknown_checking_proxy(dict(props)),
        urn=f"urn:pulumi:stack::orbit::{resource_type}::{name}",
        name=name,
        opts=ENGINE_OPTIONS,
        provider=None,
    )
    for policy in RULES:
        policy.validate(args, lambda message, _urn=None, _name=policy.name: found.append((_name, message)))
    return found


# ---------------------------------------------------------------------------------------------- the edge
# What reaches the model from outside the cluster (docs/edge.md): only HTTPS through the Gateway, with Cloud
# Armor in front of every externally routed backend, and never the service's internal endpoints.
K8S_SERVICE = "kubernetes:core/v1:Service"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
HTTP_ROUTES = frozenset({"kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
                         "kubernetes:gateway.networking.k8s.io/v1beta1:HTTPRoute"})
BACKEND_POLICY = "kubernetes:networking.gke.io/v1:GCPBackendPolicy"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# GKE's GatewayClasses whose load balancer has an internet-facing address.
EXTERNAL_GATEWAY_CLASSES = frozenset({
    "gke-l7-global-external-managed", "gke-l7-global-external-managed-mc",
    "gke-l7-regional-external-managed", "gke-l7-regional-external-managed-mc",
    "gke-l7-gxlb", "gke-l7-gxlb-mc",
})
INTERNAL_LB_ANNOTATIONS = ("networking.gke.io/load-balancer-type", "cloud.google.com/load-balancer-type")
ORBIT_PART_OF = ("app.kubernetes.io/part-of", "orbit")
# Paths the service answers that must stay inside the cluster.
INTERNAL_PATHS = ("/metrics",)


def check_no_plain_http_load_balancer(_: str, props: Props) -> Iterator[str]:
    """orbit's own Services (every stack of orbit has an access mode) never get an external L4 address."""
    labels = _get(props, "metadata", "labels") or {}
    if not isinstance(labels, Mapping) or labels.get(ORBIT_PART_OF[0]) != ORBIT_PART_OF[1]:
        return
    if _get(props, "spec", "type") != "LoadBalancer":
        return
    annotations = _get(props, "metadata", "annotations") or {}
    if any(str(_get(annotations, key) or "").lower() == "internal" for key in INTERNAL_LB_ANNOTATIONS):
        return
    name = _get(props, "metadata", "name") or "the service"
    yield (f"Service '{name}' is an external LoadBalancer: plain HTTP on a public IP, without TLS, Cloud "
           "Armor or IAP. Make it ClusterIP behind the HTTPS Gateway (orbit:serviceAccess public or iap), or "
           "an internal one (annotation networking.gke.io/load-balancer-type: Internal).")


def _metadata_key(props: Props, default_namespace: str = "default") -> tuple[str, str]:
    namespace = _get(props, "metadata", "namespace") or default_namespace
    return str(namespace), str(_get(props, "metadata", "name"))


def _external_routes(resources: Sequence[tuple[str, Props]]) -> Iterator[tuple[str, Props, str]]:
    """(route name, route props, why it is external) for every HTTPRoute attached to an external Gateway.

    A parent Gateway that is not in the stack cannot be checked, so its routes count as external (closed).
    """
    gateways = {_metadata_key(props): str(_get(props, "spec", "gatewayClassName") or "")
                for typ, props in resources if typ == GATEWAY}
    for typ, props in resources:
        if typ not in HTTP_ROUTES:
            continue
        namespace, name = _metadata_key(props)
        for parent in _items(_get(props, "spec", "parentRefs")):
            if (_get(parent, "kind") or "Gateway") != "Gateway" or \
                    (_get(parent, "group") or GATEWAY_API_GROUP) != GATEWAY_API_GROUP:
                continue
            key = (str(_get(parent, "namespace") or namespace), str(_get(parent, "name")))
            gateway_class = gateways.get(key)
            if gateway_class is None:
                yield name, props, f"its Gateway {key[0]}/{key[1]} is not in this stack"
                break
            if gateway_class in EXTERNAL_GATEWAY_CLASSES:
                yield name, props, f"its Gateway {key[1]} is {gateway_class}"
                break


def _backend_services(route: Props, namespace: str) -> Iterator[tuple[str, str]]:
    for rule in _items(_get(route, "spec", "rules")):
        for ref in _items(_get(rule, "backendRefs")):
            if (_get(ref, "kind") or "Service") == "Service" and not _get(ref, "group"):
                yield str(_get(ref, "namespace") or namespace), str(_get(ref, "name"))


def check_routes_have_security_policy(resources: Sequence[tuple[str, Props]]) -> Iterator[str]:
    """Every Service an external route sends traffic to has a GCPBackendPolicy naming a Cloud Armor policy."""
    armored = set()
    for typ, props in resources:
        if typ == BACKEND_POLICY and _get(props, "spec", "default", "securityPolicy"):
            target = _get(props, "spec", "targetRef") or {}
            if _get(target, "kind") == "Service":
                namespace = str(_get(target, "namespace") or _metadata_key(props)[0])
                armored.add((namespace, str(_get(target, "name"))))
    for name, route, why in _external_routes(resources):
        for service in sorted(set(_backend_services(route, _metadata_key(route)[0]))):
            if service not in armored:
                yield (f"HTTPRoute '{name}' is external ({why}) but sends traffic to Service "
                       f"{service[0]}/{service[1]}, which no GCPBackendPolicy gives a Cloud Armor "
                       "securityPolicy: it would get no rate limit, body cap or WAF. Add one "
                       "(infra/components/edge.py).")


def _path_reaches(match: Any, path: str) -> bool:
    """Whether one HTTPRoute match (Gateway API semantics; no path = PathPrefix /) admits `path`."""
    kind = str(_get(match, "path", "type") or "PathPrefix")
    value = str(_get(match, "path", "value") or "/")
    if kind == "Exact":
        return value == path
    if kind == "PathPrefix":  # element-wise: /met does not match /metrics, /metrics matches /metrics/x
        prefix = value.rstrip("/")
        return prefix == "" or path == prefix or path.startswith(prefix + "/")
    try:  # RegularExpression (implementation-specific; GKE uses RE2, close to Python for such paths)
        return re.fullmatch(value, path) is not None
    except re.error as err:
        raise Unreadable(f"path regular expression {value!r} does not compile ({err})") from err


def check_internal_paths_not_routed(resources: Sequence[tuple[str, Props]]) -> Iterator[str]:
    for name, route, why in _external_routes(resources):
        for rule in _items(_get(route, "spec", "rules")):
            if not _items(_get(rule, "backendRefs")):
                continue  # a redirect or a fixed answer never reaches a backend
            matches = _items(_get(rule, "matches")) or [{}]
            for path in INTERNAL_PATHS:
                if any(_path_reaches(match, path) for match in matches):
                    yield (f"HTTPRoute '{name}' is external ({why}) and routes {path} to a backend: the "
                           "service's internal series would be public. Match only the API paths "
                           "(Exact /predict, /predict_batch).")


def _stack_rule(name: str, check: Callable[[Sequence[tuple[str, Props]]], Iterable[str]], description: str,
                severity: Severity = Severity.HIGH) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: Callable[..., None]) -> None:
        resources = [(r.resource_type, r.props) for r in args.resources]
        try:
            problems = list(check(resources))
        except Unreadable as err:
            problems = [f"cannot be checked: {err}"]
        for problem in problems:
            report_violation(problem, None)

    return StackValidationPolicy(name=name, description=description, validate=validate, severity=severity)


RULES.append(_rule(
    "edge-no-plain-http-load-balancer", {K8S_SERVICE}, check_no_plain_http_load_balancer,
    "orbit's Services are never external L4 LoadBalancers: the internet reaches the model over HTTPS only.",
    Severity.CRITICAL))

# Rules about how resources relate (a route, its Gateway, the policy of its backend) see the whole stack.
STACK_RULES: list[StackValidationPolicy] = [
    _stack_rule("edge-routes-have-security-policy", check_routes_have_security_policy,
                "Every backend of an external HTTPRoute has a Cloud Armor policy (GCPBackendPolicy)."),
    _stack_rule("edge-internal-paths-not-routed", check_internal_paths_not_routed,
                "No external HTTPRoute sends /metrics to a backend.", Severity.CRITICAL),
]


def stack_violations(resources: Sequence[tuple[str, dict]]) -> list[tuple[str, str]]:
    """(policy name, message) for every stack rule the (type, props) resources break, as the engine would."""
    found: list[tuple[str, str]] = []
    args = StackValidationArgs(resources=[
        PolicyResource(resource_type=typ, props=unknown_checking_proxy(dict(props)),
                       urn=f"urn:pulumi:stack::orbit::{typ}::r{i}", name=f"r{i}", opts=ENGINE_OPTIONS,
                       provider=None, parent=None, dependencies=[], property_dependencies={})
        for i, (typ, props) in enumerate(resources)
    ])
    for policy in STACK_RULES:
        policy.validate(args, lambda message, _urn=None, _name=policy.name: found.append((_name, message)))
    return found


# ---------------------------------------------------------------------------------------------- the log
# The prediction log (docs/infra.md#the-prediction-log-and-label-studio-in-the-cloud): objects under
# `monitoring/` of the data bucket, created by the service, read by the drift check and Label Studio.
BUCKET_IAM = frozenset({"gcp:storage/bucketIAMMember:BucketIAMMember",
                        "gcp:storage/bucketIAMBinding:BucketIAMBinding"})
LOG_PREFIX = "monitoring/"
# The log's data, which must expire (monitoring/reference/ is not log data: it lives as long as its model).
LOG_DATA_PREFIXES = ("monitoring/records/", "monitoring/images/")
CREATE_ONLY_ROLE = "roles/storage.objectCreator"
# What a grant limited to the log may be: create only, or read only. Never one that overwrites or deletes.
LOG_ROLES = frozenset({CREATE_ONLY_ROLE, "roles/storage.objectViewer"})
_OBJECT_PREFIX = re.compile(
    r"""^resource\.name\.startsWith\(\s*(?P<q>['"])projects/_/buckets/(?P<bucket>[^/'"]+)/objects/"""
    r"""(?P<prefix>[^'"*]+/)(?P=q)\s*\)$""")


def _condition(props: Props) -> str:
    return str(_get(props, "condition", "expression") or "")


def _object_prefix(expression: str) -> tuple[str, str] | None:
    """(bucket, prefix) when the condition admits only objects under one prefix (a top-level `&&` term).

    A top-level `||` may admit more than the prefix, so such a condition gives None (closed)."""
    for term in _top_level_conjuncts(expression):
        match = _OBJECT_PREFIX.match(term)
        if match:
            return match["bucket"], match["prefix"]
    return None


def _log_scoped(expression: str) -> bool:
    """Whether the condition names an object prefix inside the log (the monitor's `||` list clause too)."""
    return re.search(rf"/objects/{re.escape(LOG_PREFIX)}", expression) is not None


def check_object_creator_limited(resource_type: str, props: Props) -> Iterator[str]:
    for role, member in _grants(resource_type, props):
        if role == CREATE_ONLY_ROLE and _object_prefix(_condition(props)) is None:
            yield (f"{member} gets {role} on the whole bucket: it could create objects in the DVC store. "
                   "Limit it with a condition "
                   "resource.name.startsWith(\"projects/_/buckets/BUCKET/objects/PREFIX/\").")


def check_log_grants(resource_type: str, props: Props) -> Iterator[str]:
    if not _log_scoped(_condition(props)):
        return
    for role, member in _grants(resource_type, props):
        if role not in LOG_ROLES:
            yield (f"{member} gets {role} on the prediction log ({LOG_PREFIX}): a log grant creates "
                   f"({CREATE_ONLY_ROLE}) or reads (roles/storage.objectViewer), it never overwrites or "
                   "deletes; retention is the lifecycle rule's job.")


def _bucket_grants(resources: Sequence[tuple[str, Props]]) -> Iterator[tuple[str, str, str, str]]:
    """(bucket, role, member, condition) of every bucket IAM grant in the stack."""
    for typ, props in resources:
        if typ in BUCKET_IAM:
            for role, member in _grants(typ, props):
                yield str(_get(props, "bucket") or ""), role, member, _condition(props)


def check_log_writer_create_only(resources: Sequence[tuple[str, Props]]) -> Iterator[str]:
    """The log's writer (the member holding a prefix-limited objectCreator) holds nothing else on storage."""
    grants = list(_bucket_grants(resources))
    writers = {member for _, role, member, condition in grants
               if role == CREATE_ONLY_ROLE and _log_scoped(condition)}
    for bucket, role, member, _ in grants:
        if member in writers and role != CREATE_ONLY_ROLE:
            yield (f"{member} writes the prediction log and also gets {role} on bucket {bucket}: the service "
                   "must not read, overwrite or delete objects (nor touch the DVC store). Remove that grant.")
    for typ, props in resources:
        if typ in HIERARCHY_IAM:
            for role, member in _grants(typ, props):
                if member in writers and role.startswith("roles/storage."):
                    yield f"{member} writes the prediction log and also gets {role} project-wide. Remove it."


def check_log_readers_read_only(resources: Sequence[tuple[str, Props]]) -> Iterator[str]:
    """Who reads the log (the drift check, Label Studio) reads it only: no other storage grant anywhere."""
    grants = list(_bucket_grants(resources))
    readers = {member for _, role, member, condition in grants
               if role != CREATE_ONLY_ROLE and _log_scoped(condition)}
    for bucket, role, member, condition in grants:
        if member in readers and not _log_scoped(condition):
            yield (f"{member} reads the prediction log and also gets {role} on bucket {bucket} beyond it: a "
                   "log reader must not reach the DVC store (least privilege). Remove that grant.")
    for typ, props in resources:
        if typ in HIERARCHY_IAM:
            for role, member in _grants(typ, props):
                if member in readers and role.startswith("roles/storage."):
                    yield f"{member} reads the prediction log and also gets {role} project-wide. Remove it."


def _expires(bucket: Props, prefix: str) -> bool:
    for rule in _items(bucket.get("lifecycleRules")):
        condition = _get(rule, "condition") or {}
        prefixes = [str(p) for p in _items(_get(condition, "matchesPrefixes"))]
        age = _get(condition, "age")
        if (_get(rule, "action", "type") == "Delete" and isinstance(age, int | float) and age > 0
                and any(prefix.startswith(p) for p in prefixes)):
            return True
    return False


def check_log_expires(resources: Sequence[tuple[str, Props]]) -> Iterator[str]:
    """Every bucket that holds the log (a grant is limited to it) deletes the log's objects by age."""
    buckets = {str(_get(props, "name")): props for typ, props in resources if typ == BUCKET}
    logged = {bucket for bucket, _, _, condition in _bucket_grants(resources) if _log_scoped(condition)}
    for name in sorted(logged):
        missing = [p for p in LOG_DATA_PREFIXES if name in buckets and not _expires(buckets[name], p)]
        if missing:
            yield (f"bucket {name} holds the prediction log ({LOG_PREFIX}) but no lifecycle rule deletes "
                   f"{', '.join(missing)} by age: records and images would be kept, and billed, forever. Add "
                   "a Delete rule with age and matches_prefixes (orbit:monitoringRetentionDays).")


RULES.extend([
    _rule("storage-object-creator-prefix-limited", BUCKET_IAM, check_object_creator_limited,
          "roles/storage.objectCreator is granted only under one object prefix (IAM condition)."),
    _rule("storage-log-grants-create-or-read", BUCKET_IAM, check_log_grants,
          "Grants limited to the prediction log create or read objects, never overwrite or delete them."),
])
STACK_RULES.extend([
    _stack_rule("storage-log-writer-create-only", check_log_writer_create_only,
                "The prediction log's writer gets no other storage role: no read, no delete, no DVC store."),
    _stack_rule("storage-log-readers-read-only", check_log_readers_read_only,
                "Readers of the prediction log get no storage grant beyond it: no DVC store, no write."),
    _stack_rule("storage-log-expires", check_log_expires,
                "A bucket holding the prediction log deletes it by age (lifecycle rule on monitoring/).",
                Severity.MEDIUM),
])
