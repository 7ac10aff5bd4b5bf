"""Small readers over a mocked run, shared by the infra tests."""

from __future__ import annotations

from typing import Any

from infra.mocks import MockRun, reveal

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


def props(run: MockRun, typ: str, name: str | None = None) -> dict[str, Any]:
    """The inputs of the one resource of `typ` (named `name`), secrets revealed."""
    return reveal(run.one(typ, name).inputs)


def component(run: MockRun, typ: str) -> Any:
    return run.one(typ)


def children_of(run: MockRun, component_type: str) -> list:
    parent = run.one(component_type).urn
    return [r for r in run.registrations if r.parent == parent]
