"""infra/config.py: the committed stack files validate, and every bad value is named with its fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import config as runtime_config

from infra import config, mocks
from infra.config import KEYS, ConfigError, cpu_millis, memory_bytes, parse, read_stack_file
from tests.infra.support import FIXTURES

REPO = Path(__file__).resolve().parents[2]
SECRET = {"orbit:githubAppPrivateKey": "fake"}  # parse() checks presence only; the value is never read


def dev_values(**changes) -> dict:
    values = read_stack_file("dev", FIXTURES)
    for key, value in changes.items():
        key = key.replace("__", ":")
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def problems(values: dict, stack: str = "dev", secrets: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(values, stack, SECRET if secrets is None else secrets)
    return info.value


def test_dev_stack_file_is_cheap_and_destroyable():
    cfg = parse(read_stack_file("dev", FIXTURES), "dev", SECRET)
    assert cfg.project == "my-gcp-project"
    assert not cfg.cluster.regional and cfg.location == "europe-west1-b"
    assert cfg.protect is False and cfg.bucket.force_destroy is True
    assert cfg.cluster.gpu.enabled is False
    assert cfg.cluster.serving.spot is True and cfg.cluster.serving.max_nodes <= 2
    assert cfg.bucket.soft_delete_days == 0
    assert cfg.budget.enabled is False
    assert cfg.labels == {"env": "dev", "app": "orbit", "stack": "dev", "managed-by": "pulumi"}


def test_prod_stack_file_is_protected_and_larger():
    cfg = parse(read_stack_file("prod", FIXTURES), "prod", SECRET)
    dev = parse(read_stack_file("dev", FIXTURES), "dev", SECRET)
    assert cfg.cluster.regional and cfg.location == "europe-west1" and cfg.zone is None
    assert cfg.protect is True and cfg.bucket.force_destroy is False
    assert cfg.cluster.gpu.enabled and cfg.cluster.gpu.accelerator == "nvidia-l4"
    assert cfg.cluster.serving.max_nodes > dev.cluster.serving.max_nodes
    assert cfg.service.min_replicas >= 2
    assert cfg.github.repository_id == "123456789"
    assert cfg.budget.enabled and cfg.budget.billing_account == "012345-6789AB-CDEF01"
    assert cfg.budget.thresholds == (0.5, 0.8, 1.0)
    assert cfg.cluster.authorized_networks == ("203.0.113.0/24",)
    assert cfg.cluster.dns_access is True


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_make_the_first_up_without_the_service(stack):
    """No image exists before the first `up`: the files carry no tag and the service is off by default."""
    values = read_stack_file(stack, FIXTURES)
    assert "orbit:serviceImageTag" not in values and "orbit:serviceEnabled" not in values
    cfg = parse(values, stack, SECRET)
    # Unset: keep what is live (infra/live.py), which before the first deploy is nothing.
    assert cfg.service.enabled is None and cfg.service.image_tag is None
    assert KEYS["orbit:serviceEnabled"].default is None


def test_dev_control_plane_admits_no_ip_address_and_says_so():
    """Dev states its control-plane access explicitly: the IAM-checked DNS endpoint, no CIDR at the IP one."""
    values = read_stack_file("dev", FIXTURES)
    assert values["orbit:controlPlaneDnsAccess"] is True and values["orbit:masterAuthorizedNetworks"] == []
    assert "DNS endpoint" in (FIXTURES / "Pulumi.dev.yaml").read_text()


def test_the_service_needs_a_tag_only_once_enabled():
    error = problems(dev_values(orbit__serviceEnabled=True))
    assert error.keys == ["orbit:serviceImageTag"]
    message = str(error)
    assert "needed while orbit:serviceEnabled is true" in message
    assert "fix: pulumi config set orbit:serviceImageTag 3f2c1ab" in message
    digest = "sha256:" + "ab" * 32
    enabled = parse(dev_values(orbit__serviceEnabled=True, orbit__serviceImageTag="3f2c1ab",
                               orbit__serviceImageDigest=digest), "dev", SECRET)
    assert enabled.service.enabled is True and enabled.service.image_tag == "3f2c1ab"
    assert enabled.service.image_digest == digest


def test_a_tag_needs_its_digest_and_a_digest_its_tag():
    error = problems(dev_values(orbit__serviceImageTag="3f2c1ab"))
    assert error.keys == ["orbit:serviceImageDigest"] and "ci.image" in str(error)
    error = problems(dev_values(orbit__serviceImageDigest="sha256:" + "ab" * 32))
    assert error.keys == ["orbit:serviceImageDigest"] and "set both" in str(error)
    error = problems(dev_values(orbit__serviceImageTag="3f2c1ab", orbit__serviceImageDigest="sha256:abc"))
    assert error.keys == ["orbit:serviceImageDigest"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_hold_no_plain_secrets_and_no_real_looking_ids(stack):
    text = (FIXTURES / f"Pulumi.{stack}.yaml").read_text()
    assert "PRIVATE KEY" not in text
    assert "placeholder" in text.lower()
    assert re.search(r"gcp:project: my-gcp-project", text)


def test_defaults_fill_everything_not_set():
    minimal = {"gcp:project": "my-gcp-project", "gcp:region": "us-central1", "gcp:zone": "us-central1-f",
               "orbit:githubOwner": "octo-org", "orbit:githubRepo": "orbit",
               "orbit:workloadIdentityProvider": KEYS["orbit:workloadIdentityProvider"].example,
               "orbit:runnersEnabled": False}
    cfg = parse(minimal, "dev", {})
    assert cfg.name_prefix == "orbit"
    assert cfg.cluster.release_channel == "REGULAR"
    assert cfg.cluster.ci.min_nodes == 0 and cfg.cluster.ci.spot is True
    assert cfg.bucket.location == "US-CENTRAL1"
    assert cfg.service.type == "ClusterIP" and cfg.edge.access == "internal"
    assert cfg.runners.chart_version == KEYS["orbit:arcChartVersion"].default
    assert cfg.runners.private_key is None
    assert cfg.service.enabled is None and cfg.service.image_tag is None
    assert cfg.cluster.dns_access is True and cfg.cluster.authorized_networks == ()


def test_engine_strings_parse_like_yaml_values():
    """The engine hands every value over as a string (objects as JSON); the result must not differ."""
    native = read_stack_file("prod", FIXTURES)
    as_strings = {k: json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool)
                  else str(v) for k, v in native.items()}
    assert parse(as_strings, "prod", SECRET) == parse(native, "prod", SECRET)


@pytest.mark.parametrize("key", ["gcp:project", "gcp:region", "orbit:githubOwner", "orbit:githubRepo",
                                 "orbit:githubAppId", "orbit:githubAppInstallationId"])
def test_missing_required_key_names_it_and_its_fix(key):
    error = problems(dev_values(**{key.replace(":", "__"): None}))
    assert key in error.keys
    message = str(error)
    assert f"{key}: missing" in message
    assert f"fix: pulumi config set {key} " in message


def test_missing_private_key_asks_for_a_secret():
    error = problems(read_stack_file("dev", FIXTURES), secrets={})
    assert error.keys == ["orbit:githubAppPrivateKey"]
    assert "pulumi config set --secret orbit:githubAppPrivateKey < " in str(error)


def test_private_key_in_plain_text_is_refused():
    values = dev_values(orbit__githubAppPrivateKey="-----BEGIN RSA PRIVATE KEY-----")
    error = problems(values, secrets={})
    assert "orbit:githubAppPrivateKey" in error.keys
    assert "must be a secret" in str(error)


def test_runners_off_need_no_github_app():
    values = dev_values(orbit__runnersEnabled=False, orbit__githubAppId=None,
                        orbit__githubAppInstallationId=None)
    assert parse(values, "dev", {}).runners.enabled is False


def test_without_dns_access_the_authorized_networks_reach_the_cluster():
    cfg = parse(dev_values(orbit__controlPlaneDnsAccess=False,
                           orbit__masterAuthorizedNetworks=["203.0.113.0/24"]), "dev", SECRET)
    assert cfg.cluster.dns_access is False and cfg.cluster.authorized_networks == ("203.0.113.0/24",)


def test_zonal_cluster_needs_a_zone_of_its_region():
    assert "gcp:zone" in problems(dev_values(gcp__zone=None)).keys
    error = problems(dev_values(gcp__zone="us-east1-b"))
    assert "is not a zone of region 'europe-west1'" in str(error)
    regional = parse(dev_values(gcp__zone=None, orbit__regionalCluster=True), "dev", SECRET)
    assert regional.location == "europe-west1"


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"gcp__project": "My_Project"}, "gcp:project", "is not a Google Cloud project ID"),
        ({"gcp__region": "europe"}, "gcp:region", "is not a region"),
        ({"orbit__namePrefix": "Orbit!"}, "orbit:namePrefix", "is not 3-12 characters"),
        ({"orbit__serviceImageTag": "latest"}, "orbit:serviceImageTag", "moving tag"),
        ({"orbit__serviceImageTag": "v1 beta"}, "orbit:serviceImageTag", "is not a Docker tag"),
        ({"orbit__runnerImage": "ghcr.io/actions/actions-runner:latest"}, "orbit:runnerImage", "moving tag"),
        ({"orbit__runnerImage": "ghcr.io/actions/actions-runner"}, "orbit:runnerImage", "has no tag"),
        ({"orbit__servingMinNodes": 4}, "orbit:servingMaxNodes", "below the minimum of 4"),
        ({"orbit__servingMaxNodes": "three"}, "orbit:servingMaxNodes", "is not a whole number"),
        ({"orbit__ciMaxNodes": 0}, "orbit:ciMaxNodes", "outside 1..100"),
        ({"orbit__gpuEnabled": True, "orbit__gpuType": "nvidia-l4"}, "orbit:gpuMachineType",
         "cannot carry nvidia-l4"),
        ({"orbit__gpuType": "nvidia-gtx-1080"}, "orbit:gpuType", "is not one of"),
        ({"orbit__gpuCount": 3}, "orbit:gpuCount", "use 1, 2, 4 or 8"),
        ({"orbit__gpuEnabled": True, "orbit__gpuType": "nvidia-l4", "orbit__gpuMachineType": "g2-standard-8",
          "orbit__gpuCount": 2}, "orbit:gpuCount", "comes with exactly 1 GPU(s), not 2"),
        ({"orbit__gpuEnabled": True, "orbit__gpuType": "nvidia-tesla-a100",
          "orbit__gpuMachineType": "a2-highgpu-2g"}, "orbit:gpuCount", "comes with exactly 2 GPU(s), not 1"),
        ({"orbit__gpuEnabled": True, "orbit__gpuType": "nvidia-l4", "orbit__gpuMachineType": "g2-standard-8",
          "orbit__regionalCluster": True, "gcp__zone": None}, "orbit:gpuZones", "offer"),
        ({"orbit__gpuZones": ["us-east1-b"]}, "orbit:gpuZones", "is not a zone of region"),
        ({"orbit__releaseChannel": "NIGHTLY"}, "orbit:releaseChannel", "is not one of"),
        ({"orbit__protect": "yes"}, "orbit:protect", "is not true or false"),
        ({"orbit__masterAuthorizedNetworks": ["10.0.0.1/8"]}, "orbit:masterAuthorizedNetworks",
         "is not a CIDR block"),
        ({"orbit__masterAuthorizedNetworks": ["0.0.0.0/0"]}, "orbit:masterAuthorizedNetworks",
         "to the whole internet"),
        ({"orbit__controlPlaneDnsAccess": False}, "orbit:controlPlaneDnsAccess",
         "leaves the control plane unreachable"),
        ({"orbit__controlPlaneDnsAccess": "no"}, "orbit:controlPlaneDnsAccess", "is not true or false"),
        ({"orbit__serviceCpuRequest": "2", "orbit__serviceCpuLimit": "1"}, "orbit:serviceCpuRequest",
         "exceeds orbit:serviceCpuLimit"),
        ({"orbit__serviceMemoryLimit": "2 gigs"}, "orbit:serviceMemoryLimit", "is not a memory quantity"),
        ({"orbit__serviceMaxReplicas": 0}, "orbit:serviceMaxReplicas", "outside 1..100"),
        ({"orbit__serviceType": "Ingress"}, "orbit:serviceType", "is not one of"),
        ({"orbit__serviceType": "ClusterIP", "orbit__serviceSourceRanges": ["203.0.113.0/24"]},
         "orbit:serviceSourceRanges", "only applies to orbit:serviceType LoadBalancer"),
        ({"orbit__budgetAmount": 100}, "orbit:billingAccount", "needs the billing account"),
        ({"orbit__budgetThresholds": [0.5, -1]}, "orbit:budgetThresholds", "is not a fraction"),
        ({"orbit__billingAccount": "0123-4567"}, "orbit:billingAccount", "is not a billing account ID"),
        ({"orbit__protect": True}, "orbit:bucketForceDestroy", None),
        ({"orbit__protect": True, "orbit__bucketForceDestroy": True}, "orbit:bucketForceDestroy",
         "contradicts orbit:protect"),
        ({"orbit__bucketSoftDeleteDays": 3}, "orbit:bucketSoftDeleteDays", "0 (off) or 7..90"),
        ({"orbit__labels": {"app": "other"}}, "orbit:labels", "set by orbit itself"),
        ({"orbit__labels": {"Team": "ML"}}, "orbit:labels", "is not a valid Google label"),
        ({"orbit__labels": "team=ml"}, "orbit:labels", "expected a map"),
        ({"orbit__githubRepo": "orbit' || true || '"}, "orbit:githubRepo", "is not a GitHub repository name"),
        ({"orbit__githubRepositoryId": "R_kgD0"}, "orbit:githubRepositoryId",
         "is not a numeric repository ID"),
    ],
)
def test_invalid_value_is_named_with_its_fix(change, key, fragment):
    if fragment is None:  # not an error: protect alone turns the default force_destroy off
        assert parse(dev_values(**change), "dev", SECRET).bucket.force_destroy is False
        return
    error = problems(dev_values(**change))
    assert key in error.keys, str(error)
    assert fragment in str(error)
    assert KEYS[key].fix() in str(error)


def test_every_problem_is_reported_at_once():
    error = problems(dev_values(gcp__project=None, orbit__serviceImageTag="latest", orbit__gpuCount=3,
                                orbit__serviceImageDigest="sha256:" + "ab" * 32))
    assert {"gcp:project", "orbit:serviceImageTag", "orbit:gpuCount"} <= set(error.keys)
    assert str(error).startswith("stack 'dev': 3 config problem(s):")


def test_misspelt_key_is_reported_with_a_suggestion():
    error = problems(dev_values(orbit__servingMaxNode=4))
    assert error.keys == ["orbit:servingMaxNode"]
    assert "did you mean orbit:servingMaxNodes?" in str(error)
    assert "pulumi config rm orbit:servingMaxNode" in str(error)


def test_fix_commands_match_the_kind_of_value():
    assert KEYS["gcp:project"].fix() == "pulumi config set gcp:project my-gcp-project"
    assert KEYS["orbit:labels"].fix() == "pulumi config set --path 'orbit:labels.team' ml"
    assert KEYS["orbit:budgetThresholds"].fix() == "pulumi config set --path 'orbit:budgetThresholds[0]' 0.5"
    assert KEYS["orbit:githubAppPrivateKey"].fix().startswith("pulumi config set --secret ")


def test_every_example_value_is_itself_valid():
    """The value each fix command suggests must pass validation, or the error message misleads."""
    values = read_stack_file("dev", FIXTURES)
    for key, spec in KEYS.items():
        if spec.secret or key == "gcp:zone":
            continue
        value = spec.example
        if spec.kind == "list":
            value = [value]
        elif spec.kind == "map":
            name, text = value.split("=", 1)
            value = {name: text}
        trial = {**values, key: value}
        if key == "gcp:region":
            trial["gcp:zone"] = f"{value}-b"
        if key.startswith("orbit:gpu") or key == "orbit:runnerMaxGpu":
            trial.update({"orbit:gpuEnabled": True, "orbit:gpuType": "nvidia-l4",
                          "orbit:gpuMachineType": "g2-standard-8"} | {key: value})
        if key in ("orbit:budgetAmount", "orbit:billingAccount"):
            trial.update({"orbit:budgetAmount": 50, "orbit:billingAccount": "012345-6789AB-CDEF01"})
        if key == "orbit:serviceSourceRanges":
            trial["orbit:serviceType"] = "LoadBalancer"
        if key in ("orbit:serviceEnabled", "orbit:serviceImageTag", "orbit:serviceImageDigest"):
            trial["orbit:serviceImageTag"] = KEYS["orbit:serviceImageTag"].example
            trial["orbit:serviceImageDigest"] = KEYS["orbit:serviceImageDigest"].example
        if key in ("orbit:serviceCpuRequest", "orbit:serviceMemoryRequest"):
            trial.update({"orbit:serviceCpuLimit": "4", "orbit:serviceMemoryLimit": "8Gi"})
        if key == "orbit:unknownRateAlertEnabled":
            trial["orbit:alertNotificationChannels"] = [KEYS["orbit:alertNotificationChannels"].example]
        if key == "orbit:labelStudioEnabled":
            trial.update({k: KEYS[k].example
                          for k in ("orbit:labelStudioImage", "orbit:labelStudioPostgresImage")})
        parse(trial, "dev", SECRET)


def test_quantities():
    assert cpu_millis("1500m") == 1500 and cpu_millis("2") == 2000 and cpu_millis("0.5") == 500
    assert cpu_millis("2 cores") is None
    assert memory_bytes("2Gi") == 2 * 2**30 and memory_bytes("512M") == 512 * 10**6
    assert memory_bytes("lots") is None


def test_missing_stack_file_says_how_to_create_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pulumi stack init staging"):
        read_stack_file("staging", tmp_path)


@pulumi.runtime.test
def test_from_pulumi_reads_the_engine_config_and_keeps_the_key_secret():
    """`pulumi up` hands config over in the runtime's config map; the private key stays an Output secret."""
    values = {k: json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool)
              else str(v) for k, v in read_stack_file("dev", FIXTURES).items()}
    values["orbit:githubAppPrivateKey"] = mocks.FAKE_PRIVATE_KEY
    token = runtime_config.CONFIG.set(values)
    try:
        cfg = config.from_pulumi()
    finally:
        runtime_config.CONFIG.reset(token)
    secrets = {"orbit:githubAppPrivateKey": cfg.runners.private_key}
    assert cfg == parse(read_stack_file("dev", FIXTURES), "dev", secrets)
    key = cfg.runners.private_key
    assert isinstance(key, pulumi.Output)

    def check(pair):
        plaintext, secret = pair
        assert plaintext == mocks.FAKE_PRIVATE_KEY
        assert secret is True

    return pulumi.Output.all(key, pulumi.Output.from_input(key.is_secret())).apply(check)


def test_from_pulumi_reports_misspelt_keys_from_the_engine():
    values = {**{k: str(v) for k, v in read_stack_file("dev", FIXTURES).items() if not isinstance(v, dict)},
              "orbit:serviceImagTag": "x"}
    token = runtime_config.CONFIG.set(values)
    try:
        with pytest.raises(ConfigError, match="did you mean orbit:serviceImageTag"):
            config.from_pulumi()
    finally:
        runtime_config.CONFIG.reset(token)


def test_from_pulumi_reports_a_list_key_set_to_a_plain_string():
    values = {**{k: str(v) for k, v in read_stack_file("dev", FIXTURES).items() if not isinstance(v, dict)},
              "orbit:masterAuthorizedNetworks": "203.0.113.0/24"}
    token = runtime_config.CONFIG.set(values)
    try:
        with pytest.raises(ConfigError) as info:
            config.from_pulumi()
    finally:
        runtime_config.CONFIG.reset(token)
    assert info.value.keys == ["orbit:masterAuthorizedNetworks", "orbit:githubAppPrivateKey"]
    assert "pulumi config set --path 'orbit:masterAuthorizedNetworks[0]'" in str(info.value)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_repositorys_stack_files_have_the_right_shape(stack):
    """The user's own Pulumi.<stack>.yaml: whatever project and owner it names, it validates and keeps its
    secrets encrypted. Its values are the user's; the program's behaviour is tested on the fixtures."""
    values = read_stack_file(stack)
    secret = [v for k, v in values.items() if k in KEYS and KEYS[k].secret]
    assert all(isinstance(v, dict) and "secure" in v for v in secret)
    assert "PRIVATE KEY" not in config.stack_file(stack).read_text()
    parse(values, stack, SECRET)  # raises ConfigError naming each bad key


def test_fixtures_are_the_examples_the_docs_show():
    """The fixtures started as copies of the examples; they keep the documented placeholders."""
    for stack in ("dev", "prod"):
        fixture = read_stack_file(stack, FIXTURES)
        assert fixture["gcp:project"].startswith("my-gcp-project")
        assert fixture["orbit:githubOwner"] == "my-github-org"


def test_a_rule_still_runs_beside_an_invalid_key_it_does_not_read():
    error = problems(dev_values(orbit__budgetAmount=100, orbit__budgetThresholds=[-1],
                                orbit__labelStudioEnabled=True, orbit__labelStudioImage="label-studio:1.23"))
    assert sorted(error.keys) == ["orbit:billingAccount", "orbit:budgetThresholds", "orbit:labelStudioImage",
                                  "orbit:labelStudioPostgresImage"]


def test_a_rule_reading_an_invalid_key_is_skipped_instead_of_guessing():
    """The old reader compared an invalid maximum's default with the minimum: a problem that was not there."""
    error = problems(dev_values(orbit__servingMinNodes=4, orbit__servingMaxNodes="three"))
    assert error.problems == [("orbit:servingMaxNodes", "'three' is not a whole number")]


def test_every_rule_reads_declared_keys_only():
    assert {key for keys, _ in config.RULES for key in keys} <= set(KEYS)
