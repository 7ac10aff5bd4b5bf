"""The VPC the cluster lives in: private nodes reach the internet only through Cloud NAT."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig

NODES_CIDR = "10.10.0.0/20"
PODS_RANGE, PODS_CIDR = "pods", "10.20.0.0/14"
SERVICES_RANGE, SERVICES_CIDR = "services", "10.24.0.0/20"
# The control plane's peering range; must not overlap anything above.
MASTER_CIDR = "172.16.0.0/28"


class Network(pulumi.ComponentResource):
    """A custom-mode VPC with one subnet (secondary ranges for pods and services), a router and Cloud NAT."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = gcp.compute.Network(
            "vpc",
            name=cfg.name("vpc"),
            project=cfg.project,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        self.subnetwork = gcp.compute.Subnetwork(
            "nodes",
            name=cfg.name("nodes"),
            project=cfg.project,
            region=cfg.region,
            network=self.network.id,
            ip_cidr_range=NODES_CIDR,
            # Private nodes reach Google APIs (registry, storage, logging) without NAT.
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=PODS_CIDR),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE,
                                                           ip_cidr_range=SERVICES_CIDR),
            ],
            opts=child,
        )
        self.router = gcp.compute.Router(
            "router", name=cfg.name("router"), project=cfg.project, region=cfg.region,
            network=self.network.id, opts=child,
        )
        # Runners pull from GitHub and ghcr.io; private nodes have no external IPs, so they need NAT.
        self.nat = gcp.compute.RouterNat(
            "nat",
            name=cfg.name("nat"),
            project=cfg.project,
            region=cfg.region,
            router=self.router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )
        self.register_outputs({"network": self.network.id, "subnetwork": self.subnetwork.id})
