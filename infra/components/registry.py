"""The Artifact Registry Docker repository the BentoML images are pushed to."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import StackConfig


class ImageRegistry(pulumi.ComponentResource):
    """Docker repository whose cleanup policies keep the N most recent images (the live one and the rollback
    targets among them) and delete the rest once old, tagged or not."""

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
                # CI tags every build with its commit SHA, so without this nothing tagged is ever deleted and
                # the repository (and its bill) grows forever. keep-recent above still protects the newest.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{r.max_age_days * 86400}s"
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
