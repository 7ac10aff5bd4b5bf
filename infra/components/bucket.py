"""The data bucket: DVC's remote for datasets and models."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.components.monitoring import lifecycle_rules as monitoring_lifecycle_rules
from infra.config import StackConfig


class DataBucket(pulumi.ComponentResource):
    """Private and versioned; old versions expire, so DVC history is recoverable but not unbounded."""

    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("orbit:storage:DataBucket", name, None, opts)
        b = cfg.bucket
        # Bucket names are global: the project ID makes ours unique without a random suffix.
        bucket_name = f"{cfg.project}-{cfg.name_prefix}-data"
        self.bucket = gcp.storage.Bucket(
            "data",
            name=bucket_name,
            project=cfg.project,
            location=b.location,
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=b.noncurrent_days, with_state="ARCHIVED"
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        num_newer_versions=b.noncurrent_versions, with_state="ARCHIVED"
                    ),
                ),
                # Interrupted `dvc push` uploads otherwise bill forever.
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=1),
                ),
                # The prediction log's retention (infra/components/monitoring.py).
                *monitoring_lifecycle_rules(cfg),
            ],
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=b.soft_delete_days * 86400
            ),
            force_destroy=b.force_destroy,
            deletion_policy="PREVENT" if cfg.protect else "DELETE",
            labels=cfg.labels,
            opts=pulumi.ResourceOptions(parent=self, protect=cfg.protect),
        )
        self.bucket_name = self.bucket.name
        self.url = self.bucket.name.apply(lambda n: f"gs://{n}")
        self.register_outputs({"bucket_name": self.bucket_name, "url": self.url})
