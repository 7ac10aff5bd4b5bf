"""Every setting of a stack: one pydantic model, read and validated here and nowhere else.

Values arrive from the Pulumi engine (strings; lists and maps as JSON) or from a `Pulumi.<stack>.yaml` (native
YAML types: the tests, `make plan`, `ci.image`, `ci.preflight`), so each value type accepts both. Every
problem is reported at once, each naming its key and the `pulumi config set` command that fixes it, so a first
`pulumi up` fails in one round trip instead of one key at a time. This module needs pydantic and PyYAML only
(ci/ imports it from .venv, which has no Pulumi SDK); `from_pulumi` imports the SDK when it is called.
"""

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

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

ACCESS_MODES = ("public", "iap", "internal")
EXPOSED_MODES = ("public", "iap")  # the modes served by the HTTPS gateway on orbit:serviceDomain
# The service's own request-body limit (serving/config.py: ORBIT_MAX_UPLOAD_BYTES); the edge cap's default.
SERVICE_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# The pod's ORBIT_WORKERS (serving/config.py): one server process per CPU of orbit:serviceCpuLimit, as BentoML
# reads the container's CPU quota; a worker's event loop and inference thread share one GIL, so a second CPU
# serves only through a second process.
SERVICE_WORKERS = "cpu_count"


# ---- value types: each accepts the engine's strings and YAML's values, and words its own error -------------


def _fail(message: str) -> NoReturn:
    raise PydanticCustomError("orbit", message)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    _fail(f"{value!r} is not true or false")


def Int(lo: int, hi: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            number = int(value)
        else:
            _fail(f"{value!r} is not a whole number")
        if not lo <= number <= hi:
            _fail(f"{number} is outside {lo}..{hi}")
        return number

    return Annotated[int, BeforeValidator(check)]


def Float(lo: float, hi: float, what: str | None = None) -> Any:
    def check(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            _fail(f"{value!r} is not a number")
        if not lo <= number <= hi:
            _fail(f"{value!r} is not {what}" if what else f"{number:g} is outside {lo:g}..{hi:g}")
        return number

    return Annotated[float, BeforeValidator(check)]


def Text(pattern: str | None = None, what: str = "valid",
         check: Callable[[str], None] | None = None) -> Any:
    def text(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            _fail(f"expected a string, got {type(value).__name__}")
        value = str(value).strip()
        if pattern is not None and not re.match(pattern, value):
            _fail(f"{value!r} is not {what}")
        if check is not None:
            check(value)
        return value

    return Annotated[str, BeforeValidator(text)]


def Choice(*options: str) -> Any:
    def check(value: Any) -> str:
        if value not in options:
            _fail(f"{value!r} is not one of {', '.join(options)}")
        return value

    return Annotated[Literal[options], BeforeValidator(check)]


def _structured(kind: type) -> Callable[[Any], Any]:
    """The engine hands lists and maps over as JSON text."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, kind):
            _fail(f"expected a {'list' if kind is list else 'map'}, got {value!r}")
        return value

    return parse


def List(item: Any, *after: Callable[[tuple], tuple]) -> Any:
    return Annotated[tuple[item, ...], BeforeValidator(_structured(list)), *map(AfterValidator, after)]


def _unique(items: tuple) -> tuple:
    return tuple(sorted(set(items)))


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=True))
    except ValueError:
        _fail(f"{value!r} is not a CIDR block such as 203.0.113.0/24")


def Opt(kind: Any) -> Any:
    """`kind` or unset (None): the validators stay outside the union, so a bad value gets one message."""
    return Annotated[kind.__origin__ | None, *kind.__metadata__]


Cidr = Annotated[str, BeforeValidator(_cidr)]
Bool = Annotated[bool, BeforeValidator(_bool)]
Secret = Any  # a pulumi.Output[str] (secret) or None: its plaintext never reaches the program unwrapped


def _not_whole_internet(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    if any(ipaddress.ip_network(cidr).prefixlen == 0 for cidr in cidrs):
        _fail("0.0.0.0/0 opens the control plane's IP endpoint to the whole internet: list your own ranges, "
              "or rely on the IAM-checked DNS endpoint")
    return cidrs


def _label_key(key: Any) -> str:
    if key in RESERVED_LABELS:
        _fail(f"label {key!r} is set by orbit itself")
    if not isinstance(key, str) or not re.match(r"^[a-z][a-z0-9_-]{0,62}$", key):
        _fail(f"{key!r} is not a valid Google label key (lowercase a-z, 0-9, _ and -)")
    return key


def _label_value(value: Any) -> str:
    value = str(value).lower() if isinstance(value, bool) else str(value)
    if not re.match(r"^[a-z0-9_-]{0,63}$", value):
        _fail(f"{value!r} is not a valid Google label value (lowercase a-z, 0-9, _ and -)")
    return value


LabelKey = Annotated[str, BeforeValidator(_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Labels = Annotated[dict[LabelKey, LabelValue], BeforeValidator(_structured(dict))]

_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _pinned_image(image: str) -> None:
    m = _IMAGE_RE.match(image)
    if not m:
        _fail(f"{image!r} is not an image reference such as registry/name:tag")
    if not (m["tag"] or m["digest"]):
        _fail(f"{image!r} has no tag: pin a version")
    if (m["tag"] or "").lower() == "latest":
        _fail(f"{image!r} uses the moving tag 'latest': pin a version")


def _by_digest(image: str) -> None:
    m = _IMAGE_RE.match(image if "/" in image else f"docker.io/library/{image}")
    if not m or not m["digest"]:
        _fail(f"{image!r} is not pinned by digest (NAME:TAG@sha256:...): a tag can be moved, a digest cannot "
              "(docker buildx imagetools inspect NAME:TAG prints it)")


def _not_latest(tag: str) -> None:
    if tag.lower() == "latest":
        _fail("'latest' is a moving tag: deploy an immutable tag such as the git SHA CI pushed")


_CPU_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<m>m?)$")
_MEM_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<u>Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu_millis(quantity: str) -> int | None:
    """A Kubernetes CPU quantity in millicores, or None when it is not one."""
    m = _CPU_RE.match(quantity)
    return round(float(m["n"]) * (1 if m["m"] else 1000)) if m else None


def memory_bytes(quantity: str) -> int | None:
    """A Kubernetes memory quantity in bytes, or None when it is not one."""
    m = _MEM_RE.match(quantity)
    return round(float(m["n"]) * _MEM_UNITS[m["u"]]) if m else None


def Quantity(parser: Callable[[str], int | None], what: str, example: str) -> Any:
    def check(value: str) -> None:
        if parser(value) is None:
            _fail(f"{value!r} is not a {what} quantity such as {example}")

    return Text(check=check)


# G2 machine types carry a fixed number of L4s (the rest of the name says CPUs, not GPUs).
_G2_GPUS = {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
            "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8}


def fixed_gpu_count(machine: str) -> int | None:
    """GPUs a machine type comes with (A2/A3: its `-Ng` suffix; G2: the table); None: N1, pick."""
    if machine in _G2_GPUS:
        return _G2_GPUS[machine]
    match = re.fullmatch(r"a[23]-(?:highgpu|megagpu|ultragpu)-(\d+)g", machine)
    return int(match.group(1)) if match else None


_MACHINE = r"^[a-z][a-z0-9]*-[a-z0-9-]+$"
_DIGITS = r"^[0-9]{1,20}$"
_PROJECT = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
_IMAGE_NAME = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
_DOMAIN = r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
_PRINCIPAL = r"^(?:user|group|serviceAccount):[^@\s]+@[^@\s]+\.[a-z]{2,}$|^domain:[a-z0-9.-]+\.[a-z]{2,}$"
_CHANNEL = r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]{1,30}$"


# ---- the model: one field per key, grouped as the components read them -----------------------------------


def key(name: str, *, help: str, example: str, default: Any = ..., secret: bool = False,
        shown: str | None = None) -> Any:
    """A config key: `name` as `pulumi config set` takes it, what it does, a valid example value, and
    (`shown`) what the docs' default column says when the default alone would mislead."""
    extra = {"example": example, "secret": secret, "shown": shown}
    return Field(default, alias=name, description=help, json_schema_extra=extra)


class Section(BaseModel):
    """Part of a stack's config. Every section reads the same flat `namespace:key` mapping."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        nested = [name for name, f in cls.model_fields.items() if _section(f) is not None]
        return {**data, **{name: data for name in nested}} if isinstance(data, dict) else data


def _section(field: FieldInfo) -> type[Section] | None:
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Section) else None


@dataclass(frozen=True)
class NodePoolConfig:
    machine_type: str
    min_nodes: int
    max_nodes: int
    spot: bool


class GpuConfig(Section):
    enabled: Bool = key("orbit:gpuEnabled", help="add the Spot GPU node pool and the GPU runner scale set",
                        example="true", default=False)
    accelerator: Choice(*GPU_MACHINE_FAMILIES) = key("orbit:gpuType", help="GPU accelerator type",
                                                     example="nvidia-l4", default="nvidia-tesla-t4")
    count: Annotated[Int(1, 8), AfterValidator(lambda n: n if n in (1, 2, 4, 8) else _fail(
        f"{n} GPUs per node is not offered; use 1, 2, 4 or 8"))] = key(
        "orbit:gpuCount", help="GPUs per GPU node (1, 2, 4 or 8)", example="1", default=1)
    machine_type: Text(_MACHINE, "a machine type such as n1-standard-4") = key(
        "orbit:gpuMachineType", help="machine type of the GPU pool (must suit the GPU type)",
        example="g2-standard-8", default="n1-standard-4")
    max_nodes: Int(1, 16) = key("orbit:gpuMaxNodes", help="GPU pool maximum nodes (minimum is always 0)",
                                example="2", default=1)
    driver_version: Choice("DEFAULT", "LATEST") = key(
        "orbit:gpuDriverVersion", help="GKE-installed NVIDIA driver: DEFAULT or LATEST", example="LATEST",
        default="DEFAULT")
    zones: List(Text()) = key(
        "orbit:gpuZones", help="zones of the GPU pool, where `gpuType` is offered (`gcloud compute "
        "accelerator-types list`); required for a regional cluster", example="europe-west1-b", default=(),
        shown="the zonal cluster's zone")


class ClusterConfig(Section):
    regional: Bool = key("orbit:regionalCluster", help="regional (3 zones) instead of zonal control plane "
                         "and nodes", example="true", default=False)
    release_channel: Choice("RAPID", "REGULAR", "STABLE", "EXTENDED") = key(
        "orbit:releaseChannel", help="GKE release channel: RAPID, REGULAR, STABLE or EXTENDED",
        example="STABLE", default="REGULAR")
    dns_access: Bool = key("orbit:controlPlaneDnsAccess", help="reach the control plane at its DNS endpoint, "
                           "where Google IAM checks every request (works from anywhere, GitHub-hosted "
                           "runners included)", example="true", default=True)
    authorized_networks: List(Cidr, _not_whole_internet) = key(
        "orbit:masterAuthorizedNetworks", help="CIDRs allowed to reach the control plane's external IP "
        "endpoint (empty: none; the DNS endpoint is not affected)", example="203.0.113.0/24", default=())
    serving_machine_type: Text(_MACHINE, "a machine type such as e2-standard-4") = key(
        "orbit:servingMachineType", help="machine type of the serving node pool", example="e2-standard-4",
        default="e2-standard-2")
    serving_min_nodes: Int(0, 100) = key("orbit:servingMinNodes", help="serving pool minimum nodes (whole "
                                         "cluster)", example="2", default=1)
    serving_max_nodes: Int(1, 100) = key("orbit:servingMaxNodes", help="serving pool maximum nodes (whole "
                                         "cluster)", example="6", default=3)
    serving_spot: Bool = key("orbit:servingSpot", help="run the serving pool on Spot VMs (cheap, may be "
                             "preempted)", example="true", default=False)
    ci_machine_type: Text(_MACHINE, "a machine type such as e2-standard-4") = key(
        "orbit:ciMachineType", help="machine type of the CI runner pool (Spot, scales to zero)",
        example="e2-standard-8", default="e2-standard-4")
    ci_max_nodes: Int(1, 100) = key("orbit:ciMaxNodes", help="CI runner pool maximum nodes", example="5",
                                    default=3)
    disk_size_gb: Int(20, 2000) = key("orbit:nodeDiskSizeGb", help="boot disk size of every node, GB",
                                      example="100", default=50)
    gpu: GpuConfig

    @property
    def serving(self) -> NodePoolConfig:
        return NodePoolConfig(self.serving_machine_type, self.serving_min_nodes, self.serving_max_nodes,
                              self.serving_spot)

    @property
    def ci(self) -> NodePoolConfig:
        return NodePoolConfig(self.ci_machine_type, 0, self.ci_max_nodes, True)


class GitHubConfig(Section):
    owner: Text(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$", "a GitHub user or organisation name") = key(
        "orbit:githubOwner", help="GitHub user or organisation that owns the repository",
        example="my-github-org")
    repo: Text(r"^[A-Za-z0-9._-]{1,100}$", "a GitHub repository name") = key(
        "orbit:githubRepo", help="GitHub repository whose workflows may deploy and whose runners these are",
        example="orbit")
    repository_id: Opt(Text(_DIGITS, "a numeric repository ID")) = key(
        "orbit:githubRepositoryId", help="numeric repository ID, which the bootstrap's provider condition "
        "pins (guards against a deleted and re-created repository); `ci.preflight` checks it against the "
        "running repository", example="123456789", default=None)
    wif_provider: Text(
        r"^projects/[0-9]{6,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$",
        "a provider resource name projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/"
        "PROVIDER (gcloud iam workload-identity-pools providers describe github --location global "
        "--workload-identity-pool orbit-github --format 'value(name)')") = key(
        "orbit:workloadIdentityProvider", help="the GitHub provider of the Workload Identity pool the "
        "bootstrap made ([deploy.md](deploy.md), step 2): it outlives every stack, so its bindings and "
        "`WIF_PROVIDER` stay valid",
        example="projects/123456789012/locations/global/workloadIdentityPools/orbit-github/providers/github")

    @property
    def wif_pool(self) -> str:
        return self.wif_provider.split("/providers/", 1)[0]

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.slug}"


class RunnersConfig(Section):
    enabled: Bool = key("orbit:runnersEnabled", help="install actions-runner-controller and the runner scale "
                        "sets", example="false", default=True)
    app_id: Opt(Text(r"^(?:[0-9]+|Iv[0-9A-Za-z.]{4,40})$", "a GitHub App ID (digits) or client ID (Iv…)")) = (
        key("orbit:githubAppId", help="GitHub App ID (or client ID) that ARC authenticates as",
            example="123456", default=None, shown="**required** while `runnersEnabled`"))
    installation_id: Opt(Text(_DIGITS, "a numeric installation ID")) = key(
        "orbit:githubAppInstallationId", help="installation ID of that GitHub App on the repository",
        example="7654321", default=None, shown="**required** while `runnersEnabled`")
    private_key: Secret = key("orbit:githubAppPrivateKey", help="the GitHub App's private key (PEM), stored "
                              "as a Pulumi secret", example="github-app.private-key.pem",
                              default=None, secret=True, shown="**secret**, required while `runnersEnabled`")
    chart_version: Text(r"^[0-9]+\.[0-9]+\.[0-9]+$", "a chart version such as 0.14.2") = key(
        "orbit:arcChartVersion", help="version of both actions-runner-controller Helm charts",
        example="0.14.2", default="0.14.2")
    runner_image: Text(check=_pinned_image) = key(
        "orbit:runnerImage", help="runner container image, pinned (never :latest)",
        example="ghcr.io/actions/actions-runner:2.334.0", default="ghcr.io/actions/actions-runner:2.334.0")
    cpu: Quantity(cpu_millis, "CPU", "2 or 1500m") = key(
        "orbit:runnerCpu", help="CPU of one CPU runner pod (request = limit)", example="2", default="1500m")
    memory: Quantity(memory_bytes, "memory", "6Gi") = key(
        "orbit:runnerMemory", help="memory of one CPU runner pod (request = limit)", example="8Gi",
        default="6Gi")
    max_cpu_runners: Int(1, 100) = key("orbit:runnerMaxCpu", help="maximum concurrent CPU runners",
                                       example="6", default=3)
    max_gpu_runners: Int(1, 50) = key("orbit:runnerMaxGpu", help="maximum concurrent GPU runners",
                                      example="2", default=1)


class BucketConfig(Section):
    location: Opt(Text(r"^[A-Za-z0-9-]{2,40}$", "a GCS location")) = key(
        "orbit:bucketLocation", help="location of the data bucket (default: the region)", example="EU",
        default=None)
    force_destroy: Opt(Bool) = key("orbit:bucketForceDestroy", help="let `pulumi destroy` delete a non-empty "
                                   "bucket (default: true unless protect)", example="false", default=None)
    noncurrent_days: Int(1, 3650) = key("orbit:bucketNoncurrentDays", help="delete noncurrent object "
                                        "versions after this many days", example="90", default=30)
    noncurrent_versions: Int(1, 1000) = key("orbit:bucketNoncurrentVersions", help="keep at most this many "
                                            "noncurrent versions per object", example="10", default=5)
    soft_delete_days: Annotated[Int(0, 90), AfterValidator(
        lambda days: _fail("must be 0 (off) or 7..90 days (a GCS limit)") if 0 < days < 7 else days)] = key(
        "orbit:bucketSoftDeleteDays", help="soft-delete retention of deleted objects, days (0 = off)",
        example="7", default=0)


class RegistryConfig(Section):
    # The live image and the rollback target (ci.rollback) are among the most recent versions: never fewer
    # than ROLLBACK_DEPTH + 1 kept, whatever their age.
    keep_count: Int(ROLLBACK_DEPTH + 1, 1000) = key(
        "orbit:registryKeepCount", help=f"keep this many most recent image versions ({ROLLBACK_DEPTH + 1} at "
        "least)", example="20", default=10)
    untagged_days: Int(1, 365) = key("orbit:registryUntaggedDays", help="delete untagged images older than "
                                     "this many days", example="14", default=7)
    max_age_days: Int(1, 3650) = key("orbit:registryMaxAgeDays", help="delete tagged images older than this "
                                     "many days, except the `registryKeepCount` most recent (CI tags every "
                                     "build with its commit SHA)", example="90", default=30)
    immutable_tags: Bool = key("orbit:registryImmutableTags", help="forbid moving an image tag once pushed",
                               example="false", default=True)


class ServiceConfig(Section):
    enabled: Opt(Bool) = key(
        "orbit:serviceEnabled", shown="unset", help="unset: keep the live service (the image the stack's "
        "last update served), or none before the first deploy; true: deploy `serviceImageTag` (CI's deploy); "
        "false: remove the service", example="true", default=None)
    image_name: Text(_IMAGE_NAME, "an image name") = key(
        "orbit:serviceImageName", help="image name of the BentoML service in the registry",
        example="planet-classifier", default="planet-classifier")
    image_tag: Opt(Text(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", "a Docker tag", _not_latest)) = key(
        "orbit:serviceImageTag", help="image tag to deploy (never `latest`), e.g. the git SHA CI pushed",
        example="3f2c1ab", default=None, shown="**required** while `serviceEnabled` is true")
    image_digest: Opt(Text(r"^sha256:[a-f0-9]{64}$", "an image digest such as sha256:<64 hex digits>")) = key(
        "orbit:serviceImageDigest", help="digest of that tag as the build resolved it (`ci.image` prints "
        "it): the cluster pulls `name:tag@digest`, so moving the tag changes nothing",
        example="sha256:" + "0" * 64, default=None, shown="**required** with `serviceImageTag`")
    min_replicas: Int(1, 100) = key("orbit:serviceMinReplicas", help="HPA minimum replicas", example="2",
                                    default=1)
    max_replicas: Int(1, 100) = key("orbit:serviceMaxReplicas", help="HPA maximum replicas", example="6",
                                    default=3)
    target_cpu: Int(10, 100) = key("orbit:serviceTargetCpu", help="HPA target CPU utilisation, percent",
                                   example="60", default=70)
    cpu_request: Quantity(cpu_millis, "CPU", "1") = key(
        "orbit:serviceCpuRequest", help="CPU request of a service pod", example="1", default="500m")
    memory_request: Quantity(memory_bytes, "memory", "2Gi") = key(
        "orbit:serviceMemoryRequest", help="memory request of a service pod", example="2Gi", default="1Gi")
    cpu_limit: Quantity(cpu_millis, "CPU", "2") = key(
        "orbit:serviceCpuLimit", help="CPU limit of a service pod; one server process per whole CPU",
        example="2", default="1")
    memory_limit: Quantity(memory_bytes, "memory", "3Gi") = key(
        "orbit:serviceMemoryLimit", help="memory limit of a service pod", example="3Gi", default="2Gi")
    type: Choice("LoadBalancer", "ClusterIP", "NodePort") = key(
        "orbit:serviceType", help="Kubernetes Service type: ClusterIP, NodePort, or LoadBalancer (an "
        "internal one, `internal` stacks only)", example="ClusterIP", default="ClusterIP")
    source_ranges: List(Cidr) = key(
        "orbit:serviceSourceRanges",
        help="CIDRs allowed through the internal LoadBalancer (empty: the whole VPC)",
        example="203.0.113.0/24", default=())


class BudgetConfig(Section):
    amount: Float(0, 10_000_000) = key("orbit:budgetAmount", help="monthly budget; 0 or unset = no budget",
                                       example="50", default=0)
    currency: Text(r"^[A-Z]{3}$", "a currency code such as USD") = key(
        "orbit:budgetCurrency", help="currency of the budget (that of the billing account)", example="EUR",
        default="USD")
    billing_account: Opt(Text(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", "a billing account ID such as "
                          "012345-6789AB-CDEF01")) = key(
        "orbit:billingAccount", help="billing account ID", shown="**required** with a budget",
        example="012345-6789AB-CDEF01", default=None)
    thresholds: List(Float(0.0001, 10, "a fraction of the budget in (0, 10]"), _unique) = key(
        "orbit:budgetThresholds", help="alert at these fractions of the budget", example="0.5",
        default=(0.5, 0.9, 1.0))

    @property
    def enabled(self) -> bool:
        return self.amount > 0


class EdgeConfig(Section):
    access: Choice(*ACCESS_MODES) = key(
        "orbit:serviceAccess", help="who may call the service: `public` (HTTPS, anyone, rate-limited), `iap` "
        "(HTTPS, only `orbit:iapMembers`) or `internal` (no external address); [edge.md](edge.md)",
        example="internal", default="internal")
    domain: Opt(Text(_DOMAIN,
                     "a domain name such as planets.example.org (lowercase, no scheme, no path)")) = key(
        "orbit:serviceDomain", help="domain the HTTPS gateway serves",
        shown="**required** for `public` and `iap`", example="planets.example.org", default=None)
    rate_limit_per_minute: Int(1, 100_000) = key(
        "orbit:edgeRateLimitPerMinute", help="Cloud Armor: requests per minute one client IP may send before "
        "it gets 429", example="300", default=120)
    max_body_bytes: Int(1024, SERVICE_MAX_UPLOAD_BYTES) = key(
        "orbit:edgeMaxBodyBytes", help="Cloud Armor: largest declared request body (Content-Length) let "
        "through, bytes; at most the service's own limit", example="5242880",
        default=SERVICE_MAX_UPLOAD_BYTES)
    iap_members: List(Text(_PRINCIPAL,
                           "a principal such as user:ana@example.org, group:ml-team@example.org, "
                           "serviceAccount:ci@PROJECT.iam.gserviceaccount.com or domain:example.org (never "
                           "allUsers)"), _unique) = key(
        "orbit:iapMembers", help="principals IAP admits in `iap` mode (`user:`, `group:`, `serviceAccount:`, "
        "`domain:`)", example="group:ml-team@example.org", default=())
    iap_client_id: Opt(Text(r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$",
                        "an OAuth client ID (…apps.googleusercontent.com)")) = key(
        "orbit:iapClientId", help="OAuth client ID IAP signs users in with (iap mode)",
        example="123456789012-abc123.apps.googleusercontent.com",
                default=None, shown="**required** for `iap`")
    iap_client_secret: Secret = key("orbit:iapClientSecret", help="that OAuth client's secret, stored as a "
                                    "Pulumi secret (iap mode)", example="iap-client-secret.txt",
                                    default=None, secret=True, shown="**secret**, required for `iap`")

    @property
    def exposed(self) -> bool:
        """Served on the internet through the HTTPS gateway (public or iap)."""
        return self.access in EXPOSED_MODES


class MonitoringConfig(Section):
    retention_days: Int(1, 3650) = key(
        "orbit:monitoringRetentionDays", help="delete prediction-log objects (records and sampled images "
        "under `monitoring/` in the data bucket) this many days after they were written", example="30",
        default=90)
    environment: Text(r"^[A-Za-z0-9._-]{1,255}$", "a GitHub environment name") = key(
        "orbit:monitorEnvironment", help="GitHub environment whose jobs may act as the read-only monitor "
        "account (the scheduled drift check declares it)", example="monitoring", default="monitoring")
    scrape_interval: Text(r"^[1-9][0-9]*(s|m)$", "a duration such as 30s or 1m") = key(
        "orbit:monitoringScrapeInterval", help="how often Managed Prometheus scrapes the service's "
        "`/metrics` (a Prometheus duration such as 30s or 1m)", example="60s", default="30s")
    alert_enabled: Bool = key("orbit:unknownRateAlertEnabled", help="create the Cloud Monitoring alert "
                              "policy on the service's unknown rate", example="true", default=False)
    unknown_rate_threshold: Annotated[Float(0, 1), AfterValidator(
        lambda x: x or _fail("0 would alert on the first unknown image: use a fraction such as 0.2"))] = (
        key("orbit:unknownRateThreshold", help="alert when the share of predictions flagged unknown exceeds "
            "this fraction", example="0.3", default=0.2))
    window_minutes: Int(5, 1440) = key(
        "orbit:unknownRateWindowMinutes", help="the window, minutes, over which the unknown rate is "
        "computed; it must stay above the threshold for as long again before the alert opens", example="30",
        default=60)
    notification_channels: List(Text(_CHANNEL, "a channel name such as "
                                     "projects/PROJECT/notificationChannels/ID (gcloud beta monitoring "
                                     "channels list --format 'value(name)')"), _unique) = key(
        "orbit:alertNotificationChannels", help="Cloud Monitoring notification channels the alert notifies "
        "(`projects/P/notificationChannels/ID`)", shown="empty; **required** with the alert",
        example="projects/my-gcp-project/notificationChannels/1234567890", default=())


class LabelingConfig(Section):
    enabled: Bool = key("orbit:labelStudioEnabled", help="run Label Studio (and its PostgreSQL) on the "
                        "cluster, reachable only through `kubectl port-forward`", example="true",
                        default=False)
    image: Opt(Text(check=_by_digest)) = key(
        "orbit:labelStudioImage", help="Label Studio image, pinned by digest",
        shown="**required** with `labelStudioEnabled`",
        example="heartexlabs/label-studio:1.23.2@sha256:" + "0" * 64, default=None)
    postgres_image: Opt(Text(check=_by_digest)) = key(
        "orbit:labelStudioPostgresImage",
        help="PostgreSQL image of Label Studio's database, pinned by digest",
        shown="**required** with `labelStudioEnabled`", example="postgres:17.6-bookworm@sha256:" + "0" * 64,
        default=None)
    disk_gb: Int(1, 1000) = key("orbit:labelStudioDiskGb", help="size of the database's persistent disk, GB",
                                example="20", default=10)


class StackConfig(Section):
    stack: str
    project: Text(_PROJECT, "a Google Cloud project ID (6-30 chars: a-z, 0-9, -)") = key(
        "gcp:project", help="Google Cloud project ID to deploy into", example="my-gcp-project")
    region: Text(r"^[a-z]+(-[a-z]+)+[0-9]+$", "a region such as europe-west1") = key(
        "gcp:region", help="region of the bucket, registry, network and (regional) cluster",
        example="europe-west1")
    zone: Opt(Text()) = key("gcp:zone", help="zone of a zonal cluster (required unless orbit:regionalCluster "
                            "is true)", example="europe-west1-b", default=None)
    name_prefix: Text(r"^[a-z][a-z0-9-]{1,10}[a-z0-9]$", "3-12 characters of a-z, 0-9 and -, from a-z") = key(
        "orbit:namePrefix", help="prefix of every resource name (3-12 chars, a-z0-9-)", example="orbit",
        default="orbit")
    extra_labels: Labels = key("orbit:labels", help="extra labels on every Google resource",
                               example="team=ml", default={})
    protect: Bool = key("orbit:protect", help="production guard: Pulumi `protect`, GKE deletion protection, "
                        "PREVENT deletion policies", example="true", default=False)
    github: GitHubConfig
    cluster: ClusterConfig
    runners: RunnersConfig
    bucket: BucketConfig
    registry: RegistryConfig
    service: ServiceConfig
    budget: BudgetConfig
    edge: EdgeConfig
    monitoring: MonitoringConfig
    labeling: LabelingConfig

    @model_validator(mode="after")
    def _derive(self) -> "StackConfig":
        """Defaults that depend on other keys: the bucket sits in the region and is kept when protected."""
        bucket = self.bucket
        object.__setattr__(self, "bucket", bucket.model_copy(update={
            "location": (bucket.location or self.region).upper(),
            "force_destroy": (not self.protect) if bucket.force_destroy is None else bucket.force_destroy,
        }))
        return self

    @property
    def labels(self) -> dict[str, str]:
        return {**self.extra_labels, "app": PROJECT_NAME, "managed-by": "pulumi",
                "stack": re.sub(r"[^a-z0-9_-]", "-", self.stack.lower())[:63]}

    @property
    def location(self) -> str:
        """Where the cluster lives: the region when regional, else the zone."""
        return self.region if self.cluster.regional else str(self.zone)

    def name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"


# ---- the keys, as documented and as the fix commands name them --------------------------------------------


@dataclass(frozen=True)
class Key:
    """One config key: how it is documented, its default, and the value shown in its fix command."""

    name: str
    help: str
    example: str
    default: Any
    required: bool
    secret: bool
    kind: str  # scalar | list | map: structured values are set with `pulumi config set --path`
    annotation: Any
    shown: str | None

    @property
    def plain_help(self) -> str:
        """The help without Markdown, for error messages."""
        return re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", self.help).replace("`", "")

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


def _keys(model: type[Section]) -> Iterator[Key]:
    for field in model.model_fields.values():
        if (section := _section(field)) is not None:
            yield from _keys(section)
        elif field.alias:
            extra = field.json_schema_extra
            kind = {tuple: "list", dict: "map"}.get(get_origin(field.annotation), "scalar")
            required = field.is_required()
            yield Key(field.alias, field.description, extra["example"], None if required else field.default,
                      required, extra["secret"], kind, field.annotation, extra["shown"])


# The single table of keys, in the model's order: docs/infra.md's table and Pulumi.yaml are generated from it.
KEYS: dict[str, Key] = {k.name: k for k in _keys(StackConfig)}


class ConfigError(ValueError):
    """One or more invalid or missing config values; the message says how to fix each."""

    def __init__(self, stack: str, problems: list[tuple[str, str]]):
        self.stack = stack
        self.problems = problems  # (key, message)
        lines = [f"stack {stack!r}: {len(problems)} config problem(s):"]
        for key_name, message in problems:
            lines.append(f"  - {key_name}: {message}")
            if key_name in KEYS:
                lines.append(f"      fix: {KEYS[key_name].fix()}")
        super().__init__("\n".join(lines))

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.problems]

    @property
    def fixes(self) -> list[str]:
        return [KEYS[k].fix() if k in KEYS else f"pulumi config rm {k}" for k, _ in self.problems]


# ---- rules between keys: each names the keys it reads, and is skipped while one of them is invalid --------

Rule = Callable[[StackConfig], Iterator[tuple[str, str]]]
RULES: list[tuple[tuple[str, ...], Rule]] = []


def rule(*keys: str) -> Callable[[Rule], Rule]:
    def register(check: Rule) -> Rule:
        RULES.append((keys, check))
        return check

    return register


@rule("gcp:zone", "orbit:regionalCluster")
def _zonal(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.zone is None and not c.cluster.regional:
        yield "gcp:zone", "missing: a zonal cluster needs a zone (or set orbit:regionalCluster true)"


@rule("gcp:zone", "gcp:region")
def _zone(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.zone is not None and not re.fullmatch(rf"{c.region}-[a-z]", c.zone):
        yield "gcp:zone", f"{c.zone!r} is not a zone of region {c.region!r} (such as {c.region}-b)"


@rule("orbit:servingMinNodes", "orbit:servingMaxNodes")
def _serving_pool(c: StackConfig) -> Iterator[tuple[str, str]]:
    low, high = c.cluster.serving_min_nodes, c.cluster.serving_max_nodes
    if low > high:
        yield "orbit:servingMaxNodes", f"{high} is below the minimum of {low}"


@rule("orbit:gpuEnabled", "orbit:gpuType", "orbit:gpuMachineType")
def _gpu_machine(c: StackConfig) -> Iterator[tuple[str, str]]:
    gpu = c.cluster.gpu
    families = GPU_MACHINE_FAMILIES[gpu.accelerator]
    if gpu.enabled and not gpu.machine_type.startswith(families):
        yield "orbit:gpuMachineType", (f"{gpu.machine_type} cannot carry {gpu.accelerator}; use a "
                                       f"{' or '.join(f + '*' for f in families)} machine type")


@rule("orbit:gpuEnabled", "orbit:gpuMachineType", "orbit:gpuCount")
def _gpu_count(c: StackConfig) -> Iterator[tuple[str, str]]:
    gpu = c.cluster.gpu
    if gpu.enabled and (fixed := fixed_gpu_count(gpu.machine_type)) not in (None, gpu.count):
        yield "orbit:gpuCount", (f"{gpu.machine_type} comes with exactly {fixed} GPU(s), not {gpu.count}: "
                                 f"set orbit:gpuCount {fixed}, or pick the machine type of that size")


@rule("orbit:gpuZones", "gcp:region")
def _gpu_zones(c: StackConfig) -> Iterator[tuple[str, str]]:
    for zone in c.cluster.gpu.zones:
        if not re.fullmatch(rf"{c.region}-[a-z]", zone):
            yield "orbit:gpuZones", f"{zone!r} is not a zone of region {c.region!r}"


@rule("orbit:gpuZones", "orbit:gpuEnabled", "orbit:regionalCluster", "orbit:gpuType")
def _regional_gpu_zones(c: StackConfig) -> Iterator[tuple[str, str]]:
    gpu = c.cluster.gpu
    if gpu.enabled and c.cluster.regional and not gpu.zones:
        yield "orbit:gpuZones", (
            "missing: a regional cluster's GPU pool would inherit all its zones, and creation fails where "
            "the GPU type is not offered in every one; list the zones that offer it (gcloud compute "
            f"accelerator-types list --filter 'name={gpu.accelerator}')")


@rule("orbit:controlPlaneDnsAccess", "orbit:masterAuthorizedNetworks")
def _control_plane(c: StackConfig) -> Iterator[tuple[str, str]]:
    if not c.cluster.dns_access and not c.cluster.authorized_networks:
        yield "orbit:controlPlaneDnsAccess", (
            "false with no orbit:masterAuthorizedNetworks leaves the control plane unreachable for `pulumi "
            "up` and kubectl: keep the DNS endpoint, or list the CIDRs that may reach the IP endpoint")


def required_while(switch: str, condition: str, when: Callable[[StackConfig], bool],
                   needed: dict[str, Callable[[StackConfig], Any]]) -> None:
    """One rule per needed key: it must be set while `when` holds (the switch key says so)."""
    for name, value in needed.items():
        def check(c: StackConfig, name: str = name, value: Callable = value) -> Iterator[tuple[str, str]]:
            if when(c) and value(c) is None:
                yield name, f"missing: {KEYS[name].plain_help} (needed while {condition})"

        rule(switch, name)(check)


required_while("orbit:runnersEnabled", "orbit:runnersEnabled is true", lambda c: c.runners.enabled, {
    "orbit:githubAppId": lambda c: c.runners.app_id,
    "orbit:githubAppInstallationId": lambda c: c.runners.installation_id,
    "orbit:githubAppPrivateKey": lambda c: c.runners.private_key})
required_while("orbit:serviceAccess", "orbit:serviceAccess is iap; docs/edge.md says where to create the "
               "client", lambda c: c.edge.access == "iap", {
                   "orbit:iapClientId": lambda c: c.edge.iap_client_id,
                   "orbit:iapClientSecret": lambda c: c.edge.iap_client_secret})
required_while("orbit:labelStudioEnabled", "orbit:labelStudioEnabled is true", lambda c: c.labeling.enabled, {
    "orbit:labelStudioImage": lambda c: c.labeling.image,
    "orbit:labelStudioPostgresImage": lambda c: c.labeling.postgres_image})


@rule("orbit:bucketForceDestroy", "orbit:protect")
def _bucket(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.bucket.force_destroy and c.protect:
        yield "orbit:bucketForceDestroy", "true contradicts orbit:protect true (a protected stack keeps data)"


@rule("orbit:serviceEnabled", "orbit:serviceImageTag")
def _service_tag(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.service.image_tag is None and c.service.enabled:
        # A plain `up` keeps the live image; CI's deploy passes tag and digest with serviceEnabled true.
        yield "orbit:serviceImageTag", (
            "missing: the image tag to deploy, needed while orbit:serviceEnabled is true (to keep the live "
            "image instead: pulumi config rm orbit:serviceEnabled)")


@rule("orbit:serviceImageTag", "orbit:serviceImageDigest")
def _service_digest(c: StackConfig) -> Iterator[tuple[str, str]]:
    s = c.service
    if s.image_tag is not None and s.image_digest is None:
        yield "orbit:serviceImageDigest", (
            "missing: the digest of orbit:serviceImageTag, so that the cluster pulls exactly the image that "
            "was built and tested (`python -m ci.image` prints it; or: gcloud artifacts docker images "
            "describe REGISTRY/IMAGE:TAG --format 'value(image_summary.digest)')")
    elif s.image_digest is not None and s.image_tag is None:
        yield "orbit:serviceImageDigest", "set without orbit:serviceImageTag: set both, or neither"


@rule("orbit:serviceMinReplicas", "orbit:serviceMaxReplicas")
def _replicas(c: StackConfig) -> Iterator[tuple[str, str]]:
    s = c.service
    if s.max_replicas < s.min_replicas:
        yield "orbit:serviceMaxReplicas", (
            f"{s.max_replicas} is below orbit:serviceMinReplicas {s.min_replicas}")


def _request_within_limit(what: str, size: Callable[[str], int | None]) -> None:
    request, limit = f"orbit:service{what}Request", f"orbit:service{what}Limit"

    @rule(request, limit)
    def check(c: StackConfig) -> Iterator[tuple[str, str]]:
        wanted, cap = (getattr(c.service, f"{what.lower()}_{end}") for end in ("request", "limit"))
        if size(wanted) > size(cap):
            yield request, f"{wanted} exceeds {limit} {cap}"


_request_within_limit("Cpu", cpu_millis)
_request_within_limit("Memory", memory_bytes)


@rule("orbit:serviceType", "orbit:serviceSourceRanges")
def _source_ranges(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.service.source_ranges and c.service.type != "LoadBalancer":
        yield "orbit:serviceSourceRanges", "only applies to orbit:serviceType LoadBalancer"


@rule("orbit:budgetAmount", "orbit:billingAccount")
def _billing_account(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.budget.enabled and c.budget.billing_account is None:
        yield "orbit:billingAccount", "missing: a budget (orbit:budgetAmount > 0) needs the billing account"


@rule("orbit:budgetAmount", "orbit:budgetThresholds")
def _thresholds(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.budget.enabled and not c.budget.thresholds:
        yield "orbit:budgetThresholds", "a budget needs at least one alert threshold"


@rule("orbit:serviceAccess", "orbit:serviceDomain")
def _domain(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.edge.exposed and c.edge.domain is None:
        yield "orbit:serviceDomain", (
            f"missing: orbit:serviceAccess {c.edge.access} serves HTTPS on a domain of yours (its "
            "certificate is issued for it); or keep the stack private with `pulumi config set "
            "orbit:serviceAccess internal`")


@rule("orbit:serviceAccess", "orbit:serviceType")
def _exposed_type(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.edge.exposed and c.service.type != "ClusterIP":
        yield "orbit:serviceType", (
            f"{c.service.type} beside orbit:serviceAccess {c.edge.access} would publish the pods in plain "
            "HTTP next to the HTTPS gateway; the gateway reaches a ClusterIP Service")


@rule("orbit:serviceAccess", "orbit:iapMembers")
def _iap_members(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.edge.access == "iap" and not c.edge.iap_members:
        yield "orbit:iapMembers", "missing: iap admits nobody unless principals are listed"


@rule("orbit:unknownRateAlertEnabled", "orbit:alertNotificationChannels")
def _alert(c: StackConfig) -> Iterator[tuple[str, str]]:
    if c.monitoring.alert_enabled and not c.monitoring.notification_channels:
        yield "orbit:alertNotificationChannels", (
            "missing: the unknown-rate alert would notify nobody; list a notification channel, or keep "
            "orbit:unknownRateAlertEnabled false")


# ---- reading ---------------------------------------------------------------------------------------------


def _problem(error: Any) -> tuple[str, str]:
    name = next(str(part) for part in error["loc"] if isinstance(part, str) and ":" in part)
    return name, f"missing: {KEYS[name].plain_help}" if error["type"] == "missing" else error["msg"]


def parse(values: Mapping[str, Any], stack: str, secrets: Mapping[str, Any] | None = None) -> StackConfig:
    """Validate raw config values (full keys such as `orbit:githubRepo`) into a StackConfig.

    `secrets` maps secret keys to `pulumi.Output` values; they are checked for presence only, because their
    plaintext must never reach the program outside an Output.
    """
    secrets = {k: v for k, v in (secrets or {}).items() if v is not None}
    problems: list[tuple[str, str]] = []
    ours = [k for k in KEYS if k.startswith(f"{PROJECT_NAME}:")]
    for name in values:
        if name.startswith(f"{PROJECT_NAME}:") and name not in KEYS:
            close = difflib.get_close_matches(name, ours, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((name, f"unknown key{hint} (remove it: pulumi config rm {name})"))
    for name, spec in KEYS.items():
        if spec.secret and name in values and name not in secrets:
            problems.append((name, "must be a secret, not plain text (`pulumi config rm` it, set it with "
                                   "--secret)"))
    data = {k: v for k, v in values.items() if k in KEYS and not KEYS[k].secret and v is not None
            and not (isinstance(v, str) and not v.strip() and KEYS[k].kind == "scalar")} | secrets
    invalid: set[str] = set()
    try:
        cfg = StackConfig.model_validate({**data, "stack": stack})
    except ValidationError as error:
        found = [_problem(e) for e in error.errors()]
        problems += found
        # The rules still run, on the valid keys: a stand-in (the default, or the valid example) replaces each
        # invalid one, and a rule reading an invalid key is skipped.
        invalid = {k for k, _ in found}
        stand_ins = {k: KEYS[k].example for k in invalid if KEYS[k].required}
        cfg = StackConfig.model_validate({**{k: v for k, v in data.items() if k not in invalid}, **stand_ins,
                                          "stack": stack})
    problems += [p for keys, check in RULES if not invalid.intersection(keys) for p in check(cfg)]
    if problems:
        raise ConfigError(stack, problems)
    return cfg


def from_pulumi() -> StackConfig:
    """The config of the stack the Pulumi engine is running (`pulumi up`, `pulumi preview`)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    # Every `orbit:` key that is set, so that a misspelt one is reported instead of silently ignored.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {k: v for k, v in raw.items() if k.startswith(f"{PROJECT_NAME}:")}
    secrets = {}
    for name, spec in KEYS.items():
        namespace, short = name.split(":", 1)
        config = pulumi.Config(namespace)
        if spec.secret:
            value = config.get_secret(short)
            if value is not None:
                secrets[name] = value
                values[name] = "[secret]"
        else:
            # Structured values arrive as JSON text; parse() decodes them and reports what is not JSON.
            values[name] = config.get(short)
    return parse(values, pulumi.get_stack(), secrets)


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_stack_file(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `config:` of Pulumi.<stack>.yaml as full key -> value (secrets appear as `{'secure': ...}`)."""
    path = stack_file(stack, root)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {root}: create it (`pulumi stack init {stack}`)")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(stack, [("config", f"{path.name} is not valid YAML: {exc}")]) from None
    values = document.get("config") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(stack, [("config", f"{path.name} has no `config:` mapping: is it a stack file?")])
    return {(k if ":" in k else f"{PROJECT_NAME}:{k}"): v for k, v in values.items()}


def from_stack_file(stack: str, root: Path = REPO_ROOT, overrides: Mapping[str, Any] | None = None,
                    secret: Any = "[secret]") -> StackConfig:
    """The validated config of Pulumi.<stack>.yaml without the engine (ci/, the mocks, `make plan`).

    Encrypted (`secure:`) or absent secrets cannot be read here: each stands in as `secret`, present. A secret
    written in plain text stays as it is, so validation rejects it as `pulumi up` would.
    """
    values = {**read_stack_file(stack, root), **(overrides or {})}
    secrets = {}
    for name, spec in KEYS.items():
        if spec.secret and (name not in values or isinstance(values[name], dict) or values[name] is None):
            values.pop(name, None)
            secrets[name] = secret
    return parse(values, stack, secrets)
