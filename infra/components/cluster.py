"""The GKE Standard cluster, its node pools and node identity, and the Kubernetes provider built from it."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.components.monitoring import managed_prometheus
from infra.components.network import MASTER_CIDR, PODS_RANGE, SERVICES_RANGE, Network
from infra.config import NodePoolConfig, StackConfig

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Google's minimal role for node service accounts (logging, monitoring, metadata), instead of Editor.
NODE_ROLE = "roles/container.defaultNodeServiceAccount"
CI_TAINT = ("dedicated", "ci")
GPU_TAINT = ("nvidia.com/gpu", "present")  # the taint GKE puts on GPU nodes; declared so it is reviewed
DEFAULT_POOL_FIELDS = ["nodeConfig", "initialNodeCount"]
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"  # set by GKE on every node: pods select pools by it


class GkeCluster(pulumi.ComponentResource):
    """Private-node Standard cluster (zonal unless configured regional) with three node pools.

    serving: on-demand (or Spot in dev), autoscaled; ci: Spot, tainted for runners, scales to zero;
    gpu (optional): Spot with an accelerator and GKE-installed drivers, tainted, scales from zero.
    """

    def __init__(self, name: str, cfg: StackConfig, network: Network,
                 repository: gcp.artifactregistry.Repository, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:cluster:GkeCluster", name, None, opts)
        c = cfg.cluster
        child = pulumi.ResourceOptions(parent=self)

        self.node_account = gcp.serviceaccount.Account(
            "nodes", account_id=cfg.name("nodes"), project=cfg.project,
            display_name="orbit GKE nodes (logging, monitoring, image pulls only)", opts=child,
        )
        self.node_role = gcp.projects.IAMMember(
            "nodes-default-role", project=cfg.project, role=NODE_ROLE, member=self.node_account.member,
            opts=child,
        )
        # Image pulls: read access on our repository only, not on every registry of the project.
        self.node_pull = gcp.artifactregistry.RepositoryIamMember(
            "nodes-pull", project=cfg.project, location=repository.location,
            repository=repository.repository_id,
            role="roles/artifactregistry.reader", member=self.node_account.member, opts=child,
        )

        self.cluster = gcp.container.Cluster(
            "cluster",
            name=cfg.name("cluster"),
            project=cfg.project,
            location=cfg.location,
            description="orbit: model serving and CI runners",
            network=network.network.id,
            subnetwork=network.subnetwork.id,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE, services_secondary_range_name=SERVICES_RANGE,
            ),
            # Node pools are managed below; the default pool is created (with our identity) and removed.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=_default_pool_config(cfg, self.node_account.email),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                # The external IP endpoint exists, but only the authorized networks below may reach it.
                enable_private_endpoint=False,
                master_ipv4_cidr_block=MASTER_CIDR,
            ),
            control_plane_endpoints_config=control_plane_endpoints(c.dns_access),
            # Always on: an empty list admits no external address at all (the nodes keep their private path),
            # and no Compute Engine public IP of any Google customer gets through either.
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                        cidr_block=cidr, display_name=f"authorized-{i}"
                    )
                    for i, cidr in enumerate(c.authorized_networks)
                ],
                gcp_public_cidrs_access_enabled=False,
            ),
            master_auth=gcp.container.ClusterMasterAuthArgs(
                client_certificate_config=gcp.container.ClusterMasterAuthClientCertificateConfigArgs(
                    issue_client_certificate=False
                )
            ),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{cfg.project}.svc.id.goog"
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=c.release_channel),
            # Dataplane V2 (eBPF) enforces NetworkPolicy itself; the legacy Calico add-on stays off.
            datapath_provider="ADVANCED_DATAPATH",
            enable_shielded_nodes=True,
            enable_legacy_abac=False,
            # The Gateway API CRDs and GKE's Gateway controller (the HTTPS edge, docs/edge.md).
            gateway_api_config=gcp.container.ClusterGatewayApiConfigArgs(channel="CHANNEL_STANDARD"),
            addons_config=gcp.container.ClusterAddonsConfigArgs(
                http_load_balancing=gcp.container.ClusterAddonsConfigHttpLoadBalancingArgs(disabled=False),
                horizontal_pod_autoscaling=gcp.container.ClusterAddonsConfigHorizontalPodAutoscalingArgs(
                    disabled=False
                ),
            ),
            logging_config=gcp.container.ClusterLoggingConfigArgs(
                enable_components=["SYSTEM_COMPONENTS", "WORKLOADS"]
            ),
            # Managed Prometheus scrapes the model service's /metrics (infra/components/monitoring.py).
            monitoring_config=managed_prometheus(),
            # Lets billing reports break cost down by namespace and label.
            cost_management_config=gcp.container.ClusterCostManagementConfigArgs(enabled=True),
            deletion_protection=cfg.protect,
            resource_labels=cfg.labels,
            # Nodes must be able to write logs and metrics from their first boot.
            # node_config/initial_node_count describe only the default pool, deleted right after creation; the
            # provider reads node_config back from the API afterwards (the first managed pool's), and its
            # ForceNew fields would then plan a replacement of the whole cluster (pulumi-gcp #744, #1355).
            # Google's Fabric modules and terraform-google-modules ignore them the same way.
            opts=pulumi.ResourceOptions(parent=self, protect=cfg.protect, depends_on=[self.node_role],
                                        ignore_changes=DEFAULT_POOL_FIELDS),
        )

        self.serving_pool = self._pool(cfg, "serving", c.serving, taint=None, location_policy="BALANCED")
        self.ci_pool = self._pool(cfg, "ci", c.ci, taint=CI_TAINT, location_policy="ANY")
        self.gpu_pool = None
        if c.gpu.enabled:
            gpu = c.gpu
            self.gpu_pool = self._pool(
                cfg, "gpu", NodePoolConfig(gpu.machine_type, 0, gpu.max_nodes, spot=True), taint=GPU_TAINT,
                location_policy="ANY",
                # Not the cluster's zones: an accelerator is offered in some zones of a region only.
                node_locations=list(gpu.zones) or None,
                accelerators=[gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=gpu.accelerator,
                    count=gpu.count,
                    gpu_driver_installation_config=(
                        gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                            gpu_driver_version=gpu.driver_version
                        )
                    ),
                )],
            )

        self.cluster_name = self.cluster.name
        self.location = self.cluster.location
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.name, self.cluster.endpoint, self.cluster.master_auth,
                              self.cluster.control_plane_endpoints_config).apply(
                lambda a: kubeconfig_for(a[0], a[1], a[2], a[3], dns=c.dns_access)
            )
        )
        # Kubernetes resources wait for the serving pool: without nodes, Helm and Deployment awaits time out.
        self.provider = k8s.Provider(
            "gke",
            kubeconfig=self.kubeconfig,
            # Replace the provider (and so every Kubernetes object) exactly when the cluster is replaced, not
            # when its kubeconfig changes (orbit:controlPlaneDnsAccess switches the server it points at). The
            # name stays the same across a replacement; the DNS endpoint's host (gke-<cluster uid>-<project
            # number>...) is new with every cluster and never changes otherwise.
            cluster_identifier=self.cluster.control_plane_endpoints_config.apply(cluster_identity),
            # A dev cluster deleted out of band must not block `pulumi destroy` of what ran on it.
            delete_unreachable=not cfg.protect,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.serving_pool, self.ci_pool]),
        )
        self.register_outputs({"name": self.cluster_name, "location": self.location,
                               "node_service_account": self.node_account.email})

    def _pool(self, cfg: StackConfig, role: str, pool: NodePoolConfig, taint: tuple[str, str] | None,
              location_policy: str, accelerators: list | None = None,
              node_locations: list[str] | None = None) -> gcp.container.NodePool:
        config = _pool_config(cfg, self.node_account.email, role, pool, taint, accelerators)
        return gcp.container.NodePool(
            role,
            name=cfg.name(role),
            project=cfg.project,
            location=cfg.location,
            cluster=self.cluster.name,
            node_locations=node_locations,
            # Per zone; the autoscaler then holds the pool within the whole-cluster totals below.
            initial_node_count=1 if pool.min_nodes > 0 else 0,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=pool.min_nodes,
                total_max_node_count=pool.max_nodes,
                location_policy=location_policy,
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=gcp.container.NodePoolUpgradeSettingsArgs(
                strategy="SURGE", max_surge=1, max_unavailable=0
            ),
            node_config=config,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]),
        )


def cluster_identity(endpoints: Any) -> str:
    """The cluster's unique DNS endpoint host: a replaced cluster gets a new one, nothing else changes it."""
    host = field(field(endpoints, "dns_endpoint_config"), "endpoint")
    if not host:
        raise pulumi.RunError("the cluster reports no DNS endpoint; GKE gives every cluster one since 2024: "
                              "check the cluster in the console")
    return host


def _node_settings(cfg: StackConfig, service_account: pulumi.Input[str], machine_type: str, spot: bool,
                   role: str) -> dict:
    """Node settings shared by every pool: our service account, COS, IAM-decided access, labels."""
    return dict(
        machine_type=machine_type,
        disk_size_gb=cfg.cluster.disk_size_gb,
        disk_type="pd-balanced",
        image_type="COS_CONTAINERD",
        service_account=service_account,
        oauth_scopes=[CLOUD_PLATFORM_SCOPE],  # access is decided by IAM roles, not legacy scopes
        metadata={"disable-legacy-endpoints": "true"},
        spot=spot,
        labels={"orbit-pool": role},
        resource_labels=cfg.labels,
    )


def _default_pool_config(cfg: StackConfig,
                         service_account: pulumi.Input[str]) -> gcp.container.ClusterNodeConfigArgs:
    """The short-lived default pool still gets our identity, so the default compute account is never used."""
    return gcp.container.ClusterNodeConfigArgs(
        **_node_settings(cfg, service_account, cfg.cluster.serving.machine_type, spot=False, role="default"),
        shielded_instance_config=gcp.container.ClusterNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
        workload_metadata_config=gcp.container.ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
    )


def _pool_config(cfg: StackConfig, service_account: pulumi.Input[str], role: str, pool: NodePoolConfig,
                 taint: tuple[str, str] | None,
                 accelerators: list | None) -> gcp.container.NodePoolNodeConfigArgs:
    return gcp.container.NodePoolNodeConfigArgs(
        **_node_settings(cfg, service_account, pool.machine_type, spot=pool.spot, role=role),
        shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
        # Pods see the GKE metadata server (Workload Identity), never the node's credentials.
        workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        taints=[gcp.container.NodePoolNodeConfigTaintArgs(key=taint[0], value=taint[1], effect="NO_SCHEDULE")]
        if taint else None,
        guest_accelerators=accelerators,
    )


def control_plane_endpoints(dns_access: bool) -> gcp.container.ClusterControlPlaneEndpointsConfigArgs:
    """The DNS endpoint admits callers by Google IAM (`container.clusters.connect`), not by source address.

    That is what lets GitHub-hosted runners, whose addresses are not fixed, run `pulumi up` without opening
    the IP endpoint to the internet. With it off, only `orbit:masterAuthorizedNetworks` reach the cluster.
    """
    return gcp.container.ClusterControlPlaneEndpointsConfigArgs(
        dns_endpoint_config=gcp.container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
            allow_external_traffic=dns_access,
        ),
    )


def kubeconfig_for(name: str, ip_endpoint: str, master_auth: Any, endpoints: Any, dns: bool) -> str:
    """The provider's kubeconfig: the DNS endpoint when enabled (its certificate is publicly trusted, so no CA
    is pinned), else the IP endpoint with the cluster's own CA."""
    if dns:
        host = field(field(endpoints, "dns_endpoint_config"), "endpoint")
        if not host:
            raise pulumi.RunError("the cluster reports no DNS endpoint although orbit:controlPlaneDnsAccess "
                                  "is true; check the cluster in the console, or set it false and list "
                                  "orbit:masterAuthorizedNetworks")
        return kubeconfig(name, host, None)
    return kubeconfig(name, ip_endpoint, field(master_auth, "cluster_ca_certificate"))


def field(value: Any, name: str) -> Any:
    """A property of a resolved output object, whichever form the SDK resolved it to (typed or dict)."""
    if isinstance(getattr(type(value), name, None), property):
        return getattr(value, name)
    if isinstance(value, dict):
        camel = name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:])
        return value.get(name, value.get(camel))
    return getattr(value, name, None)


def kubeconfig(name: str, endpoint: str, ca_certificate: str | None) -> str:
    """A kubeconfig that authenticates through gke-gcloud-auth-plugin: short-lived tokens, no static keys."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "installHint": "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
        }
    }
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": f"https://{endpoint}"} | (
            {"certificate-authority-data": ca_certificate} if ca_certificate else {})}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "users": [{"name": name, "user": user}],
    }
    return json.dumps(doc, indent=2)
