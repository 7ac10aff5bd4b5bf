"""The orbit-guardrails policy pack: each rule passes a compliant resource and rejects a bad one.

Resources are written as the engine sends them: inputs in camelCase, numbers as floats. Each rejected case
names the only rules it may trip, so a rule that fires on the wrong thing fails here too.
"""

from __future__ import annotations

import copy
import json
import os
import re
import select
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from infra.policy.rules import (
    BUCKET,
    CLUSTER,
    GITHUB_ISSUER,
    NODE_POOL,
    REGISTRY,
    REQUIRED_LABELS,
    RULES,
    STACK_RULES,
    WIF_PROVIDER,
    violations,
)
from tests.infra.edge_cases import RESOURCE_PASSES, RESOURCE_REJECTS
from tests.infra.log_cases import LOG_PASSES, LOG_REJECTS

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_DIR = REPO_ROOT / "infra" / "policy"

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
RELEASE = "kubernetes:helm.sh/v3:Release"
FIREWALL = "gcp:compute/firewall:Firewall"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
BUCKET_BINDING = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
BUCKET_POLICY = "gcp:storage/bucketIAMPolicy:BucketIAMPolicy"
REPO_MEMBER = "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
PROJECT_BINDING = "gcp:projects/iAMBinding:IAMBinding"
PROJECT_POLICY = "gcp:projects/iAMPolicy:IAMPolicy"
FOLDER_MEMBER = "gcp:folder/iAMMember:IAMMember"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"

LABELS = {"app": "orbit", "stack": "dev", "managed-by": "pulumi", "team": "ml"}
CI_SA = "serviceAccount:orbit-dev-ci@orbit-dev.iam.gserviceaccount.com"
NODE_SA = "orbit-dev-nodes@orbit-dev.iam.gserviceaccount.com"
POOL = "principalSet://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/orbit-dev-github"
IMAGE = "europe-west1-docker.pkg.dev/orbit-dev/orbit/planet-classifier:1.2.3"

# ------------------------------------------------------------------------------- compliant resources
GOOD_BUCKET = {
    "name": "orbit-dev-data",
    "location": "EUROPE-WEST1",
    "uniformBucketLevelAccess": True,
    "publicAccessPrevention": "enforced",
    "versioning": {"enabled": True},
    "lifecycleRules": [{"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 30.0}}],
    "labels": LABELS,
    "forceDestroy": True,
}
GOOD_REGISTRY = {
    "repositoryId": "orbit",
    "location": "europe-west1",
    "format": "DOCKER",
    "labels": LABELS,
    "dockerConfig": {"immutableTags": True},
    "cleanupPolicyDryRun": False,
    "cleanupPolicies": [
        {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 10.0}},
        {"id": "delete-untagged", "action": "DELETE",
         "condition": {"tagState": "UNTAGGED", "olderThan": "604800s"}},
    ],
}
GOOD_CLUSTER = {
    "name": "orbit-dev",
    "location": "europe-west1-b",
    "removeDefaultNodePool": True,
    "initialNodeCount": 1.0,
    "privateClusterConfig": {"enablePrivateNodes": True, "enablePrivateEndpoint": False,
                             "masterIpv4CidrBlock": "172.16.0.0/28"},
    "controlPlaneEndpointsConfig": {"dnsEndpointConfig": {"allowExternalTraffic": True}},
    "masterAuthorizedNetworksConfig": {"cidrBlocks": [], "gcpPublicCidrsAccessEnabled": False},
    "workloadIdentityConfig": {"workloadPool": "orbit-dev.svc.id.goog"},
    "enableShieldedNodes": True,
    "enableLegacyAbac": False,
    "datapathProvider": "ADVANCED_DATAPATH",
    "releaseChannel": {"channel": "REGULAR"},
    "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
    "resourceLabels": LABELS,
    "deletionProtection": False,
}
GOOD_NODE_CONFIG = {
    "machineType": "e2-standard-2",
    "spot": True,
    "serviceAccount": NODE_SA,
    "oauthScopes": ["https://www.googleapis.com/auth/cloud-platform"],
    "workloadMetadataConfig": {"mode": "GKE_METADATA"},
    "shieldedInstanceConfig": {"enableSecureBoot": True, "enableIntegrityMonitoring": True},
}
GOOD_NODE_POOL = {
    "cluster": "orbit-dev",
    "location": "europe-west1-b",
    "autoscaling": {"minNodeCount": 0.0, "maxNodeCount": 3.0},
    "management": {"autoRepair": True, "autoUpgrade": True},
    "nodeConfig": GOOD_NODE_CONFIG,
}
GOOD_WIF = {
    "workloadIdentityPoolId": "orbit-dev-github",
    "workloadIdentityPoolProviderId": "github",
    "attributeMapping": {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository"},
    "attributeCondition": "assertion.repository == 'octo-org/orbit'",
    "oidc": {"issuerUri": GITHUB_ISSUER},
}
GOOD_BUCKET_MEMBER = {"bucket": "orbit-dev-data", "role": "roles/storage.objectAdmin", "member": CI_SA}
GOOD_PROJECT_MEMBER = {"project": "orbit-dev", "role": "roles/logging.logWriter",
                       "member": f"serviceAccount:{NODE_SA}"}
GOOD_SA_MEMBER = {
    "serviceAccountId": "projects/orbit-dev/serviceAccounts/orbit-dev-ci@orbit-dev.iam.gserviceaccount.com",
    "role": "roles/iam.workloadIdentityUser",
    "member": f"{POOL}/attribute.repository/octo-org/orbit",
}
GOOD_CONTAINER = {
    "name": "planet-classifier",
    "image": IMAGE,
    "ports": [{"containerPort": 3000.0}],
    "livenessProbe": {"httpGet": {"path": "/livez", "port": 3000.0}},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 3000.0}},
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}},
}
GOOD_POD = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000.0}, "containers": [GOOD_CONTAINER]}
GOOD_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "planet-classifier", "namespace": "orbit"},
    "spec": {
        "replicas": 2.0,
        "selector": {"matchLabels": {"app": "planet-classifier"}},
        "template": {"metadata": {"labels": {"app": "planet-classifier"}}, "spec": GOOD_POD},
    },
}
GOOD_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "smoke"},
    "spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True},
        "containers": [{k: v for k, v in GOOD_CONTAINER.items() if not k.endswith("Probe")}],
    }}},
}
GOOD_FIREWALL = {
    "network": "orbit-dev-vpc",
    "direction": "INGRESS",
    "sourceRanges": ["35.235.240.0/20"],  # IAP TCP forwarding
    "allows": [{"protocol": "tcp", "ports": ["22"]}],
}
GOOD_RELEASE = {
    "chart": "oci://ghcr.io/actions/actions-runner-controller-charts/gha-runner-scale-set-controller",
    "version": "0.13.0",
    "namespace": "arc-systems",
}

BASELINES = {
    BUCKET: GOOD_BUCKET,
    REGISTRY: GOOD_REGISTRY,
    CLUSTER: GOOD_CLUSTER,
    NODE_POOL: GOOD_NODE_POOL,
    WIF_PROVIDER: GOOD_WIF,
    BUCKET_MEMBER: GOOD_BUCKET_MEMBER,
    PROJECT_MEMBER: GOOD_PROJECT_MEMBER,
    SA_MEMBER: GOOD_SA_MEMBER,
    DEPLOYMENT: GOOD_DEPLOYMENT,
    JOB: GOOD_JOB,
    RELEASE: GOOD_RELEASE,
    FIREWALL: GOOD_FIREWALL,
}

DROP = object()


def variant(base: dict, **changes: Any) -> dict:
    """A deep copy of `base` with dotted paths (`__` for `.`) set to values, or removed with DROP."""
    result = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = result
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return result


def delete_when(**condition: Any) -> dict:
    return {"action": {"type": "Delete"}, "condition": condition}


def deployment(**changes: Any) -> dict:
    return variant(GOOD_DEPLOYMENT, **{f"spec__template__spec__{k}": v for k, v in changes.items()})


def container(**changes: Any) -> dict:
    return deployment(**{f"containers__0__{k}": v for k, v in changes.items()})


def pool_member(role: str, member: str = CI_SA) -> dict:
    return {"project": "orbit-dev", "role": role, "member": member}


# ------------------------------------------------------------------------------- cases
# (rule, type, props): fully compliant resources that are near misses for `rule`.
PASSES = [pytest.param(rule, typ, props, id=f"{rule}:{label}") for rule, typ, props, label in [
    ("storage-uniform-bucket-level-access", BUCKET, GOOD_BUCKET, "baseline"),
    ("storage-public-access-prevention", BUCKET, GOOD_BUCKET, "baseline"),
    ("storage-versioning", BUCKET, GOOD_BUCKET, "baseline"),
    ("storage-noncurrent-version-lifecycle", BUCKET,
     variant(GOOD_BUCKET, lifecycleRules=[delete_when(numNewerVersions=3.0)]), "num-newer-versions"),
    ("storage-noncurrent-version-lifecycle", BUCKET,
     variant(GOOD_BUCKET, lifecycleRules=[delete_when(withState="ARCHIVED")]), "archived-state"),
    ("storage-no-public-acls", "gcp:storage/bucketACL:BucketACL",
     {"bucket": "b", "roleEntities": ["OWNER:project-owners-123456"]}, "project-owners"),
    ("iam-no-public-principals", BUCKET_MEMBER, GOOD_BUCKET_MEMBER, "service-account"),
    ("iam-no-public-principals", BUCKET_POLICY,
     {"bucket": "b", "policyData": json.dumps({"bindings": [{"role": "roles/storage.objectViewer",
                                                             "members": [CI_SA]}]})}, "policy-json"),
    ("iam-no-service-account-keys", "gcp:serviceaccount/account:Account", {"accountId": "orbit-dev-ci"},
     "account-without-key"),
    ("iam-no-basic-roles", PROJECT_MEMBER, GOOD_PROJECT_MEMBER, "predefined-role"),
    ("iam-no-project-wide-admin", BUCKET_MEMBER, variant(GOOD_BUCKET_MEMBER, role="roles/storage.admin"),
     "admin-on-the-bucket"),
    ("iam-no-project-wide-impersonation", SA_MEMBER, GOOD_SA_MEMBER, "on-one-service-account"),
    ("iam-data-roles-on-resource", PROJECT_MEMBER, pool_member("roles/artifactregistry.reader"),
     "registry-reader-for-nodes"),
    ("iam-data-roles-on-resource", REPO_MEMBER,
     {"repository": "orbit", "role": "roles/artifactregistry.writer", "member": CI_SA}, "writer-on-the-repo"),
    ("iam-no-authoritative-project-iam", PROJECT_MEMBER, GOOD_PROJECT_MEMBER, "additive-member"),
    ("iam-no-whole-pool-principals", SA_MEMBER, GOOD_SA_MEMBER, "one-repository"),
    ("wif-provider-has-condition", WIF_PROVIDER, GOOD_WIF, "baseline"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository == 'octo-org/orbit' && "
                                          "assertion.ref == 'refs/heads/main'"), "with-ref"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="((assertion.repository_id == \"987654\")) && (assertion.event_name"
                                          " == 'push' || assertion.event_name == 'pull_request')"),
     "repository-id-and-an-or-inside-parentheses"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="'octo-org/orbit' == attribute.repository"), "reversed"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="(assertion.ref == 'refs/heads/main' && "
                                          "assertion.repository == 'octo-org/orbit')"), "wrapped"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, oidc={"issuerUri": "https://gitlab.com"},
             attributeCondition="assertion.namespace_id == '42'"), "not-github"),
    ("network-no-open-admin-ports", FIREWALL, GOOD_FIREWALL, "ssh-through-iap"),
    ("network-no-open-admin-ports", FIREWALL,
     variant(GOOD_FIREWALL, sourceRanges=["0.0.0.0/0"], allows=[{"protocol": "tcp", "ports": ["80", "443"]}]),
     "web-ports-from-anywhere"),
    ("network-no-open-admin-ports", FIREWALL, variant(GOOD_FIREWALL, sourceRanges=["0.0.0.0/0"],
                                                      direction="EGRESS", destinationRanges=["0.0.0.0/0"]),
     "egress"),
    ("gke-private-nodes", CLUSTER, GOOD_CLUSTER, "baseline"),
    ("gke-private-nodes", NODE_POOL, variant(GOOD_NODE_POOL, networkConfig={"enablePrivateNodes": True}),
     "pool-private"),
    ("gke-workload-identity", CLUSTER, GOOD_CLUSTER, "baseline"),
    ("gke-control-plane-restricted", CLUSTER, GOOD_CLUSTER, "dns-endpoint-and-no-external-ip"),
    ("gke-control-plane-restricted", CLUSTER,
     variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig__cidrBlocks=[{"cidrBlock": "203.0.113.0/24"}]),
     "office-range"),
    ("gke-control-plane-restricted", CLUSTER,
     variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig=DROP,
             privateClusterConfig__enablePrivateEndpoint=True),
     "private-endpoint"),
    ("gke-control-plane-restricted", CLUSTER,
     variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig=DROP,
             controlPlaneEndpointsConfig__ipEndpointsConfig={"enabled": False}), "no-ip-endpoint"),
    ("gke-shielded-nodes", CLUSTER, variant(GOOD_CLUSTER, enableShieldedNodes=DROP), "default-is-on"),
    ("gke-legacy-abac-disabled", CLUSTER, variant(GOOD_CLUSTER, enableLegacyAbac=DROP), "default-is-off"),
    ("gke-network-policy", CLUSTER,
     variant(GOOD_CLUSTER, datapathProvider="LEGACY_DATAPATH", networkPolicy={"enabled": True}),
     "calico-add-on"),
    ("gke-release-channel", CLUSTER, variant(GOOD_CLUSTER, releaseChannel={"channel": "STABLE"}), "stable"),
    ("gke-no-client-certificate", CLUSTER, variant(GOOD_CLUSTER, masterAuth=DROP), "default-no-certificate"),
    ("gke-node-service-account", NODE_POOL, GOOD_NODE_POOL, "dedicated"),
    ("gke-node-service-account", CLUSTER,
     variant(GOOD_CLUSTER, removeDefaultNodePool=DROP, nodeConfig=GOOD_NODE_CONFIG), "kept-default-pool"),
    ("gke-node-service-account", CLUSTER,
     variant(GOOD_CLUSTER, clusterAutoscaling={"enabled": True, "autoProvisioningDefaults": {
         "serviceAccount": NODE_SA}}), "auto-provisioning"),
    ("gke-node-workload-metadata", NODE_POOL, GOOD_NODE_POOL, "gke-metadata"),
    ("gke-node-auto-repair-upgrade", NODE_POOL, variant(GOOD_NODE_POOL, management=DROP), "default-is-on"),
    ("registry-cleanup-policies", REGISTRY, GOOD_REGISTRY, "baseline"),
    ("labels-required", "gcp:compute/address:Address", {"name": "orbit-dev-lb", "labels": LABELS}, "address"),
    ("labels-required", "gcp:compute/network:Network", {"name": "orbit-dev"}, "type-without-labels"),
    ("k8s-image-pinned", DEPLOYMENT, container(image="ghcr.io/octo-org/orbit@sha256:" + "a" * 64), "digest"),
    ("k8s-image-pinned", DEPLOYMENT, container(image="localhost:5000/classifier:1.0"), "registry-port"),
    ("k8s-probes", JOB, GOOD_JOB, "jobs-need-none"),
    ("k8s-resources", DEPLOYMENT, GOOD_DEPLOYMENT, "baseline"),
    ("k8s-run-as-non-root", DEPLOYMENT,
     deployment(securityContext=DROP, containers__0__securityContext__runAsNonRoot=True), "container-level"),
    ("k8s-no-privileged", DEPLOYMENT, container(securityContext__privileged=False), "explicitly-false"),
    ("k8s-no-privilege-escalation", DEPLOYMENT, GOOD_DEPLOYMENT, "baseline"),
    ("helm-chart-version-pinned", RELEASE, GOOD_RELEASE, "exact"),
    ("helm-chart-version-pinned", RELEASE, {"chart": "./charts/local", "namespace": "x"}, "local-chart"),
]]

# (rule, type, props, also): `rule` must fire; only the rules in `also` may fire with it.
REJECTS = [pytest.param(rule, typ, props, also, id=f"{rule}:{label}") for rule, typ, props, also, label in [
    ("storage-uniform-bucket-level-access", BUCKET, variant(GOOD_BUCKET, uniformBucketLevelAccess=False), (),
     "false"),
    ("storage-uniform-bucket-level-access", BUCKET, variant(GOOD_BUCKET, uniformBucketLevelAccess=DROP), (),
     "missing"),
    ("storage-public-access-prevention", BUCKET, variant(GOOD_BUCKET, publicAccessPrevention="inherited"), (),
     "inherited"),
    ("storage-public-access-prevention", BUCKET, variant(GOOD_BUCKET, publicAccessPrevention=DROP), (),
     "missing"),
    ("storage-versioning", BUCKET, variant(GOOD_BUCKET, versioning={"enabled": False}), (), "disabled"),
    ("storage-noncurrent-version-lifecycle", BUCKET, variant(GOOD_BUCKET, lifecycleRules=DROP), (),
     "no-rules"),
    ("storage-noncurrent-version-lifecycle", BUCKET,
     variant(GOOD_BUCKET, lifecycleRules=[delete_when(age=365.0)]), (), "age-only"),
    ("storage-noncurrent-version-lifecycle", BUCKET,
     variant(GOOD_BUCKET, lifecycleRules=[{"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"},
                                          "condition": {"daysSinceNoncurrentTime": 30.0}}]), (),
     "not-a-delete"),
    ("storage-no-public-acls", "gcp:storage/bucketAccessControl:BucketAccessControl",
     {"bucket": "b", "entity": "allUsers", "role": "READER"}, (), "entity"),
    ("storage-no-public-acls", "gcp:storage/bucketACL:BucketACL",
     {"bucket": "b", "roleEntities": ["OWNER:project-owners-1", "READER:allAuthenticatedUsers"]}, (),
     "role-entities"),
    ("storage-no-public-acls", "gcp:storage/bucketObject:BucketObject",
     {"bucket": "b", "name": "x", "predefinedAcl": "publicRead"}, (), "predefined"),
    ("iam-no-public-principals", BUCKET_MEMBER, variant(GOOD_BUCKET_MEMBER, member="allUsers"), (), "member"),
    ("iam-no-public-principals", BUCKET_BINDING,
     {"bucket": "b", "role": "roles/storage.objectViewer", "members": [CI_SA, "allAuthenticatedUsers"]}, (),
     "binding"),
    ("iam-no-public-principals", REPO_MEMBER,
     {"repository": "orbit", "role": "roles/artifactregistry.reader", "member": "allUsers"}, (), "registry"),
    ("iam-no-public-principals", BUCKET_POLICY,
     {"bucket": "b", "policyData": json.dumps({"bindings": [{"role": "roles/storage.objectViewer",
                                                             "members": ["allUsers"]}]})}, (), "policy-json"),
    ("iam-no-public-principals", BUCKET_POLICY, {"bucket": "b", "policyData": "{not json"},
     ("iam-no-basic-roles", "iam-no-whole-pool-principals"), "unreadable-policy-fails-closed"),
    ("iam-no-service-account-keys", "gcp:serviceaccount/key:Key", {"serviceAccountId": "ci"}, (), "key"),
    ("iam-no-service-account-keys", "gcp:storage/hmacKey:HmacKey", {"serviceAccountEmail": NODE_SA}, (),
     "hmac"),
    ("iam-no-basic-roles", PROJECT_MEMBER, pool_member("roles/editor"), (), "editor"),
    ("iam-no-basic-roles", PROJECT_MEMBER, pool_member("roles/owner", "user:me@example.com"), (), "owner"),
    ("iam-no-project-wide-admin", PROJECT_MEMBER, pool_member("roles/container.admin"), (), "container"),
    ("iam-no-project-wide-admin", FOLDER_MEMBER,
     {"folder": "folders/1", "role": "roles/iam.securityAdmin", "member": CI_SA}, (), "folder-security"),
    ("iam-no-project-wide-admin", PROJECT_MEMBER, pool_member("roles/storage.admin"),
     ("iam-data-roles-on-resource",), "storage-admin"),
    ("iam-no-project-wide-impersonation", PROJECT_MEMBER, pool_member("roles/iam.serviceAccountUser"), (),
     "service-account-user"),
    ("iam-no-project-wide-impersonation", PROJECT_MEMBER,
     pool_member("roles/iam.workloadIdentityUser", f"{POOL}/attribute.repository/octo-org/orbit"), (),
     "workload-identity-user"),
    ("iam-data-roles-on-resource", PROJECT_MEMBER, pool_member("roles/storage.objectViewer"), (), "storage"),
    ("iam-data-roles-on-resource", PROJECT_MEMBER, pool_member("roles/artifactregistry.writer"), (),
     "registry-writer"),
    ("iam-no-authoritative-project-iam", PROJECT_BINDING,
     {"project": "orbit-dev", "role": "roles/logging.logWriter", "members": [CI_SA]}, (), "binding"),
    ("iam-no-authoritative-project-iam", PROJECT_POLICY,
     {"project": "orbit-dev", "policyData": json.dumps({"bindings": []})}, (), "policy"),
    ("iam-no-whole-pool-principals", SA_MEMBER, variant(GOOD_SA_MEMBER, member=f"{POOL}/*"), (),
     "sa-binding"),
    ("iam-no-whole-pool-principals", BUCKET_MEMBER, variant(GOOD_BUCKET_MEMBER, member=f"{POOL}/*"), (),
     "bucket-binding"),
    ("wif-provider-has-condition", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition=DROP, oidc={"issuerUri": "https://gitlab.com"}), (), "missing"),
    ("wif-provider-has-condition", WIF_PROVIDER, variant(GOOD_WIF, attributeCondition="  "),
     ("wif-provider-pins-repository",), "blank-github"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository_owner == 'octo-org'"), (), "owner-only"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository == 'octo-org/orbit' || true"), (), "or-true"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository == 'octo-org/orbit' && assertion.ref == 'x'"
                                          " || true"), (), "and-binds-tighter-than-or"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="(assertion.repository == 'octo-org/orbit' || true) && "
                                          "assertion.ref == 'refs/heads/main'"), (), "or-inside-a-term"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="!(assertion.repository == 'octo-org/orbit')"), (), "negated"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository.startsWith('octo-org/')"), (), "prefix"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository != 'evil/repo'"), (), "not-equal"),
    ("wif-provider-pins-repository", WIF_PROVIDER,
     variant(GOOD_WIF, attributeCondition="assertion.repository_id == 'octo-org/orbit'"), (),
     "id-not-numeric"),
    ("network-no-open-admin-ports", FIREWALL, variant(GOOD_FIREWALL, sourceRanges=["0.0.0.0/0"]), (), "ssh"),
    ("network-no-open-admin-ports", FIREWALL,
     variant(GOOD_FIREWALL, sourceRanges=["10.0.0.0/8", "::/0"],
             allows=[{"protocol": "tcp", "ports": ["3000-4000"]}]),
     (), "rdp-in-a-range-over-ipv6"),
    ("network-no-open-admin-ports", FIREWALL,
     variant(GOOD_FIREWALL, sourceRanges=["0.0.0.0/0"], allows=[{"protocol": "all"}]), (), "all-protocols"),
    ("gke-private-nodes", CLUSTER, variant(GOOD_CLUSTER, privateClusterConfig__enablePrivateNodes=False), (),
     "public-nodes"),
    ("gke-private-nodes", CLUSTER, variant(GOOD_CLUSTER, privateClusterConfig=DROP), (), "missing"),
    ("gke-private-nodes", NODE_POOL, variant(GOOD_NODE_POOL, networkConfig={"enablePrivateNodes": False}), (),
     "pool-opts-out"),
    ("gke-control-plane-restricted", CLUSTER, variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig=DROP), (),
     "open-to-any-address"),
    ("gke-control-plane-restricted", CLUSTER,
     variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig__cidrBlocks=[{"cidrBlock": "0.0.0.0/0"}]), (),
     "authorized-everywhere"),
    ("gke-control-plane-restricted", CLUSTER,
     variant(GOOD_CLUSTER, masterAuthorizedNetworksConfig__gcpPublicCidrsAccessEnabled=True), (),
     "every-gce-ip"),
    ("gke-workload-identity", CLUSTER, variant(GOOD_CLUSTER, workloadIdentityConfig=DROP), (), "missing"),
    ("gke-workload-identity", CLUSTER, variant(GOOD_CLUSTER, workloadIdentityConfig={"workloadPool": ""}), (),
     "empty"),
    ("gke-shielded-nodes", CLUSTER, variant(GOOD_CLUSTER, enableShieldedNodes=False), (), "cluster-off"),
    ("gke-shielded-nodes", NODE_POOL,
     variant(GOOD_NODE_POOL, nodeConfig__shieldedInstanceConfig__enableIntegrityMonitoring=False), (),
     "no-integrity-monitoring"),
    ("gke-legacy-abac-disabled", CLUSTER, variant(GOOD_CLUSTER, enableLegacyAbac=True), (), "on"),
    ("gke-network-policy", CLUSTER, variant(GOOD_CLUSTER, datapathProvider="LEGACY_DATAPATH"), (), "legacy"),
    ("gke-network-policy", CLUSTER,
     variant(GOOD_CLUSTER, datapathProvider=DROP, networkPolicy={"enabled": False}), (), "add-on-off"),
    ("gke-release-channel", CLUSTER, variant(GOOD_CLUSTER, releaseChannel={"channel": "UNSPECIFIED"}), (),
     "unspecified"),
    ("gke-release-channel", CLUSTER, variant(GOOD_CLUSTER, releaseChannel=DROP), (), "missing"),
    ("gke-no-client-certificate", CLUSTER,
     variant(GOOD_CLUSTER, masterAuth__clientCertificateConfig__issueClientCertificate=True), (), "issued"),
    ("gke-node-service-account", NODE_POOL, variant(GOOD_NODE_POOL, nodeConfig__serviceAccount=DROP), (),
     "missing"),
    ("gke-node-service-account", NODE_POOL,
     variant(GOOD_NODE_POOL, nodeConfig__serviceAccount="123456-compute@developer.gserviceaccount.com"), (),
     "default-compute"),
    ("gke-node-service-account", NODE_POOL, variant(GOOD_NODE_POOL, nodeConfig__serviceAccount="default"), (),
     "default-keyword"),
    ("gke-node-service-account", CLUSTER,
     variant(GOOD_CLUSTER, removeDefaultNodePool=False,
             nodeConfig={"workloadMetadataConfig": {"mode": "GKE_METADATA"}}), (), "kept-default-pool"),
    ("gke-node-service-account", CLUSTER, variant(GOOD_CLUSTER, clusterAutoscaling={"enabled": True}), (),
     "auto-provisioning"),
    ("gke-node-workload-metadata", NODE_POOL,
     variant(GOOD_NODE_POOL, nodeConfig__workloadMetadataConfig={"mode": "GCE_METADATA"}), (),
     "gce-metadata"),
    ("gke-node-workload-metadata", NODE_POOL,
     variant(GOOD_NODE_POOL, nodeConfig__workloadMetadataConfig=DROP), (), "missing"),
    ("gke-node-auto-repair-upgrade", NODE_POOL, variant(GOOD_NODE_POOL, management__autoRepair=False), (),
     "no-repair"),
    ("gke-node-auto-repair-upgrade", NODE_POOL, variant(GOOD_NODE_POOL, management__autoUpgrade=False), (),
     "no-upgrade"),
    ("gke-node-auto-repair-upgrade", CLUSTER,
     variant(GOOD_CLUSTER, removeDefaultNodePool=DROP,
             nodePools=[{"name": "serving", "nodeConfig": GOOD_NODE_CONFIG,
                         "management": {"autoUpgrade": False}}]),
     (), "inline-pool"),
    ("registry-cleanup-policies", REGISTRY, variant(GOOD_REGISTRY, cleanupPolicies=DROP), (), "none"),
    ("registry-cleanup-policies", REGISTRY,
     variant(GOOD_REGISTRY, cleanupPolicies=GOOD_REGISTRY["cleanupPolicies"][:1]), (), "keep-only"),
    ("registry-cleanup-policies", REGISTRY, variant(GOOD_REGISTRY, cleanupPolicyDryRun=True), (), "dry-run"),
    ("labels-required", BUCKET, variant(GOOD_BUCKET, labels__stack=DROP), (), "bucket-missing-stack"),
    ("labels-required", CLUSTER, variant(GOOD_CLUSTER, resourceLabels=DROP), (), "cluster-unlabelled"),
    ("labels-required", REGISTRY, variant(GOOD_REGISTRY, labels__team="ML Team"), (), "invalid-value"),
    ("labels-required", REGISTRY, variant(GOOD_REGISTRY, labels__app=""), (), "empty-value"),
    ("labels-required", "gcp:compute/instance:Instance", {"name": "vm", "labels": {"Team": "ml"}}, (),
     "invalid-key-on-any-type"),
    ("k8s-image-pinned", DEPLOYMENT, container(image=IMAGE.rsplit(":", 1)[0] + ":latest"), (), "latest"),
    ("k8s-image-pinned", DEPLOYMENT, container(image=IMAGE.rsplit(":", 1)[0]), (), "untagged"),
    ("k8s-image-pinned", DEPLOYMENT, container(image="localhost:5000/planet-classifier"), (), "port-no-tag"),
    ("k8s-image-pinned", DEPLOYMENT,
     deployment(initContainers=[dict(GOOD_CONTAINER, name="init", image="busybox")]), (), "init-container"),
    ("k8s-image-pinned", CRONJOB,
     {"spec": {"schedule": "@daily", "jobTemplate": variant(
         GOOD_JOB, spec__template__spec__containers__0__image="python:latest")}}, (), "cronjob"),
    ("k8s-probes", DEPLOYMENT, container(readinessProbe=DROP), (), "no-readiness"),
    ("k8s-probes", DEPLOYMENT, container(livenessProbe=DROP), (), "no-liveness"),
    ("k8s-resources", DEPLOYMENT, container(resources__limits=DROP), (), "no-memory-limit"),
    ("k8s-resources", DEPLOYMENT, container(resources={"limits": {"memory": "1Gi"}}), (), "no-requests"),
    ("k8s-resources", JOB,
     variant(GOOD_JOB, spec__template__spec__initContainers=[
         {k: v for k, v in GOOD_CONTAINER.items() if k in ("name", "image", "securityContext")}]),
     (), "init-container"),
    ("k8s-run-as-non-root", DEPLOYMENT, deployment(securityContext=DROP), (), "unset"),
    ("k8s-run-as-non-root", DEPLOYMENT, container(securityContext__runAsNonRoot=False), (),
     "container-overrides"),
    ("k8s-run-as-non-root", DEPLOYMENT, container(securityContext__runAsUser=0.0), (), "uid-0"),
    ("k8s-no-privileged", DEPLOYMENT, container(securityContext__privileged=True), (), "privileged"),
    ("k8s-no-privileged", DEPLOYMENT, deployment(hostNetwork=True), (), "host-network"),
    ("k8s-no-privilege-escalation", DEPLOYMENT, container(securityContext__allowPrivilegeEscalation=DROP), (),
     "unset"),
    ("k8s-no-privilege-escalation", DEPLOYMENT, container(securityContext__allowPrivilegeEscalation=True), (),
     "allowed"),
    ("helm-chart-version-pinned", RELEASE, variant(GOOD_RELEASE, version=DROP), (), "missing"),
    ("helm-chart-version-pinned", RELEASE, variant(GOOD_RELEASE, version="^0.13.0"), (), "range"),
    ("helm-chart-version-pinned", "kubernetes:helm.sh/v4:Chart", variant(GOOD_RELEASE, version="0.13.x"), (),
     "wildcard-v4"),
]]


PASSES += RESOURCE_PASSES  # the edge's resource rule (tests/infra/edge_cases.py)
REJECTS += RESOURCE_REJECTS
PASSES += LOG_PASSES  # the prediction log's rules (tests/infra/log_cases.py)
REJECTS += LOG_REJECTS


def fired(resource_type: str, props: dict) -> list[str]:
    return [name for name, _ in violations(resource_type, props)]


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("resource_type", sorted(BASELINES))
def test_compliant_baselines_pass_every_rule(resource_type: str) -> None:
    assert violations(resource_type, BASELINES[resource_type]) == []


@pytest.mark.parametrize(("rule", "resource_type", "props"), PASSES)
def test_rule_passes_a_compliant_resource(rule: str, resource_type: str, props: dict) -> None:
    assert violations(resource_type, props) == []


@pytest.mark.parametrize(("rule", "resource_type", "props", "also"), REJECTS)
def test_rule_rejects_a_bad_resource(rule: str, resource_type: str, props: dict, also: tuple) -> None:
    found = violations(resource_type, props)
    names = {name for name, _ in found}
    assert rule in names, f"{rule} did not fire; got {found}"
    assert names <= {rule, *also}, f"unexpected rules fired: {names - {rule, *also}}"
    for _, message in found:
        assert len(message) > 30, "a message says what is wrong and how to fix it"


def test_every_rule_has_a_passing_and_a_rejected_case() -> None:
    names = [policy.name for policy in RULES]
    assert len(names) == len(set(names)) >= 20
    passed = {case.values[0] for case in PASSES}
    rejected = {case.values[0] for case in REJECTS}
    assert set(names) - passed == set(), "rules without a passing case"
    assert set(names) - rejected == set(), "rules without a rejected case"
    assert (passed | rejected) <= set(names), "cases name a rule that does not exist"


def test_messages_name_the_offending_value() -> None:
    [(_, message)] = violations(DEPLOYMENT, container(image="planet-classifier:latest"))
    assert "container 'planet-classifier'" in message and "planet-classifier:latest" in message
    [(_, message)] = violations(PROJECT_MEMBER, pool_member("roles/editor"))
    assert CI_SA in message and "roles/editor" in message
    unreadable = violations(BUCKET_POLICY, {"bucket": "b", "policyData": "{not json"})
    assert unreadable and all("policyData is not valid JSON" in message for _, message in unreadable)
    [(_, message)] = violations(BUCKET, variant(GOOD_BUCKET, labels={"app": "orbit"}))
    assert "stack, managed-by" in message


def test_violations_ignores_resources_no_rule_covers() -> None:
    assert violations("random:index/randomId:RandomId", {"byteLength": 4.0}) == []
    assert violations("kubernetes:core/v1:Namespace", {"metadata": {"name": "orbit"}}) == []
    assert violations("pulumi:providers:kubernetes", {"kubeconfig": "secret"}) == []


def test_violations_reports_every_problem_of_a_resource() -> None:
    bad_bucket = {"location": "EU"}
    assert sorted(fired(BUCKET, bad_bucket)) == sorted([
        "storage-uniform-bucket-level-access", "storage-public-access-prevention", "storage-versioning",
        "labels-required",
    ])
    two_containers = deployment(containers=[dict(GOOD_CONTAINER, image="a:latest"),
                                            dict(GOOD_CONTAINER, name="b", image="b")])
    assert fired(DEPLOYMENT, two_containers) == ["k8s-image-pinned", "k8s-image-pinned"]


def test_violations_leaves_its_input_untouched() -> None:
    props = variant(GOOD_BUCKET, versioning={"enabled": False})
    before = copy.deepcopy(props)
    violations(BUCKET, props, name="data")
    assert props == before


def test_unknown_values_raise_like_in_the_engine() -> None:
    """During preview the engine turns this error into an advisory "can't run during preview" note."""
    with pytest.raises(UnknownValueError):
        violations(BUCKET, variant(GOOD_BUCKET, publicAccessPrevention=UNKNOWN_STRING_VALUE))


def test_the_rule_table_of_the_docs_is_the_pack_s_rules_and_labels() -> None:
    """The rule ids in docs/policies.md's table are exactly the pack's, resource and stack rules alike."""
    docs = (REPO_ROOT / "docs" / "policies.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)`", docs, re.M))
    assert documented == {policy.name for policy in [*RULES, *STACK_RULES]}
    assert all(f"`{key}`" in docs for key in REQUIRED_LABELS)


def test_deploy_guide_names_every_config_key_and_real_outputs() -> None:
    """docs/deploy.md lists the keys infra/config.py reads, no others, and only stack outputs that exist."""
    from infra.config import KEYS

    guide = (REPO_ROOT / "docs" / "deploy.md").read_text()
    assert [key for key in KEYS if f"`{key}`" not in guide] == []
    mentioned = set(re.findall(r"\b(?:orbit|gcp):[A-Za-z]+", guide))
    assert mentioned - set(KEYS) == set(), "the guide names keys infra/config.py does not read"
    architecture = (REPO_ROOT / "docs" / "architecture.md").read_text()
    outputs = re.search(r"^- Stack outputs.*?(?=^- |^$)", architecture, re.M | re.S).group(0)
    used = set(re.findall(r"pulumi stack output (\w+)", guide))
    assert used and all(f"`{name}`" in outputs for name in used)


def test_pack_runs_in_the_environment_setup_infra_builds() -> None:
    """The CLI installs nothing for a local pack: its virtualenv must be .venv-infra, which exists."""
    options = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())["runtime"]["options"]
    # normpath, not resolve: .venv-infra may be a link, and the CLI joins the paths as text.
    assert Path(os.path.normpath(PACK_DIR / options["virtualenv"])) == REPO_ROOT / ".venv-infra"
    assert options["toolchain"] == "pip"
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert Path(os.path.normpath(REPO_ROOT / project["virtualenv"])) == REPO_ROOT / ".venv-infra"
    assert not (PACK_DIR / "requirements.txt").exists(), "a second pin list would drift"


def test_requirements_file_is_the_infra_extra() -> None:
    """`pulumi install`/`pulumi up` on a fresh clone install requirements.txt into .venv-infra."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    expected = set(pyproject["optional-dependencies"]["infra"])
    # infra/config.py reads stack config with PyYAML and validates it with pydantic (base dependencies).
    expected |= {pin for pin in pyproject["dependencies"] if pin.startswith(("pyyaml==", "pydantic=="))}
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = {line for line in lines if line and not line.startswith("#")}
    assert pins == expected, f"requirements.txt must list exactly: {sorted(expected)}"


@pytest.mark.slow
def test_the_pack_serves_the_rules_to_the_engine() -> None:
    """Start the pack as the CLI does (`python -m pulumi.policy ENGINE DIR`) and talk to it over gRPC."""
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
        cwd=PACK_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        port = proc.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            proc.kill()
            pytest.fail(f"the policy pack did not start: {proc.communicate()[1]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "orbit-guardrails"
            assert [p.name for p in info.policies] == [p.name for p in RULES + STACK_RULES]
            assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}

            def analyze(resource_type: str, props: dict) -> list[str]:
                struct = struct_pb2.Struct()
                struct.update(props)
                request = analyzer_pb2.AnalyzeRequest(type=resource_type, properties=struct, name="r",
                                                      urn=f"urn:pulumi:dev::orbit::{resource_type}::r")
                return sorted(d.policyName for d in stub.Analyze(request, timeout=30).diagnostics)

            assert analyze(BUCKET, GOOD_BUCKET) == []
            assert analyze(DEPLOYMENT, GOOD_DEPLOYMENT) == []
            bad = variant(GOOD_BUCKET, publicAccessPrevention="inherited", versioning={"enabled": False})
            assert analyze(BUCKET, bad) == sorted(fired(BUCKET, bad))
            key = analyze("gcp:serviceaccount/key:Key", {"serviceAccountId": "x"})
            assert key == ["iam-no-service-account-keys"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
