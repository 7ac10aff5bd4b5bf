"""GKE: the cluster, its node pools and node identity, and the Kubernetes provider built from its outputs."""

from __future__ import annotations

import json

import pulumi

from infra.components.cluster import NODE_ROLE
from infra.mocks import FAKE_CA, FAKE_ENDPOINT, reveal
from tests.infra.support import ACCOUNT, CLUSTER, NODE_POOL, PROJECT_IAM, REPOSITORY_IAM, props


def test_cluster_is_private_shielded_with_workload_identity(stack_run):
    cfg = stack_run.config
    c = props(stack_run, CLUSTER)
    assert c["name"] == "orbit-cluster" and c["project"] == cfg.project
    assert c["privateClusterConfig"]["enablePrivateNodes"] is True
    assert c["workloadIdentityConfig"]["workloadPool"] == f"{cfg.project}.svc.id.goog"
    assert c["enableShieldedNodes"] is True
    assert c["enableLegacyAbac"] is False
    assert c["datapathProvider"] == "ADVANCED_DATAPATH"  # Dataplane V2: NetworkPolicy enforced
    assert c["releaseChannel"]["channel"] == cfg.cluster.release_channel
    assert c["masterAuth"]["clientCertificateConfig"]["issueClientCertificate"] is False
    assert c["removeDefaultNodePool"] is True
    assert c["networkingMode"] == "VPC_NATIVE"
    assert c["resourceLabels"] == cfg.labels
    assert c["costManagementConfig"]["enabled"] is True


def test_dev_is_zonal_and_destroyable_prod_regional_and_protected(dev_run, prod_run):
    dev, prod = props(dev_run, CLUSTER), props(prod_run, CLUSTER)
    assert dev["location"] == "europe-west1-b" and prod["location"] == "europe-west1"
    assert dev["deletionProtection"] is False and dev_run.one(CLUSTER).protect is False
    assert prod["deletionProtection"] is True and prod_run.one(CLUSTER).protect is True
    assert dev_run.outputs["cluster_location"] == "europe-west1-b"
    assert prod_run.outputs["cluster_location"] == "europe-west1"


def test_control_plane_access_follows_authorized_networks(dev_run, prod_run):
    assert "masterAuthorizedNetworksConfig" not in props(dev_run, CLUSTER)
    networks = props(prod_run, CLUSTER)["masterAuthorizedNetworksConfig"]
    assert [b["cidrBlock"] for b in networks["cidrBlocks"]] == ["203.0.113.0/24"]
    assert networks["gcpPublicCidrsAccessEnabled"] is False


def test_nodes_run_as_a_dedicated_minimal_account(stack_run):
    cfg = stack_run.config
    email = f"orbit-nodes@{cfg.project}.iam.gserviceaccount.com"
    assert props(stack_run, ACCOUNT, "nodes")["accountId"] == "orbit-nodes"
    node_configs = [props(stack_run, CLUSTER)["nodeConfig"]] + [
        reveal(p.inputs)["nodeConfig"] for p in stack_run.of_type(NODE_POOL)]
    for config in node_configs:
        assert config["serviceAccount"] == email
        assert config["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
        assert config["shieldedInstanceConfig"] == {"enableSecureBoot": True,
                                                    "enableIntegrityMonitoring": True}
        assert config["oauthScopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    role = props(stack_run, PROJECT_IAM, "nodes-default-role")
    assert role == {"project": cfg.project, "role": NODE_ROLE, "member": f"serviceAccount:{email}"}
    assert stack_run.one(PROJECT_IAM, "nodes-default-role").urn in stack_run.one(CLUSTER).dependencies
    pull = props(stack_run, REPOSITORY_IAM, "nodes-pull")
    assert pull["role"] == "roles/artifactregistry.reader" and pull["repository"] == "orbit-images"


def test_serving_pool_autoscales_within_config(stack_run):
    cfg = stack_run.config.cluster
    pool = props(stack_run, NODE_POOL, "serving")
    assert pool["nodeConfig"]["machineType"] == cfg.serving.machine_type
    assert pool["nodeConfig"]["spot"] is cfg.serving.spot
    assert pool["autoscaling"]["totalMinNodeCount"] == cfg.serving.min_nodes
    assert pool["autoscaling"]["totalMaxNodeCount"] == cfg.serving.max_nodes
    assert "taints" not in pool["nodeConfig"]  # system pods and the service schedule here
    assert pool["management"] == {"autoRepair": True, "autoUpgrade": True}
    assert pool["upgradeSettings"]["maxUnavailable"] == 0
    assert pool["nodeConfig"]["resourceLabels"] == stack_run.config.labels


def test_ci_pool_is_spot_tainted_and_scales_to_zero(stack_run):
    cfg = stack_run.config.cluster
    pool = props(stack_run, NODE_POOL, "ci")
    assert pool["nodeConfig"]["spot"] is True
    assert pool["autoscaling"]["totalMinNodeCount"] == 0
    assert pool["autoscaling"]["totalMaxNodeCount"] == cfg.ci.max_nodes
    assert pool["initialNodeCount"] == 0
    assert pool["nodeConfig"]["taints"] == [{"key": "dedicated", "value": "ci", "effect": "NO_SCHEDULE"}]


def test_gpu_pool_only_when_enabled(dev_run, prod_run):
    assert {r.name for r in dev_run.of_type(NODE_POOL)} == {"serving", "ci"}
    gpu = prod_run.config.cluster.gpu
    pool = props(prod_run, NODE_POOL, "gpu")
    assert pool["nodeConfig"]["spot"] is True and pool["nodeConfig"]["machineType"] == gpu.machine_type
    assert pool["autoscaling"]["totalMinNodeCount"] == 0
    assert pool["autoscaling"]["totalMaxNodeCount"] == gpu.max_nodes
    assert pool["nodeConfig"]["guestAccelerators"] == [{
        "type": "nvidia-l4", "count": gpu.count,
        "gpuDriverInstallationConfig": {"gpuDriverVersion": gpu.driver_version}}]
    assert pool["nodeConfig"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]


@pulumi.runtime.test
def test_kubeconfig_uses_the_cluster_outputs_and_the_auth_plugin(stack_run):
    cluster = stack_run.platform.cluster

    def check(text):
        doc = json.loads(text)
        (entry,) = doc["clusters"]
        assert entry["cluster"]["server"] == f"https://{FAKE_ENDPOINT}"
        assert entry["cluster"]["certificate-authority-data"] == FAKE_CA
        (user,) = doc["users"]
        assert user["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
        assert not {"token", "client-key-data", "password"} & set(user["user"])

    return cluster.kubeconfig.apply(check)


@pulumi.runtime.test
def test_kubeconfig_is_secret(stack_run):
    return pulumi.Output.from_input(stack_run.platform.cluster.kubeconfig.is_secret()).apply(
        lambda secret: _assert(secret is True))


def test_provider_waits_for_the_node_pools(stack_run):
    provider = stack_run.one("pulumi:providers:kubernetes")
    pools = {r.urn for r in stack_run.of_type(NODE_POOL) if r.name in ("serving", "ci")}
    assert pools <= set(provider.dependencies)
    assert provider.inputs["deleteUnreachable"] == str(not stack_run.config.protect).lower()


def test_every_kubernetes_resource_uses_the_cluster_provider(stack_run):
    provider = stack_run.one("pulumi:providers:kubernetes").urn
    kube = [r for r in stack_run.resources if r.type.startswith("kubernetes:")]
    assert kube and all(r.provider.startswith(provider + "::") for r in kube)


def _assert(condition: bool) -> None:
    assert condition
