"""Prediction-log grants as the engine sends them, for the resource-rule tables of test_policies.py."""

from __future__ import annotations

import pytest

from infra.components.monitoring import MONITORING_PREFIX, list_condition, object_condition

BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
CREATOR_RULE = "storage-object-creator-prefix-limited"
LOG_RULE = "storage-log-grants-create-or-read"


def grant(role: str, condition: str | None) -> dict:
    props = {"bucket": "b", "role": role, "member": "serviceAccount:s@p.iam.gserviceaccount.com"}
    if condition is not None:
        props["condition"] = {"title": "log", "expression": condition}
    return props


WRITES = object_condition("b", MONITORING_PREFIX)
READS = list_condition("b", MONITORING_PREFIX)

LOG_PASSES = [pytest.param(rule, BUCKET_IAM, props, id=f"{rule}:{label}") for rule, props, label in [
    (CREATOR_RULE, grant("roles/storage.objectCreator", WRITES), "log-writer"),
    (CREATOR_RULE, grant("roles/storage.objectCreator", object_condition("b", "uploads/")), "other-prefix"),
    (LOG_RULE, grant("roles/storage.objectViewer", READS), "log-reader"),
    (LOG_RULE, grant("roles/storage.objectAdmin", None), "not-the-log"),
]]
LOG_REJECTS = [pytest.param(rule, BUCKET_IAM, props, also, id=f"{rule}:{label}")
               for rule, props, also, label in [
    (CREATOR_RULE, grant("roles/storage.objectCreator", None), (), "bucket-wide"),
    (CREATOR_RULE, grant("roles/storage.objectCreator", WRITES + " || true"), (), "widened"),
    (LOG_RULE, grant("roles/storage.objectAdmin", WRITES), (), "admin-on-the-log"),
    (LOG_RULE, grant("roles/storage.objectUser", READS), (), "user-deletes"),
]]
