"""Fail a workflow in its first second when a repository variable is missing or malformed.

Without this, a fork that forgot `WIF_PROVIDER` fails deep inside google-github-actions/auth with an
error that does not name the variable. Each workflow maps the `vars.*` it uses into its environment under
the same names and calls this (stdlib only, so it runs before any install):

    python -m ci.preflight WIF_PROVIDER CI_SERVICE_ACCOUNT BUCKET_URL
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

DOCS = "docs/cicd.md#repository-variables"

#: name -> (pattern, stack output or source, example)
VARIABLES: dict[str, tuple[str, str, str]] = {
    "WIF_PROVIDER": (
        r"projects/\d+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}",
        "stack output workload_identity_provider",
        "projects/123456789/locations/global/workloadIdentityPools/github/providers/github",
    ),
    "CI_SERVICE_ACCOUNT": (
        r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com",
        "stack output ci_service_account",
        "orbit-ci@my-project.iam.gserviceaccount.com",
    ),
    "DEPLOYER_SERVICE_ACCOUNT": (
        r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com",
        "deployer service account of the bootstrap (docs/deploy.md, step 2)",
        "orbit-deployer@my-project.iam.gserviceaccount.com",
    ),
    "BUCKET_URL": (
        r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/?",
        "stack output bucket_url",
        "gs://orbit-dvc-1a2b",
    ),
    "REGISTRY_PATH": (
        r"[a-z0-9-]+-docker\.pkg\.dev/[a-z][a-z0-9-]{4,28}[a-z0-9]/[a-z0-9][a-z0-9._-]*",
        "stack output registry_path",
        "europe-west6-docker.pkg.dev/my-project/orbit",
    ),
    "PULUMI_BACKEND_URL": (
        r"(gs://[a-z0-9][a-z0-9._/-]+|https://api\.pulumi\.com|file://.+)",
        "the state backend of the bootstrap (docs/deploy.md)",
        "gs://my-project-pulumi-state",
    ),
    "PULUMI_STACK": (r"[A-Za-z0-9_.-]{1,100}", "the stack CI deploys", "dev"),
}


def check(names: list[str], env: Mapping[str, str]) -> list[str]:
    """One line per missing or malformed variable; empty when all are fine."""
    problems = []
    for name in names:
        if name not in VARIABLES:
            problems.append(f"{name}: not a variable orbit knows (known: {', '.join(VARIABLES)})")
            continue
        pattern, source, example = VARIABLES[name]
        value = env.get(name, "").strip()
        if not value:
            problems.append(f"{name} is not set: add the repository variable ({source}), e.g. {example}")
        elif not re.fullmatch(pattern, value):
            problems.append(f"{name}={value!r} does not look right: expected the {source}, e.g. {example}")
    return problems


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if not names:
        print("usage: python -m ci.preflight NAME [NAME ...]", file=sys.stderr)
        return 2
    problems = check(names, os.environ)
    for problem in problems:
        # ::error:: puts the line on the run's summary page, not only in the log.
        print(f"::error title=orbit configuration::{problem} (see {DOCS})")
    if problems:
        return 1
    print(f"preflight: ok: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
