"""Every setting of a stack, read and validated here and nowhere else.

Values arrive either from the Pulumi engine (strings; objects and lists as JSON) or from a
`Pulumi.<stack>.yaml` file read by the tests and `make plan` (native YAML types), so each reader accepts
both. Every problem is collected and reported at once, each naming its key and the `pulumi config set`
command that fixes it, so a first `pulumi up` fails in one round trip instead of one key at a time.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_NAME = "orbit"  # the `name:` in Pulumi.yaml, and the namespace of our own config keys
REPO_ROOT = Path(__file__).resolve().parents[1]

# Names that cross component boundaries (namespaces, Kubernetes service accounts bound to Google ones).
RUNNERS_NAMESPACE = "arc-runners"
ARC_SYSTEM_NAMESPACE = "arc-systems"
RUNNER_KSA = "arc-runner"
SERVING_NAMESPACE = "serving"
SERVING_KSA = "planet-classifier"
SERVING_PORT = 3000  # BentoML's port (docs/architecture.md)
# The model service's pods run as this user and group, not as the BentoML image's own `bentoml` (1034,
# bentoml/_internal/container/generate.py: BENTO_UID_GID): UIDs below 10000 may collide with users of the
# node (checkov CKV_K8S_40). The image needs no write access of its own: its files are world-readable,
# BENTOML_HOME and HOME live on the in-memory /tmp volume, which fsGroup makes writable for this group.
SERVING_UID = 10001
# ghcr.io/actions/actions-runner runs as `runner`, uid/gid 1001.
RUNNER_UID = 1001

# Labels orbit sets itself on every resource; user labels may add to them but not override them.
RESERVED_LABELS = ("app", "stack", "managed-by")

# Accelerator -> machine-type prefixes it can be attached to (GKE rejects other combinations at create time).
GPU_MACHINE_FAMILIES: dict[str, tuple[str, ...]] = {
    "nvidia-tesla-t4": ("n1-",),
    "nvidia-tesla-p4": ("n1-",),
    "nvidia-tesla-v100": ("n1-",),
    "nvidia-l4": ("g2-",),
    "nvidia-tesla-a100": ("a2-highgpu-", "a2-megagpu-"),
    "nvidia-a100-80gb": ("a2-ultragpu-",),
    "nvidia-h100-80gb": ("a3-highgpu-",),
}

# How many releases back a rollback may go: the previous good one, and one before it when that one was
# rolled back too (ci/rollback.py). The registry keeps at least this many images plus the live one.
ROLLBACK_DEPTH = 2

_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One config key: how it is documented, its default, and the value shown in its fix command."""

    name: str
    help: str
    example: str
    default: Any = _REQUIRED
    secret: bool = False
    kind: str = "scalar"  # scalar | list | map: structured values are set with `pulumi config set --path`

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def fix(self) -> str:
        """The command that sets this key, with an example value."""
        if self.secret:
            return f"pulumi config set --secret {self.name} < {self.example}"
        if self.kind == "list":
            return f"pulumi config set --path '{self.name}[0]' {self.example}"
        if self.kind == "map":
            name, value = self.example.split("=", 1)
            return f"pulumi config set --path '{self.name}.{name}' {value}"
        return f"pulumi config set {self.name} {self.example}"


def _k(name: str, help: str, example: str, default: Any = _REQUIRED, **kw: Any) -> Key:
    return Key(name=name, help=help, example=example, default=default, **kw)


# The single table of keys: docs/infra.md lists every one of them (a test checks it).
KEYS: dict[str, Key] = {
    key.name: key
    for key in [
        _k("gcp:project", "Google Cloud project ID to deploy into", "my-gcp-project"),
        _k("gcp:region", "region of the bucket, registry, network and (regional) cluster", "europe-west1"),
        _k("gcp:zone", "zone of a zonal cluster (required unless orbit:regionalCluster is true)",
           "europe-west1-b", None),
        _k("orbit:namePrefix", "prefix of every resource name (3-12 chars, a-z0-9-)", "orbit", "orbit"),
        _k("orbit:labels", "extra labels on every Google resource", "team=ml", {}, kind="map"),
        _k("orbit:protect", "production guard: Pulumi `protect`, GKE deletion protection, "
           "PREVENT deletion policies", "true", False),
        _k("orbit:regionalCluster", "regional (3 zones) instead of zonal control plane and nodes", "true",
           False),
        _k("orbit:releaseChannel", "GKE release channel: RAPID, REGULAR, STABLE or EXTENDED", "STABLE",
           "REGULAR"),
        _k("orbit:controlPlaneDnsAccess", "reach the control plane at its DNS endpoint, where Google IAM "
           "checks every request (works from anywhere, GitHub-hosted runners included)", "true", True),
        _k("orbit:masterAuthorizedNetworks", "CIDRs allowed to reach the control plane's external IP "
           "endpoint (empty: none; the DNS endpoint is not affected)", "203.0.113.0/24", [], kind="list"),
        _k("orbit:servingMachineType", "machine type of the serving node pool", "e2-standard-4",
           "e2-standard-2"),
        _k("orbit:servingMinNodes", "serving pool minimum nodes (whole cluster)", "2", 1),
        _k("orbit:servingMaxNodes", "serving pool maximum nodes (whole cluster)", "6", 3),
        _k("orbit:servingSpot", "run the serving pool on Spot VMs (cheap, may be preempted)", "true", False),
        _k("orbit:ciMachineType", "machine type of the CI runner pool (Spot, scales to zero)",
           "e2-standard-8", "e2-standard-4"),
        _k("orbit:ciMaxNodes", "CI runner pool maximum nodes", "5", 3),
        _k("orbit:nodeDiskSizeGb", "boot disk size of every node, GB", "100", 50),
        _k("orbit:gpuEnabled", "add the Spot GPU node pool and the GPU runner scale set", "true", False),
        _k("orbit:gpuType", "GPU accelerator type", "nvidia-l4", "nvidia-tesla-t4"),
        _k("orbit:gpuCount", "GPUs per GPU node (1, 2, 4 or 8)", "1", 1),
        _k("orbit:gpuMachineType", "machine type of the GPU pool (must suit the GPU type)", "g2-standard-8",
           "n1-standard-4"),
        _k("orbit:gpuMaxNodes", "GPU pool maximum nodes (minimum is always 0)", "2", 1),
        _k("orbit:gpuZones", "zones of the GPU pool, where gpuType is offered (`gcloud compute "
           "accelerator-types list`); default: the zonal cluster's zone; required for a regional cluster",
           "europe-west1-b", [], kind="list"),
        _k("orbit:gpuDriverVersion", "GKE-installed NVIDIA driver: DEFAULT or LATEST", "LATEST", "DEFAULT"),
        _k("orbit:githubOwner", "GitHub user or organisation that owns the repository", "my-github-org"),
        _k("orbit:githubRepo", "GitHub repository whose workflows may deploy and whose runners these are",
           "orbit"),
        _k("orbit:githubRepositoryId", "numeric repository ID, which the bootstrap's provider condition pins "
           "(guards against a deleted and re-created repository)", "123456789", None),
        _k("orbit:workloadIdentityProvider", "the GitHub provider of the Workload Identity pool the "
           "bootstrap made (docs/deploy.md, step 2): it outlives every stack, so its bindings and "
           "WIF_PROVIDER stay valid",
           "projects/123456789012/locations/global/workloadIdentityPools/orbit-github/providers/github"),
        _k("orbit:runnersEnabled", "install actions-runner-controller and the runner scale sets", "false",
           True),
        _k("orbit:githubAppId", "GitHub App ID (or client ID) that ARC authenticates as", "123456", None),
        _k("orbit:githubAppInstallationId", "installation ID of that GitHub App on the repository", "7654321",
           None),
        _k("orbit:githubAppPrivateKey", "the GitHub App's private key (PEM), stored as a Pulumi secret",
           "github-app.private-key.pem", None, secret=True),
        _k("orbit:arcChartVersion", "version of both actions-runner-controller Helm charts", "0.14.2",
           "0.14.2"),
        _k("orbit:runnerImage", "runner container image, pinned (never :latest)",
           "ghcr.io/actions/actions-runner:2.334.0", "ghcr.io/actions/actions-runner:2.334.0"),
        _k("orbit:runnerCpu", "CPU of one CPU runner pod (request = limit)", "2", "1500m"),
        _k("orbit:runnerMemory", "memory of one CPU runner pod (request = limit)", "8Gi", "6Gi"),
        _k("orbit:runnerMaxCpu", "maximum concurrent CPU runners", "6", 3),
        _k("orbit:runnerMaxGpu", "maximum concurrent GPU runners", "2", 1),
        _k("orbit:bucketLocation", "location of the data bucket (default: the region)", "EU", None),
        _k("orbit:bucketForceDestroy", "let `pulumi destroy` delete a non-empty bucket "
           "(default: true unless protect)", "false", None),
        _k("orbit:bucketNoncurrentDays", "delete noncurrent object versions after this many days", "90", 30),
        _k("orbit:bucketNoncurrentVersions", "keep at most this many noncurrent versions per object", "10",
           5),
        _k("orbit:bucketSoftDeleteDays", "soft-delete retention of deleted objects, days (0 = off)", "7", 0),
        _k("orbit:registryKeepCount", "keep this many most recent image versions", "20", 10),
        _k("orbit:registryUntaggedDays", "delete untagged images older than this many days", "14", 7),
        _k("orbit:registryMaxAgeDays", "delete tagged images older than this many days, except the "
           "registryKeepCount most recent (CI tags every build with its commit SHA)", "90", 30),
        _k("orbit:registryImmutableTags", "forbid moving an image tag once pushed", "false", True),
        _k("orbit:serviceEnabled", "unset: keep the live service (the image the stack's last update served) "
           "or none before the first deploy; true: deploy orbit:serviceImageTag (CI's deploy); false: remove "
           "the service", "true", None),
        _k("orbit:serviceImageName", "image name of the BentoML service in the registry", "planet-classifier",
           "planet-classifier"),
        _k("orbit:serviceImageTag", "image tag to deploy (never `latest`), e.g. the git SHA CI pushed",
           "3f2c1ab", None),
        _k("orbit:serviceImageDigest", "digest of that tag as the build resolved it (`ci.image` prints it): "
           "the cluster pulls this digest, so moving the tag changes nothing", "sha256:" + "0" * 64, None),
        _k("orbit:serviceMinReplicas", "HPA minimum replicas", "2", 1),
        _k("orbit:serviceMaxReplicas", "HPA maximum replicas", "6", 3),
        _k("orbit:serviceTargetCpu", "HPA target CPU utilisation, percent", "60", 70),
        _k("orbit:serviceCpuRequest", "CPU request of a service pod", "1", "500m"),
        _k("orbit:serviceMemoryRequest", "memory request of a service pod", "2Gi", "1Gi"),
        _k("orbit:serviceCpuLimit", "CPU limit of a service pod", "2", "1"),
        _k("orbit:serviceMemoryLimit", "memory limit of a service pod", "3Gi", "2Gi"),
        _k("orbit:serviceType", "Kubernetes Service type: ClusterIP, NodePort, or LoadBalancer (an internal "
           "one, internal stacks only)", "ClusterIP", "ClusterIP"),
        _k("orbit:serviceSourceRanges", "CIDRs allowed through the LoadBalancer (empty: anyone)",
           "203.0.113.0/24", [], kind="list"),
        _k("orbit:budgetAmount", "monthly budget; 0 or unset = no budget", "50", 0),
        _k("orbit:budgetCurrency", "currency of the budget (that of the billing account)", "EUR", "USD"),
        _k("orbit:billingAccount", "billing account ID, required with a budget", "012345-6789AB-CDEF01",
           None),
        _k("orbit:budgetThresholds", "alert at these fractions of the budget", "0.5", [0.5, 0.9, 1.0],
           kind="list"),
    ]
}


class ConfigError(ValueError):
    """One or more invalid or missing config values; the message says how to fix each."""

    def __init__(self, stack: str, problems: list[tuple[str, str]]):
        self.stack = stack
        self.problems = problems  # (key, message)
        lines = [f"stack {stack!r}: {len(problems)} config problem(s):"]
        for key, message in problems:
            lines.append(f"  - {key}: {message}")
            if key in KEYS:
                lines.append(f"      fix: {KEYS[key].fix()}")
        super().__init__("\n".join(lines))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]


# ---- typed views of the config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePoolConfig:
    machine_type: str
    min_nodes: int
    max_nodes: int
    spot: bool


@dataclass(frozen=True)
class GpuConfig:
    enabled: bool
    accelerator: str
    count: int
    machine_type: str
    max_nodes: int
    driver_version: str
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    regional: bool
    release_channel: str
    dns_access: bool
    authorized_networks: tuple[str, ...]
    disk_size_gb: int
    serving: NodePoolConfig
    ci: NodePoolConfig
    gpu: GpuConfig


@dataclass(frozen=True)
class GitHubConfig:
    owner: str
    repo: str
    repository_id: str | None
    wif_provider: str  # projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER

    @property
    def wif_pool(self) -> str:
        return self.wif_provider.split("/providers/", 1)[0]

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.slug}"


@dataclass(frozen=True)
class RunnersConfig:
    enabled: bool
    app_id: str | None
    installation_id: str | None
    private_key: Any  # pulumi.Output[str] (secret) or None; never a plain string in the program
    chart_version: str
    runner_image: str
    cpu: str
    memory: str
    max_cpu_runners: int
    max_gpu_runners: int


@dataclass(frozen=True)
class BucketConfig:
    location: str
    force_destroy: bool
    noncurrent_days: int
    noncurrent_versions: int
    soft_delete_days: int


@dataclass(frozen=True)
class RegistryConfig:
    keep_count: int
    untagged_days: int
    max_age_days: int
    immutable_tags: bool


@dataclass(frozen=True)
class ServiceConfig:
    enabled: bool | None  # None: keep what is live (infra/live.py)
    image_name: str
    image_tag: str | None
    image_digest: str | None
    min_replicas: int
    max_replicas: int
    target_cpu: int
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    type: str
    source_ranges: tuple[str, ...]


@dataclass(frozen=True)
class BudgetConfig:
    amount: float
    currency: str
    billing_account: str | None
    thresholds: tuple[float, ...]

    @property
    def enabled(self) -> bool:
        return self.amount > 0


@dataclass(frozen=True)
class StackConfig:
    stack: str
    project: str
    region: str
    zone: str | None
    name_prefix: str
    labels: dict[str, str] = field(hash=False)
    protect: bool
    github: GitHubConfig
    cluster: ClusterConfig
    runners: RunnersConfig
    bucket: BucketConfig
    registry: RegistryConfig
    service: ServiceConfig
    budget: BudgetConfig
    edge: EdgeConfig
    # Closing the loop (docs/infra.md#monitoring-and-labelling): read by the block at the end of this file.
    monitoring: MonitoringConfig = None  # type: ignore[assignment]
    labeling: LabelingConfig = None  # type: ignore[assignment]

    @property
    def location(self) -> str:
        """Where the cluster lives: the region when regional, else the zone."""
        return self.region if self.cluster.regional else str(self.zone)

    def name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"


# ---- reading ---------------------------------------------------------------------------------------------

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,10}[a-z0-9]$")
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_MACHINE_RE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_GH_OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_GH_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_GH_APP_ID_RE = re.compile(r"^(?:[0-9]+|Iv[0-9A-Za-z.]{4,40})$")
_DIGITS_RE = re.compile(r"^[0-9]{1,20}$")
_SEMVER_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_DOCKER_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_WIF_PROVIDER_RE = re.compile(
    r"^projects/[0-9]{6,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_BILLING_RE = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_CPU_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<m>m?)$")
_MEM_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<u>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu_millis(quantity: str) -> int | None:
    """A Kubernetes CPU quantity in millicores, or None when it is not one."""
    m = _CPU_RE.match(quantity)
    if not m:
        return None
    return round(float(m["n"]) * (1 if m["m"] else 1000))


def memory_bytes(quantity: str) -> int | None:
    """A Kubernetes memory quantity in bytes, or None when it is not one."""
    m = _MEM_RE.match(quantity)
    if not m:
        return None
    return round(float(m["n"]) * _MEM_UNITS[m["u"]])


class _Reader:
    """Typed access to raw values that records problems instead of stopping at the first one."""

    def __init__(self, values: Mapping[str, Any]):
        self.values = values
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append((key, message))

    def _raw(self, key: str) -> tuple[bool, Any]:
        spec = KEYS[key]  # KeyError: a key read here must be declared in KEYS
        value = self.values.get(key)
        if value is None or (isinstance(value, str) and value.strip() == "" and spec.kind == "scalar"):
            if spec.required:
                self.problem(key, f"missing: {spec.help}")
                return False, None
            return False, spec.default
        return True, value

    def str(self, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> Any:
        present, value = self._raw(key)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, f"expected a string, got {type(value).__name__}")
            return KEYS[key].default if not KEYS[key].required else None
        value = str(value).strip()
        if pattern is not None and not pattern.match(value):
            self.problem(key, f"{value!r} is not {what or 'valid'}")
        return value

    def int(self, key: str, lo: int, hi: int) -> Any:
        present, value = self._raw(key)
        if not present:
            return value
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            number = int(value)
        if number is None:
            self.problem(key, f"{value!r} is not a whole number")
            return KEYS[key].default if not KEYS[key].required else lo
        if not lo <= number <= hi:
            self.problem(key, f"{number} is outside {lo}..{hi}")
        return number

    def float(self, key: str, lo: float, hi: float) -> Any:
        present, value = self._raw(key)
        if not present:
            return value
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            self.problem(key, f"{value!r} is not a number")
            return KEYS[key].default
        if not lo <= number <= hi:
            self.problem(key, f"{number:g} is outside {lo:g}..{hi:g}")
        return number

    def bool(self, key: str) -> Any:
        present, value = self._raw(key)
        if not present:
            return value
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.problem(key, f"{value!r} is not true or false")
        return KEYS[key].default

    def choice(self, key: str, choices: tuple[str, ...]) -> Any:
        value = self.str(key)
        if isinstance(value, str) and value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def _structured(self, key: str, kind: type) -> Any:
        present, value = self._raw(key)
        if not present:
            return value
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, kind):
            self.problem(key, f"expected a {'list' if kind is list else 'map'}, got {value!r}")
            return KEYS[key].default
        return value

    def list(self, key: str) -> list[Any]:
        return list(self._structured(key, list))

    def map(self, key: str) -> dict[str, Any]:
        return dict(self._structured(key, dict))

    def cidrs(self, key: str) -> tuple[str, ...]:
        result = []
        for item in self.list(key):
            try:
                result.append(str(ipaddress.ip_network(str(item), strict=True)))
            except ValueError:
                self.problem(key, f"{item!r} is not a CIDR block such as 203.0.113.0/24")
        return tuple(result)


def parse(values: Mapping[str, Any], stack: str, secrets: Mapping[str, Any] | None = None) -> StackConfig:
    """Validate raw config values (full keys such as `orbit:githubRepo`) into a StackConfig.

    `secrets` maps secret keys to `pulumi.Output` values; they are checked for presence only, because their
    plaintext must never reach the program outside an Output.
    """
    secrets = dict(secrets or {})
    r = _Reader(values)

    for key in values:
        if key.startswith(f"{PROJECT_NAME}:") and key not in KEYS:
            close = difflib.get_close_matches(key, [k for k in KEYS if k.startswith(f"{PROJECT_NAME}:")], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            r.problem(key, f"unknown key{hint} (remove it: pulumi config rm {key})")
    for key, spec in KEYS.items():
        if spec.secret and key in values and key not in secrets:
            r.problem(key, "must be a secret, not plain text (`pulumi config rm` it, set it with --secret)")

    project = r.str("gcp:project", _PROJECT_RE, "a Google Cloud project ID (6-30 chars: a-z, 0-9, -)")
    region = r.str("gcp:region", _REGION_RE, "a region such as europe-west1")
    regional = r.bool("orbit:regionalCluster")
    zone = r.str("gcp:zone")
    if zone is None and not regional:
        r.problem("gcp:zone", "missing: a zonal cluster needs a zone (or set orbit:regionalCluster true)")
    elif isinstance(zone, str) and isinstance(region, str) and not re.fullmatch(rf"{region}-[a-z]", zone):
        r.problem("gcp:zone", f"{zone!r} is not a zone of region {region!r} (such as {region}-b)")
    prefix = r.str("orbit:namePrefix", _PREFIX_RE, "3-12 characters of a-z, 0-9 and -, starting a-z")

    labels = {}
    for k, v in r.map("orbit:labels").items():
        v = str(v).lower() if isinstance(v, bool) else str(v)
        if k in RESERVED_LABELS:
            r.problem("orbit:labels", f"label {k!r} is set by orbit itself")
        elif not _LABEL_KEY_RE.match(k) or not _LABEL_VALUE_RE.match(v):
            r.problem("orbit:labels", f"{k}={v} is not a valid Google label (lowercase a-z, 0-9, _ and -)")
        else:
            labels[k] = v
    labels.update({"app": PROJECT_NAME, "stack": re.sub(r"[^a-z0-9_-]", "-", stack.lower())[:63],
                   "managed-by": "pulumi"})

    protect = r.bool("orbit:protect")
    github = GitHubConfig(
        owner=r.str("orbit:githubOwner", _GH_OWNER_RE, "a GitHub user or organisation name"),
        repo=r.str("orbit:githubRepo", _GH_REPO_RE, "a GitHub repository name"),
        repository_id=r.str("orbit:githubRepositoryId", _DIGITS_RE, "a numeric repository ID"),
        wif_provider=r.str("orbit:workloadIdentityProvider", _WIF_PROVIDER_RE, "a provider resource name "
                           "projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER "
                           "(gcloud iam workload-identity-pools providers describe github --location global "
                           "--workload-identity-pool orbit-github --format 'value(name)')"),
    )

    cluster = _cluster(r, regional)
    runners = _runners(r, secrets)

    force_destroy = r.bool("orbit:bucketForceDestroy")
    if force_destroy is None:
        force_destroy = not protect
    elif force_destroy and protect:
        r.problem("orbit:bucketForceDestroy", "true contradicts orbit:protect true (a protected stack "
                  "keeps its data)")
    bucket_location = r.str("orbit:bucketLocation", re.compile(r"^[A-Za-z0-9-]{2,40}$"), "a GCS location")
    bucket = BucketConfig(
        location=(bucket_location or region or "").upper(),
        force_destroy=force_destroy,
        noncurrent_days=r.int("orbit:bucketNoncurrentDays", 1, 3650),
        noncurrent_versions=r.int("orbit:bucketNoncurrentVersions", 1, 1000),
        soft_delete_days=r.int("orbit:bucketSoftDeleteDays", 0, 90),
    )
    if 0 < bucket.soft_delete_days < 7:
        r.problem("orbit:bucketSoftDeleteDays", "must be 0 (off) or 7..90 days (a GCS limit)")

    registry = RegistryConfig(
        # The live image and the rollback target (ci.rollback) are among the most recent versions: never
        # fewer than ROLLBACK_DEPTH + 1 kept, whatever their age.
        keep_count=r.int("orbit:registryKeepCount", ROLLBACK_DEPTH + 1, 1000),
        untagged_days=r.int("orbit:registryUntaggedDays", 1, 365),
        max_age_days=r.int("orbit:registryMaxAgeDays", 1, 3650),
        immutable_tags=r.bool("orbit:registryImmutableTags"),
    )
    service = _service(r)
    budget = _budget(r)
    edge = _edge(r, secrets, service)
    monitoring = _monitoring(r)
    labeling = _labeling(r)

    if r.problems:
        raise ConfigError(stack, r.problems)
    return StackConfig(
        stack=stack, project=project, region=region, zone=zone, name_prefix=prefix, labels=labels,
        protect=protect, github=github, cluster=cluster, runners=runners, bucket=bucket, registry=registry,
        service=service, budget=budget, edge=edge, monitoring=monitoring, labeling=labeling,
    )


def _pool(r: _Reader, role: str, min_nodes: int, max_key: str, spot: bool) -> NodePoolConfig:
    machine = r.str(f"orbit:{role}MachineType", _MACHINE_RE, "a machine type such as e2-standard-4")
    max_nodes = r.int(max_key, 1, 100)
    if isinstance(max_nodes, int) and min_nodes > max_nodes:
        r.problem(max_key, f"{max_nodes} is below the minimum of {min_nodes}")
    return NodePoolConfig(machine_type=machine, min_nodes=min_nodes, max_nodes=max_nodes, spot=spot)


# G2 machine types carry a fixed number of L4s (the rest of the name says CPUs, not GPUs).
_G2_GPUS = {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
            "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8}


def fixed_gpu_count(machine: str) -> int | None:
    """GPUs a machine type comes with (A2/A3: its `-Ng` suffix; G2: the table); None: N1, pick."""
    if machine in _G2_GPUS:
        return _G2_GPUS[machine]
    match = re.fullmatch(r"a[23]-(?:highgpu|megagpu|ultragpu)-(\d+)g", machine)
    return int(match.group(1)) if match else None


def _cluster(r: _Reader, regional: bool) -> ClusterConfig:
    serving = _pool(r, "serving", r.int("orbit:servingMinNodes", 0, 100), "orbit:servingMaxNodes",
                    r.bool("orbit:servingSpot"))
    ci = _pool(r, "ci", 0, "orbit:ciMaxNodes", True)
    enabled = r.bool("orbit:gpuEnabled")
    accelerator = r.choice("orbit:gpuType", tuple(GPU_MACHINE_FAMILIES))
    machine = r.str("orbit:gpuMachineType", _MACHINE_RE, "a machine type such as n1-standard-4")
    if enabled and accelerator in GPU_MACHINE_FAMILIES and isinstance(machine, str):
        families = GPU_MACHINE_FAMILIES[accelerator]
        if not machine.startswith(families):
            r.problem("orbit:gpuMachineType", f"{machine} cannot carry {accelerator}; use a "
                      f"{' or '.join(f + '*' for f in families)} machine type")
    count = r.int("orbit:gpuCount", 1, 8)
    if count not in (1, 2, 4, 8):
        r.problem("orbit:gpuCount", f"{count} GPUs per node is not offered; use 1, 2, 4 or 8")
    elif enabled and isinstance(machine, str) and (fixed := fixed_gpu_count(machine)) not in (None, count):
        r.problem("orbit:gpuCount", f"{machine} comes with exactly {fixed} GPU(s), not {count}: set "
                  f"orbit:gpuCount {fixed}, or pick the machine type of that size")
    zones = tuple(str(z) for z in r.list("orbit:gpuZones"))
    region = r.values.get("gcp:region")
    for zone in zones:
        if isinstance(region, str) and not re.fullmatch(rf"{region}-[a-z]", zone):
            r.problem("orbit:gpuZones", f"{zone!r} is not a zone of region {region!r}")
    if enabled and regional and not zones:
        r.problem("orbit:gpuZones", "missing: a regional cluster's GPU pool would inherit all its zones, and "
                  "creation fails where the GPU type is not offered in every one; list the zones that offer "
                  f"it (gcloud compute accelerator-types list --filter 'name={accelerator}')")
    gpu = GpuConfig(
        enabled=enabled, accelerator=accelerator, count=count, machine_type=machine,
        max_nodes=r.int("orbit:gpuMaxNodes", 1, 16),
        driver_version=r.choice("orbit:gpuDriverVersion", ("DEFAULT", "LATEST")),
        zones=zones,
    )
    dns_access = r.bool("orbit:controlPlaneDnsAccess")
    authorized_networks = r.cidrs("orbit:masterAuthorizedNetworks")
    if dns_access is False and not authorized_networks:
        r.problem("orbit:controlPlaneDnsAccess", "false with no orbit:masterAuthorizedNetworks leaves the "
                  "control plane unreachable for `pulumi up` and kubectl: keep the DNS endpoint, or list the "
                  "CIDRs that may reach the IP endpoint")
    if any(ipaddress.ip_network(cidr).prefixlen == 0 for cidr in authorized_networks):
        r.problem("orbit:masterAuthorizedNetworks", "0.0.0.0/0 opens the control plane's IP endpoint to the "
                  "whole internet: list your own ranges, or rely on the IAM-checked DNS endpoint")
    return ClusterConfig(
        regional=regional,
        release_channel=r.choice("orbit:releaseChannel", ("RAPID", "REGULAR", "STABLE", "EXTENDED")),
        dns_access=dns_access,
        authorized_networks=authorized_networks,
        disk_size_gb=r.int("orbit:nodeDiskSizeGb", 20, 2000),
        serving=serving, ci=ci, gpu=gpu,
    )


def _runners(r: _Reader, secrets: Mapping[str, Any]) -> RunnersConfig:
    enabled = r.bool("orbit:runnersEnabled")
    app_id = r.str("orbit:githubAppId", _GH_APP_ID_RE, "a GitHub App ID (digits) or client ID (Iv...)")
    installation_id = r.str("orbit:githubAppInstallationId", _DIGITS_RE, "a numeric installation ID")
    private_key = secrets.get("orbit:githubAppPrivateKey")
    if enabled:
        for key, value in (("orbit:githubAppId", app_id), ("orbit:githubAppInstallationId", installation_id),
                           ("orbit:githubAppPrivateKey", private_key)):
            if value is None:
                r.problem(key, f"missing: {KEYS[key].help} (needed while orbit:runnersEnabled is true)")
    image = r.str("orbit:runnerImage")
    _check_pinned_image(r, "orbit:runnerImage", image)
    cpu, memory = r.str("orbit:runnerCpu"), r.str("orbit:runnerMemory")
    if cpu_millis(cpu) is None:
        r.problem("orbit:runnerCpu", f"{cpu!r} is not a CPU quantity such as 2 or 1500m")
    if memory_bytes(memory) is None:
        r.problem("orbit:runnerMemory", f"{memory!r} is not a memory quantity such as 6Gi")
    return RunnersConfig(
        enabled=enabled, app_id=app_id, installation_id=installation_id, private_key=private_key,
        chart_version=r.str("orbit:arcChartVersion", _SEMVER_RE, "a chart version such as 0.14.2"),
        runner_image=image, cpu=cpu, memory=memory,
        max_cpu_runners=r.int("orbit:runnerMaxCpu", 1, 100),
        max_gpu_runners=r.int("orbit:runnerMaxGpu", 1, 50),
    )


def _check_pinned_image(r: _Reader, key: str, image: str) -> None:
    m = _IMAGE_RE.match(image or "")
    if not m:
        r.problem(key, f"{image!r} is not an image reference such as registry/name:tag")
    elif not (m["tag"] or m["digest"]):
        r.problem(key, f"{image!r} has no tag: pin a version")
    elif (m["tag"] or "").lower() == "latest":
        r.problem(key, f"{image!r} uses the moving tag 'latest': pin a version")


def _service(r: _Reader) -> ServiceConfig:
    enabled = r.bool("orbit:serviceEnabled")
    tag = r.str("orbit:serviceImageTag", _DOCKER_TAG_RE, "a Docker tag")
    if isinstance(tag, str) and tag.lower() == "latest":
        r.problem("orbit:serviceImageTag", "'latest' is a moving tag: deploy an immutable tag such as "
                  "the git SHA CI pushed")
    elif tag is None and enabled:
        # A plain `up` keeps the live image; CI's deploy passes tag and digest with serviceEnabled true.
        r.problem("orbit:serviceImageTag", "missing: the image tag to deploy, needed while "
                  "orbit:serviceEnabled is true (to keep the live image instead: pulumi config rm "
                  "orbit:serviceEnabled)")
    digest = r.str("orbit:serviceImageDigest", _DIGEST_RE, "an image digest such as sha256:<64 hex digits>")
    if isinstance(tag, str) and digest is None:
        r.problem("orbit:serviceImageDigest", "missing: the digest of orbit:serviceImageTag, so that the "
                  "cluster pulls exactly the image that was built and tested (`python -m ci.image` prints "
                  "it; or: gcloud artifacts docker images describe REGISTRY/IMAGE:TAG --format "
                  "'value(image_summary"
                  ".digest)')")
    elif digest is not None and tag is None:
        r.problem("orbit:serviceImageDigest", "set without orbit:serviceImageTag: set both, or neither")
    image_name = r.str("orbit:serviceImageName", _IMAGE_NAME_RE, "an image name")
    min_replicas = r.int("orbit:serviceMinReplicas", 1, 100)
    max_replicas = r.int("orbit:serviceMaxReplicas", 1, 100)
    if isinstance(min_replicas, int) and isinstance(max_replicas, int) and max_replicas < min_replicas:
        r.problem("orbit:serviceMaxReplicas", f"{max_replicas} is below orbit:serviceMinReplicas "
                  f"{min_replicas}")
    quantities = {}
    for key, parser, what in (("orbit:serviceCpuRequest", cpu_millis, "CPU"),
                              ("orbit:serviceCpuLimit", cpu_millis, "CPU"),
                              ("orbit:serviceMemoryRequest", memory_bytes, "memory"),
                              ("orbit:serviceMemoryLimit", memory_bytes, "memory")):
        value = r.str(key)
        quantities[key] = (value, parser(value) if isinstance(value, str) else None)
        if quantities[key][1] is None:
            r.problem(key, f"{value!r} is not a {what} quantity such as {KEYS[key].example}")
    for request, limit in (("orbit:serviceCpuRequest", "orbit:serviceCpuLimit"),
                           ("orbit:serviceMemoryRequest", "orbit:serviceMemoryLimit")):
        (request_text, request_size), (limit_text, limit_size) = quantities[request], quantities[limit]
        if request_size is not None and limit_size is not None and request_size > limit_size:
            r.problem(request, f"{request_text} exceeds {limit} {limit_text}")
    service_type = r.choice("orbit:serviceType", ("LoadBalancer", "ClusterIP", "NodePort"))
    source_ranges = r.cidrs("orbit:serviceSourceRanges")
    if source_ranges and service_type != "LoadBalancer":
        r.problem("orbit:serviceSourceRanges", "only applies to orbit:serviceType LoadBalancer")
    return ServiceConfig(
        enabled=enabled, image_name=image_name, image_tag=tag, image_digest=digest, min_replicas=min_replicas,
        max_replicas=max_replicas, target_cpu=r.int("orbit:serviceTargetCpu", 10, 100),
        cpu_request=quantities["orbit:serviceCpuRequest"][0],
        memory_request=quantities["orbit:serviceMemoryRequest"][0],
        cpu_limit=quantities["orbit:serviceCpuLimit"][0],
        memory_limit=quantities["orbit:serviceMemoryLimit"][0],
        type=service_type, source_ranges=source_ranges,
    )


def _budget(r: _Reader) -> BudgetConfig:
    amount = r.float("orbit:budgetAmount", 0, 10_000_000)
    currency = r.str("orbit:budgetCurrency", re.compile(r"^[A-Z]{3}$"), "a currency code such as USD")
    account = r.str("orbit:billingAccount", _BILLING_RE, "a billing account ID such as 012345-6789AB-CDEF01")
    if amount and account is None:
        r.problem("orbit:billingAccount", "missing: a budget (orbit:budgetAmount > 0) needs the billing "
                  "account")
    thresholds = []
    for item in r.list("orbit:budgetThresholds"):
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = -1.0
        if not 0 < value <= 10:
            r.problem("orbit:budgetThresholds", f"{item!r} is not a fraction of the budget in (0, 10]")
        else:
            thresholds.append(value)
    if amount and not thresholds:
        r.problem("orbit:budgetThresholds", "a budget needs at least one alert threshold")
    return BudgetConfig(amount=amount, currency=currency, billing_account=account,
                        thresholds=tuple(sorted(set(thresholds))))


# ---- sources ---------------------------------------------------------------------------------------------


def from_pulumi() -> StackConfig:
    """The config of the stack the Pulumi engine is running (`pulumi up`, `pulumi preview`)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # Every `orbit:` key that is set, so that a misspelt one is reported instead of silently ignored.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {k: v for k, v in raw.items() if k.startswith(f"{PROJECT_NAME}:")}
    secrets = {}
    for key, spec in KEYS.items():
        namespace, name = key.split(":", 1)
        config = pulumi.Config(namespace)
        if spec.secret:
            value = config.get_secret(name)
            if value is not None:
                secrets[key] = value
                values[key] = "[secret]"
        else:
            # Structured values arrive as JSON text; parse() decodes them and reports what is not JSON.
            values[key] = config.get(name)
    return parse(values, pulumi.get_stack(), secrets)


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_stack_file(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `config:` of Pulumi.<stack>.yaml as full key -> value (secrets appear as `{'secure': ...}`)."""
    path = stack_file(stack, root)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {root}: create it (`pulumi stack init {stack}`)")
    document = yaml.safe_load(path.read_text()) or {}
    values = document.get("config") or {}
    if not isinstance(values, dict):
        raise ConfigError(stack, [("config", f"{path.name}: `config:` must be a mapping")])
    return {(k if ":" in k else f"{PROJECT_NAME}:{k}"): v for k, v in values.items()}


# ---- the edge: who may call the service, and how (docs/edge.md) ------------------------------------------
# One block for the access modes, the domain and the Cloud Armor limits, so that this file's other sections
# stay as they are.

ACCESS_MODES = ("public", "iap", "internal")
EXPOSED_MODES = ("public", "iap")  # the modes served by the HTTPS gateway on orbit:serviceDomain
# The service's own request-body limit (serving/config.py: ORBIT_MAX_UPLOAD_BYTES); the edge cap's default.
SERVICE_MAX_UPLOAD_BYTES = 10 * 1024 * 1024

KEYS.update({
    key.name: key
    for key in [
        _k("orbit:serviceAccess", "who may call the service: public (HTTPS, anyone, rate-limited), iap "
           "(HTTPS, only orbit:iapMembers) or internal (no external address)", "internal", "internal"),
        _k("orbit:serviceDomain", "domain the HTTPS gateway serves (required for public and iap)",
           "planets.example.org", None),
        _k("orbit:edgeRateLimitPerMinute", "Cloud Armor: requests per minute one client IP may send before "
           "it gets 429", "300", 120),
        _k("orbit:edgeMaxBodyBytes", "Cloud Armor: largest request body (Content-Length) let through, bytes; "
           "at most the service's own limit", "5242880", SERVICE_MAX_UPLOAD_BYTES),
        _k("orbit:iapMembers", "principals IAP admits in iap mode (user:, group:, serviceAccount:, domain:)",
           "group:ml-team@example.org", [], kind="list"),
        _k("orbit:iapClientId", "OAuth client ID IAP signs users in with (iap mode)",
           "123456789012-abc123.apps.googleusercontent.com", None),
        _k("orbit:iapClientSecret", "that OAuth client's secret, stored as a Pulumi secret (iap mode)",
           "iap-client-secret.txt", None, secret=True),
    ]
})


@dataclass(frozen=True)
class EdgeConfig:
    access: str
    domain: str | None
    rate_limit_per_minute: int
    max_body_bytes: int
    iap_members: tuple[str, ...]
    iap_client_id: str | None
    iap_client_secret: Any  # pulumi.Output[str] (secret) or None

    @property
    def exposed(self) -> bool:
        """Served on the internet through the HTTPS gateway (public or iap)."""
        return self.access in EXPOSED_MODES


_DOMAIN_RE = re.compile(
    r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_IAP_MEMBER_RE = re.compile(
    r"^(?:user|group|serviceAccount):[^@\s]+@[^@\s]+\.[a-z]{2,}$|^domain:[a-z0-9.-]+\.[a-z]{2,}$")
_OAUTH_CLIENT_RE = re.compile(r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$")


def _edge(r: _Reader, secrets: Mapping[str, Any], service: ServiceConfig) -> EdgeConfig:
    access = r.choice("orbit:serviceAccess", ACCESS_MODES)
    domain = r.str("orbit:serviceDomain", _DOMAIN_RE,
                   "a domain name such as planets.example.org (lowercase, no scheme, no path)")
    exposed = access in EXPOSED_MODES
    if exposed and domain is None:
        r.problem("orbit:serviceDomain", f"missing: orbit:serviceAccess {access} serves HTTPS on a domain of "
                  "yours (its certificate is issued for it); or keep the stack private with "
                  "`pulumi config set orbit:serviceAccess internal`")
    if exposed and service.type != "ClusterIP":
        r.problem("orbit:serviceType", f"{service.type} beside orbit:serviceAccess {access} would publish "
                  "the pods in plain HTTP next to the HTTPS gateway; the gateway reaches a ClusterIP Service")
    rate = r.int("orbit:edgeRateLimitPerMinute", 1, 100_000)
    max_body = r.int("orbit:edgeMaxBodyBytes", 1024, SERVICE_MAX_UPLOAD_BYTES)
    members = []
    for item in r.list("orbit:iapMembers"):
        if not isinstance(item, str) or not _IAP_MEMBER_RE.match(item):
            r.problem("orbit:iapMembers", f"{item!r} is not a principal such as user:ana@example.org, "
                      "group:ml-team@example.org, serviceAccount:ci@PROJECT.iam.gserviceaccount.com or "
                      "domain:example.org (never allUsers)")
        else:
            members.append(item)
    client_id = r.str("orbit:iapClientId", _OAUTH_CLIENT_RE,
                      "an OAuth client ID (…apps.googleusercontent.com)")
    client_secret = secrets.get("orbit:iapClientSecret")
    if access == "iap":
        if not members:
            r.problem("orbit:iapMembers", "missing: iap admits nobody unless principals are listed")
        for key, value in (("orbit:iapClientId", client_id), ("orbit:iapClientSecret", client_secret)):
            if value is None:
                r.problem(key, f"missing: {KEYS[key].help} (needed while orbit:serviceAccess is iap; "
                          "docs/edge.md says where to create the client)")
    return EdgeConfig(access=access, domain=domain, rate_limit_per_minute=rate, max_body_bytes=max_body,
                      iap_members=tuple(sorted(set(members))), iap_client_id=client_id,
                      iap_client_secret=client_secret)


# ---- closing the loop: the prediction log, its drift check, and Label Studio on GKE -----------------------
# One block for issue 10 section 4 and issue 11 section 4 (infra/components/monitoring.py, labeling.py).

KEYS.update({
    key.name: key
    for key in [
        _k("orbit:monitoringRetentionDays", "delete prediction-log objects (records and sampled images under "
           "monitoring/ in the data bucket) this many days after they were written", "30", 90),
        _k("orbit:monitorEnvironment", "GitHub environment whose jobs may act as the read-only monitor "
           "account (the scheduled drift check declares it)", "monitoring", "monitoring"),
        _k("orbit:monitoringScrapeInterval", "how often Managed Prometheus scrapes the service's /metrics "
           "(a Prometheus duration such as 30s or 1m)", "60s", "30s"),
        _k("orbit:unknownRateAlertEnabled", "create the Cloud Monitoring alert policy on the service's "
           "unknown rate", "true", False),
        _k("orbit:unknownRateThreshold", "alert when the share of predictions flagged unknown exceeds this "
           "fraction", "0.3", 0.2),
        _k("orbit:unknownRateWindowMinutes", "the window, minutes, over which the unknown rate is computed; "
           "it must stay above the threshold for as long again before the alert opens", "30", 60),
        _k("orbit:alertNotificationChannels", "Cloud Monitoring notification channels the alert notifies "
           "(required with the alert)", "projects/my-gcp-project/notificationChannels/1234567890",
           [], kind="list"),
        _k("orbit:labelStudioEnabled", "run Label Studio (and its PostgreSQL) on the cluster, reachable only "
           "through `kubectl port-forward`", "true", False),
        _k("orbit:labelStudioImage", "Label Studio image, pinned by digest (required with "
           "orbit:labelStudioEnabled)", "heartexlabs/label-studio:1.23.2@sha256:" + "0" * 64, None),
        _k("orbit:labelStudioPostgresImage", "PostgreSQL image of Label Studio's database, pinned by digest "
           "(required with orbit:labelStudioEnabled)", "postgres:17.6-bookworm@sha256:" + "0" * 64, None),
        _k("orbit:labelStudioDiskGb", "size of the database's persistent disk, GB", "20", 10),
    ]
})


@dataclass(frozen=True)
class MonitoringConfig:
    retention_days: int
    environment: str
    scrape_interval: str
    alert_enabled: bool
    unknown_rate_threshold: float
    window_minutes: int
    notification_channels: tuple[str, ...]


@dataclass(frozen=True)
class LabelingConfig:
    enabled: bool
    image: str | None
    postgres_image: str | None
    disk_gb: int


_ENVIRONMENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_DURATION_RE = re.compile(r"^[1-9][0-9]*(s|m)$")
_CHANNEL_RE = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]{1,30}$")


def _monitoring(r: _Reader) -> MonitoringConfig:
    enabled = r.bool("orbit:unknownRateAlertEnabled")
    threshold = r.float("orbit:unknownRateThreshold", 0, 1)
    if threshold == 0:
        r.problem("orbit:unknownRateThreshold", "0 would alert on the first unknown image: use a fraction "
                  "such as 0.2")
    channels = []
    for item in r.list("orbit:alertNotificationChannels"):
        if not isinstance(item, str) or not _CHANNEL_RE.match(item):
            r.problem("orbit:alertNotificationChannels", f"{item!r} is not a channel name such as "
                      "projects/PROJECT/notificationChannels/ID (gcloud beta monitoring channels list "
                      "--format 'value(name)')")
        else:
            channels.append(item)
    if enabled and not channels:
        r.problem("orbit:alertNotificationChannels", "missing: the unknown-rate alert would notify nobody; "
                  "list a notification channel, or keep orbit:unknownRateAlertEnabled false")
    return MonitoringConfig(
        retention_days=r.int("orbit:monitoringRetentionDays", 1, 3650),
        environment=r.str("orbit:monitorEnvironment", _ENVIRONMENT_RE, "a GitHub environment name"),
        scrape_interval=r.str("orbit:monitoringScrapeInterval", _DURATION_RE, "a duration such as 30s or 1m"),
        alert_enabled=enabled, unknown_rate_threshold=threshold,
        window_minutes=r.int("orbit:unknownRateWindowMinutes", 5, 1440),
        notification_channels=tuple(sorted(set(channels))),
    )


def _labeling(r: _Reader) -> LabelingConfig:
    enabled = r.bool("orbit:labelStudioEnabled")
    images = {}
    for key in ("orbit:labelStudioImage", "orbit:labelStudioPostgresImage"):
        image = r.str(key)
        images[key] = image
        if image is None:
            if enabled:
                r.problem(key, f"missing: {KEYS[key].help}")
            continue
        m = _IMAGE_RE.match(image) if "/" in image else _IMAGE_RE.match(f"docker.io/library/{image}")
        if not m or not m["digest"]:
            r.problem(key, f"{image!r} is not pinned by digest (NAME:TAG@sha256:...): a tag can be moved, "
                      "a digest cannot (docker buildx imagetools inspect NAME:TAG prints it)")
    return LabelingConfig(enabled=enabled, image=images["orbit:labelStudioImage"],
                          postgres_image=images["orbit:labelStudioPostgresImage"],
                          disk_gb=r.int("orbit:labelStudioDiskGb", 1, 1000))
