"""The whole platform as one function of the validated config: tests and `make plan` run what `up` runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.apis import ProjectApis
from infra.components.bucket import DataBucket
from infra.components.cluster import GkeCluster
from infra.components.cost import CostControls
from infra.components.edge import Edge
from infra.components.identity import Identity
from infra.components.labeling import LabelStudio
from infra.components.monitoring import MonitoringAccess, ServiceMonitoring
from infra.components.network import Network
from infra.components.registry import ImageRegistry
from infra.components.runners import Runners
from infra.components.service import SELECTOR as SERVICE_SELECTOR
from infra.components.service import ModelService
from infra.config import StackConfig
from infra.live import service_image


@dataclass
class Platform:
    apis: ProjectApis
    bucket: DataBucket
    registry: ImageRegistry
    network: Network
    cluster: GkeCluster
    identity: Identity
    runners: Runners | None
    service: ModelService | None
    cost: CostControls
    outputs: dict[str, Any]
    edge: Edge | None = None
    monitoring_access: MonitoringAccess | None = None
    monitoring: ServiceMonitoring | None = None
    labeling: LabelStudio | None = None


def build(cfg: StackConfig) -> Platform:
    apis = ProjectApis("apis", cfg)
    # Everything else waits for the APIs: a fresh project otherwise fails with "API not enabled".
    after_apis = pulumi.ResourceOptions(depends_on=[apis])
    bucket = DataBucket("data", cfg, opts=after_apis)
    registry = ImageRegistry("registry", cfg, opts=after_apis)
    network = Network("network", cfg, opts=after_apis)
    cluster = GkeCluster("gke", cfg, network, registry.repository, opts=after_apis)
    identity = Identity("identity", cfg, bucket, registry, cluster, opts=after_apis)
    runners = None
    if cfg.runners.enabled:
        runners = Runners("runners", cfg, identity.runner_account.email, cluster.provider)
    service = None
    image = service_image(cfg, registry.path)
    if image is not None:
        service = ModelService("model-service", cfg, image, identity.serving_account.email, cluster.provider,
                               bucket.bucket_name)
    cost = CostControls("cost", cfg, opts=after_apis)
    edge = Edge("edge", cfg, cluster.provider, service, opts=after_apis) if cfg.edge.exposed else None
    # Closing the loop: the prediction log's grants, the scrape and alert, Label Studio (off by default).
    monitoring_access = MonitoringAccess("monitoring-access", cfg, bucket, identity.serving_account.member,
                                         opts=after_apis)
    monitoring = ServiceMonitoring("monitoring", cfg, cluster.provider,
                                   service.deployment if service else None, SERVICE_SELECTOR, "http",
                                   opts=after_apis)
    labeling = None
    if cfg.labeling.enabled:
        labeling = LabelStudio("labeling", cfg, bucket, cluster, opts=after_apis)

    # The stack outputs CI reads (docs/architecture.md), plus a few for people; __main__.py exports each.
    outputs: dict[str, Any] = {
        "bucket_url": bucket.url,
        "registry_path": registry.path,
        "cluster_name": cluster.cluster_name,
        "cluster_location": cluster.location,
        "workload_identity_provider": identity.workload_identity_provider,
        "ci_service_account": identity.ci_email,
        "service_url": service.url if service else "",
        "runner_service_account": identity.runner_account.email,
        "runs_on": runners.runner_labels if runners else [],
        "service_image": service.image if service else "",
        "service_access": cfg.edge.access,
        "edge_ip": edge.ip if edge else "",
        "dns_records": edge.dns_records if edge else [],
        "monitor_service_account": monitoring_access.monitor_email,
        "labeling_url": labeling.url if labeling else "",
    }
    return Platform(apis, bucket, registry, network, cluster, identity, runners, service, cost, outputs, edge,
                    monitoring_access, monitoring, labeling)
