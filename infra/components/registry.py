"""The Artifact Registry Docker repository the BentoML images are pushed to."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


class ImageRegistry(pulumi.ComponentResource):
    """Docker repository whose cleanup policies keep the recent images and drop untagged layers."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:registry:ImageRegistry", name, None, opts)
        r = cfg.registry
        self.repository = gcp.artifactregistry.Repository(
            "images",
            repository_id=cfg.name("images"),
            project=cfg.project,
            location=cfg.region,
            format="DOCKER",
            description="BentoML images of the orbit model service",
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=r.immutable_tags),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                # KEEP wins over DELETE: the N most recent versions survive whatever their age or tags.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=r.keep_count
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=f"{r.untagged_days * 86400}s"
                    ),
                ),
            ],
            deletion_policy="PREVENT" if cfg.protect else "DELETE",
            labels=cfg.labels,
            opts=pulumi.ResourceOptions(parent=self, protect=cfg.protect),
        )
        # What `docker push` and the Deployment use: LOCATION-docker.pkg.dev/PROJECT/REPOSITORY.
        self.path = pulumi.Output.all(
            self.repository.location, self.repository.project, self.repository.repository_id
        ).apply(lambda a: f"{a[0]}-docker.pkg.dev/{a[1]}/{a[2]}")
        self.register_outputs({"path": self.path})
