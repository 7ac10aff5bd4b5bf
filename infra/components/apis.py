"""The Google APIs the stack needs, enabled by the stack itself so a fresh project works on the first `up`."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig

BASE_APIS = (
    "cloudresourcemanager.googleapis.com",  # project metadata (number) and IAM bindings
    "compute.googleapis.com",  # VPC, router, NAT, node VMs
    "container.googleapis.com",  # GKE
    "artifactregistry.googleapis.com",  # image registry
    "storage.googleapis.com",  # data bucket
    "iam.googleapis.com",  # service accounts, workload identity pools
    "iamcredentials.googleapis.com",  # short-lived tokens for impersonation (WIF, Workload Identity)
    "sts.googleapis.com",  # token exchange for GitHub OIDC
    "logging.googleapis.com",
    "monitoring.googleapis.com",
)
BUDGET_API = "billingbudgets.googleapis.com"
EDGE_APIS = ("certificatemanager.googleapis.com",)  # the managed certificate of a public or iap stack
IAP_API = "iap.googleapis.com"


class ProjectApis(pulumi.ComponentResource):
    """Enables the APIs; destroying the stack leaves them enabled.

    Disabling an API on destroy can break other workloads sharing the project, and an enabled API costs
    nothing, so `disable_on_destroy` is off.
    """

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:project:Apis", name, None, opts)
        apis = BASE_APIS + ((BUDGET_API,) if cfg.budget.enabled else ())
        apis += (EDGE_APIS if cfg.edge.exposed else ()) + ((IAP_API,) if cfg.edge.access == "iap" else ())
        self.services = {
            api: gcp.projects.Service(
                api.split(".")[0],
                project=cfg.project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in apis
        }
        self.register_outputs({"services": list(self.services)})
