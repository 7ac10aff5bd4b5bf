"""Who may do what: keyless CI through Workload Identity Federation, and Google identities for pods.

No service-account key is created anywhere. GitHub Actions exchanges its OIDC token for a short-lived token of
the CI service account, and only workflows of the configured repository can. CI builds and pushes images and
moves DVC data, so it gets exactly two roles, each bound on the one resource it is for (the bucket, the
repository), and nothing on the project or the cluster: `pulumi up` runs as the separate deployer account
made in bootstrap (docs/deploy.md), so a leaked CI token cannot change what is served.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.bucket import DataBucket
from infra.components.cluster import GkeCluster
from infra.components.registry import ImageRegistry
from infra.config import RUNNER_KSA, RUNNERS_NAMESPACE, SERVING_KSA, SERVING_NAMESPACE, StackConfig

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


def ci_principal(cfg: StackConfig) -> str:
    """Every workflow of this one repository (the provider's condition admits no other repository)."""
    return f"principalSet://iam.googleapis.com/{cfg.github.wif_pool}/attribute.repository/{cfg.github.slug}"


class Identity(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, bucket: DataBucket, registry: ImageRegistry,
                 cluster: GkeCluster, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:identity:Identity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repo = registry.repository

        # -- GitHub Actions -> CI service account, through WIF ------------------------------------------
        # The pool and its GitHub provider are made by the bootstrap (docs/deploy.md, step 2), not here: a
        # deleted pool's ID stays reserved for 30 days, so a pool owned by the stack came back under a new ID
        # after every dev destroy/up, and the deployer's and previewer's bindings and the WIF_PROVIDER
        # variable, all made once by hand, pointed at a dead pool. Like those, it outlives the stack.
        self.ci_account = gcp.serviceaccount.Account(
            "ci", account_id=cfg.name("ci"), project=cfg.project,
            display_name=f"orbit CI ({cfg.github.slug})", opts=child,
        )
        self.ci_principal = ci_principal(cfg)
        self.ci_federation = gcp.serviceaccount.IAMMember(
            "ci-federation", service_account_id=self.ci_account.name, role=WORKLOAD_IDENTITY_USER,
            member=self.ci_principal, opts=child,
        )
        # DVC push/pull of data and models.
        self.ci_bucket = gcp.storage.BucketIAMMember(
            "ci-bucket", bucket=bucket.bucket_name, role="roles/storage.objectAdmin",
            member=self.ci_account.member, opts=child,
        )
        # Push images of the model service.
        self.ci_registry = gcp.artifactregistry.RepositoryIamMember(
            "ci-registry", project=cfg.project, location=repo.location, repository=repo.repository_id,
            role="roles/artifactregistry.writer", member=self.ci_account.member, opts=child,
        )

        # -- Kubernetes service accounts -> Google service accounts (GKE Workload Identity) --------------
        # The identity namespace PROJECT.svc.id.goog exists only once the cluster does.
        after_cluster = pulumi.ResourceOptions(parent=self, depends_on=[cluster.cluster])
        # No roles: no workflow needs Google from the runner's metadata server (train authenticates through
        # WIF as the CI account, with an id-token the workflow must ask for). A grant here would hand the
        # data bucket to every job on the runner, one of a same-repository branch that never asks for a
        # token included. The account exists so that a deliberate future grant goes to it, not the nodes.
        self.runner_account = gcp.serviceaccount.Account(
            "runner", account_id=cfg.name("runner"), project=cfg.project,
            display_name="orbit self-hosted runners (no roles)", opts=child,
        )
        self.runner_binding = gcp.serviceaccount.IAMMember(
            "runner-workload-identity", service_account_id=self.runner_account.name,
            role=WORKLOAD_IDENTITY_USER,
            member=ksa_member(cfg, RUNNERS_NAMESPACE, RUNNER_KSA), opts=after_cluster,
        )
        # The service's own identity, never the nodes' account: its one grant, creating prediction-log
        # objects under monitoring/ of the bucket, is made in infra/components/monitoring.py.
        self.serving_account = gcp.serviceaccount.Account(
            "serving", account_id=cfg.name("serving"), project=cfg.project,
            display_name="orbit model service (writes the prediction log only)", opts=child,
        )
        self.serving_binding = gcp.serviceaccount.IAMMember(
            "serving-workload-identity", service_account_id=self.serving_account.name,
            role=WORKLOAD_IDENTITY_USER, member=ksa_member(cfg, SERVING_NAMESPACE, SERVING_KSA),
            opts=after_cluster,
        )

        self.workload_identity_provider = pulumi.Output.from_input(cfg.github.wif_provider)
        self.ci_email = self.ci_account.email
        self.register_outputs({
            "workload_identity_provider": self.workload_identity_provider,
            "ci_service_account": self.ci_email,
            "runner_service_account": self.runner_account.email,
            "serving_service_account": self.serving_account.email,
        })


def ksa_member(cfg: StackConfig, namespace: str, ksa: str) -> str:
    return f"serviceAccount:{cfg.project}.svc.id.goog[{namespace}/{ksa}]"
