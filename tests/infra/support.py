"""Small helpers shared by the infra tests.

Property checks apply on the Outputs of the resources the program built (`run.platform`) and return that
Output, so `@pulumi.runtime.test` awaits it and an assertion inside fails the test. Recorded inputs
(`props`) are read only for what has no Output: resource options (protect, depends_on, provider,
ignore_changes) and the exact inputs the policy pack and the Kubernetes schemas receive.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from infra.mocks import MockRun, reveal

# The tests' own stack files: frozen copies of the examples. The program runs on these, never on the
# repository's Pulumi.<stack>.yaml, which a user fills with their own project (checked for shape only).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

BUCKET = "gcp:storage/bucket:Bucket"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
SA_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
REPOSITORY_IAM = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
WIF_POOL = "gcp:iam/workloadIdentityPool:WorkloadIdentityPool"
WIF_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
API = "gcp:projects/service:Service"
BUDGET = "gcp:billing/budget:Budget"
RELEASE = "kubernetes:helm.sh/v3:Release"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
K8S_SERVICE = "kubernetes:core/v1:Service"
NAMESPACE = "kubernetes:core/v1:Namespace"
SECRET = "kubernetes:core/v1:Secret"
KSA = "kubernetes:core/v1:ServiceAccount"

# What CI's deploy adds to the committed stack file (`pulumi up --config ...`) once an image is pushed.
RELEASE_TAG = "3f2c1ab"
RELEASE_DIGEST = "sha256:" + "3f" * 32
RELEASED = {"orbit:serviceEnabled": True, "orbit:serviceImageTag": RELEASE_TAG,
            "orbit:serviceImageDigest": RELEASE_DIGEST}


def on(check: Callable[..., None], **outputs: Any) -> pulumi.Output:
    """An Output that calls `check(**resolved values)`; a `@pulumi.runtime.test` returns it to await it."""
    return pulumi.Output.all(**outputs).apply(lambda values: check(**values))


def props(run: MockRun, typ: str, name: str | None = None) -> dict[str, Any]:
    """The recorded inputs of the one resource of `typ` (named `name`), secrets revealed."""
    return reveal(run.one(typ, name).inputs)
