"""GKE: the cluster, its node pools and node identity, and the Kubernetes provider built from its outputs."""

from __future__ import annotations

import json

import pulumi

from infra.components.cluster import NODE_ROLE, cluster_identity
from infra.mocks import FAKE_CA, FAKE_DNS_ENDPOINT, FAKE_ENDPOINT
from tests.infra.support import CLUSTER, NODE_POOL, PROJECT_IAM, on

CLOUD_PLATFORM = ["https://www.googleapis.com/auth/cloud-platform"]


@pulumi.runtime.test
def test_cluster_is_private_shielded_with_workload_identity(stack_run):
    cfg = stack_run.config
    c = stack_run.platform.cluster.cluster

    def check(name, project, private, identity, shielded, abac, datapath, channel, auth, remove_default,
              networking, labels, cost):
        assert name == "orbit-cluster" and project == cfg.project
        assert private["enable_private_nodes"] is True
        assert identity == {"workload_pool": f"{cfg.project}.svc.id.goog"}
        assert shielded is True and abac is False
        assert datapath == "ADVANCED_DATAPATH"  # Dataplane V2: NetworkPolicy enforced
        assert channel == {"channel": cfg.cluster.release_channel}
        assert auth["client_certificate_config"] == {"issue_client_certificate": False}
        assert remove_default is True and networking == "VPC_NATIVE"
        assert labels == cfg.labels
        assert cost == {"enabled": True}

    return on(check, name=c.name, project=c.project, private=c.private_cluster_config,
              identity=c.workload_identity_config, shielded=c.enable_shielded_nodes,
              abac=c.enable_legacy_abac, datapath=c.datapath_provider, channel=c.release_channel,
              auth=c.master_auth, remove_default=c.remove_default_node_pool, networking=c.networking_mode,
              labels=c.resource_labels, cost=c.cost_management_config)


@pulumi.runtime.test
def test_dev_is_zonal_and_destroyable_prod_regional_and_protected(dev_run, prod_run):
    # `protect` is a resource option, not an Output: only the recorded registration has it.
    assert dev_run.one(CLUSTER).protect is False and prod_run.one(CLUSTER).protect is True
    dev, prod = dev_run.platform.cluster, prod_run.platform.cluster

    def check(dev_location, dev_protection, prod_location, prod_protection):
        assert (dev_location, dev_protection) == ("europe-west1-b", False)
        assert (prod_location, prod_protection) == ("europe-west1", True)
        assert dev_run.outputs["cluster_location"] == dev_location
        assert prod_run.outputs["cluster_location"] == prod_location

    return on(check, dev_location=dev.location, dev_protection=dev.cluster.deletion_protection,
              prod_location=prod.location, prod_protection=prod.cluster.deletion_protection)


@pulumi.runtime.test
def test_control_plane_is_reached_through_iam_not_an_open_ip(dev_run, prod_run):
    """Dev admits no address at the IP endpoint; prod admits its office range; both use the DNS endpoint."""
    dev, prod = dev_run.platform.cluster.cluster, prod_run.platform.cluster.cluster

    def check(dev_networks, prod_networks, dev_endpoints, prod_endpoints, dev_private):
        assert dev_networks == {"cidr_blocks": [], "gcp_public_cidrs_access_enabled": False}
        assert [b["cidr_block"] for b in prod_networks["cidr_blocks"]] == ["203.0.113.0/24"]
        assert prod_networks["gcp_public_cidrs_access_enabled"] is False
        for endpoints in (dev_endpoints, prod_endpoints):
            assert endpoints["dns_endpoint_config"]["allow_external_traffic"] is True
        assert dev_private["enable_private_endpoint"] is False  # the IP endpoint exists, closed by the list

    return on(check, dev_networks=dev.master_authorized_networks_config,
              prod_networks=prod.master_authorized_networks_config,
              dev_endpoints=dev.control_plane_endpoints_config,
              prod_endpoints=prod.control_plane_endpoints_config, dev_private=dev.private_cluster_config)


@pulumi.runtime.test
def test_kubeconfig_uses_the_dns_endpoint_and_the_auth_plugin(stack_run):
    def check(text):
        doc = json.loads(text)
        (entry,) = doc["clusters"]
        # The DNS endpoint's certificate is publicly trusted: no CA is pinned.
        assert entry["cluster"] == {"server": f"https://{FAKE_DNS_ENDPOINT}"}
        (user,) = doc["users"]
        assert user["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
        assert not {"token", "client-key-data", "password"} & set(user["user"])

    return stack_run.platform.cluster.kubeconfig.apply(check)


@pulumi.runtime.test
def test_without_dns_access_the_kubeconfig_pins_the_ip_endpoint_and_its_ca(run_with):
    cluster = run_with("prod", {"orbit:controlPlaneDnsAccess": False}).platform.cluster

    def check(text, endpoints):
        (entry,) = json.loads(text)["clusters"]
        assert entry["cluster"] == {"server": f"https://{FAKE_ENDPOINT}",
                                    "certificate-authority-data": FAKE_CA}
        assert endpoints["dns_endpoint_config"]["allow_external_traffic"] is False

    return on(check, text=cluster.kubeconfig, endpoints=cluster.cluster.control_plane_endpoints_config)


@pulumi.runtime.test
def test_kubeconfig_is_secret(stack_run):
    secret = pulumi.Output.from_input(stack_run.platform.cluster.kubeconfig.is_secret())
    return on(lambda secret: _assert(secret is True), secret=secret)


@pulumi.runtime.test
def test_nodes_run_as_a_dedicated_minimal_account(stack_run):
    cfg = stack_run.config
    gke = stack_run.platform.cluster
    email = f"orbit-nodes@{cfg.project}.iam.gserviceaccount.com"
    pools = [p for p in (gke.serving_pool, gke.ci_pool, gke.gpu_pool) if p is not None]
    # The node role must exist before the cluster (nodes log from their first boot): a dependency is an
    # option, so it is read from the registration.
    assert stack_run.one(PROJECT_IAM, "nodes-default-role").urn in stack_run.one(CLUSTER).dependencies

    def check(account_id, account_email, role, pull, configs):
        assert (account_id, account_email) == ("orbit-nodes", email)
        assert role == {"project": cfg.project, "role": NODE_ROLE, "member": f"serviceAccount:{email}"}
        assert pull == {"role": "roles/artifactregistry.reader", "repository": "orbit-images",
                        "member": f"serviceAccount:{email}"}
        assert len(configs) == 1 + len(pools)
        for config in configs:
            assert config["service_account"] == email
            assert config["workload_metadata_config"] == {"mode": "GKE_METADATA"}
            assert config["shielded_instance_config"] == {"enable_secure_boot": True,
                                                          "enable_integrity_monitoring": True}
            assert config["oauth_scopes"] == CLOUD_PLATFORM

    node_role, node_pull = gke.node_role, gke.node_pull
    return on(check, account_id=gke.node_account.account_id, account_email=gke.node_account.email,
              role=pulumi.Output.all(project=node_role.project, role=node_role.role, member=node_role.member),
              pull=pulumi.Output.all(role=node_pull.role, repository=node_pull.repository,
                                     member=node_pull.member),
              configs=pulumi.Output.all(gke.cluster.node_config, *(p.node_config for p in pools)))


@pulumi.runtime.test
def test_serving_pool_autoscales_within_config(stack_run):
    cfg = stack_run.config
    pool = stack_run.platform.cluster.serving_pool

    def check(config, autoscaling, management, upgrade):
        assert config["machine_type"] == cfg.cluster.serving.machine_type
        assert config["spot"] is cfg.cluster.serving.spot
        assert config.get("taints") is None  # system pods and the service schedule here
        assert config["resource_labels"] == cfg.labels
        assert autoscaling["total_min_node_count"] == cfg.cluster.serving.min_nodes
        assert autoscaling["total_max_node_count"] == cfg.cluster.serving.max_nodes
        assert management == {"auto_repair": True, "auto_upgrade": True}
        assert upgrade["max_unavailable"] == 0

    return on(check, config=pool.node_config, autoscaling=pool.autoscaling, management=pool.management,
              upgrade=pool.upgrade_settings)


@pulumi.runtime.test
def test_ci_pool_is_spot_tainted_and_scales_to_zero(stack_run):
    cfg = stack_run.config.cluster
    pool = stack_run.platform.cluster.ci_pool

    def check(config, autoscaling, initial):
        assert config["spot"] is True
        assert config["taints"] == [{"key": "dedicated", "value": "ci", "effect": "NO_SCHEDULE"}]
        assert autoscaling["total_min_node_count"] == 0
        assert autoscaling["total_max_node_count"] == cfg.ci.max_nodes
        assert initial == 0

    return on(check, config=pool.node_config, autoscaling=pool.autoscaling, initial=pool.initial_node_count)


@pulumi.runtime.test
def test_gpu_pool_only_when_enabled(dev_run, prod_run):
    assert dev_run.platform.cluster.gpu_pool is None
    assert {r.name for r in dev_run.of_type(NODE_POOL)} == {"serving", "ci"}
    gpu = prod_run.config.cluster.gpu
    pool = prod_run.platform.cluster.gpu_pool

    def check(config, autoscaling):
        assert config["spot"] is True and config["machine_type"] == gpu.machine_type
        assert autoscaling["total_min_node_count"] == 0
        assert autoscaling["total_max_node_count"] == gpu.max_nodes
        assert config["guest_accelerators"] == [{
            "type": "nvidia-l4", "count": gpu.count,
            "gpu_driver_installation_config": {"gpu_driver_version": gpu.driver_version}}]
        assert config["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]

    def zones(locations):
        assert locations == ["europe-west1-b", "europe-west1-c"] == list(gpu.zones)

    return pulumi.Output.all(on(check, config=pool.node_config, autoscaling=pool.autoscaling),
                             on(zones, locations=pool.node_locations))


# Provider options (depends_on, delete_unreachable is an input of the provider resource) and the provider a
# resource uses are resource options: they have no Output, so these two read the registrations.
def test_provider_waits_for_the_node_pools_and_follows_the_cluster(stack_run):
    provider = stack_run.one("pulumi:providers:kubernetes")
    pools = {r.urn for r in stack_run.of_type(NODE_POOL) if r.name in ("serving", "ci")}
    assert pools <= set(provider.dependencies)
    assert provider.inputs["deleteUnreachable"] == str(not stack_run.config.protect).lower()
    cfg = stack_run.config
    assert cfg.name("cluster") not in provider.inputs["clusterIdentifier"]
    assert provider.inputs["clusterIdentifier"] == FAKE_DNS_ENDPOINT


def test_the_provider_identity_is_new_with_a_new_cluster_and_only_then():
    """Same name, new cluster (a replacement): the unique DNS host differs, so Kubernetes objects follow."""
    old = {"dns_endpoint_config": {"endpoint": FAKE_DNS_ENDPOINT, "allow_external_traffic": True}}
    new = {"dns_endpoint_config": {"endpoint": FAKE_DNS_ENDPOINT.replace("0123", "4567"),
                                   "allow_external_traffic": True}}
    off = {"dns_endpoint_config": {"endpoint": FAKE_DNS_ENDPOINT, "allow_external_traffic": False}}
    assert cluster_identity(old) != cluster_identity(new)
    assert cluster_identity(old) == cluster_identity(off)  # switching access is no new cluster


def test_the_default_pool_fields_never_plan_a_cluster_replacement(stack_run):
    """pulumi-gcp #744/#1355: node_config read back after the default pool is removed would force a new
    cluster on a later `up`."""
    cluster = stack_run.one(CLUSTER)
    assert cluster.inputs["removeDefaultNodePool"] is True
    assert {"nodeConfig", "initialNodeCount"} <= set(cluster.ignore_changes)


def test_every_kubernetes_resource_uses_the_cluster_provider(stack_run):
    provider = stack_run.one("pulumi:providers:kubernetes").urn
    kube = [r for r in stack_run.resources if r.type.startswith("kubernetes:")]
    assert kube and all(r.provider.startswith(provider + "::") for r in kube)


def _assert(condition: bool) -> None:
    assert condition
