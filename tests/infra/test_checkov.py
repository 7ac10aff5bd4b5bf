"""checkov on every Kubernetes object the program renders: 0 failures, skips only in infra/checkov.yaml.

The objects are what `pulumi up` would send (the mocks' recorded inputs, as manifests), for the dev and
prod fixture stacks, with the service released (and Label Studio on in prod). The ARC Helm charts are not
rendered (Helm renders them in the cluster); their pod settings are checked by tests/infra/test_runners.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra import mocks
from tests.infra.support import FIXTURES, RELEASED

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "infra" / "checkov.yaml"
# Label Studio on (off in both fixtures), so its Deployment and PostgreSQL StatefulSet are checked too.
LABEL_STUDIO = {"orbit:labelStudioEnabled": True,
                "orbit:labelStudioImage": "heartexlabs/label-studio:1.23.2@sha256:" + "ab" * 32,
                "orbit:labelStudioPostgresImage": "postgres:17.6-bookworm@sha256:" + "cd" * 32}


def checkov() -> str | None:
    """The checkov CLI: $ORBIT_CHECKOV, .venv-checkov (see infra/checkov.yaml), or one on PATH."""
    for candidate in (os.environ.get("ORBIT_CHECKOV"), str(REPO / ".venv-checkov" / "bin" / "checkov"),
                      shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_every_skip_says_why():
    text = CONFIG.read_text()
    skips = yaml.safe_load(text)["skip-check"]
    for check_id in skips:
        line = next(line for line in text.splitlines() if check_id in line)
        assert re.search(rf"{check_id}\s*#\s*\S+", line), f"{check_id}: give the reason on its line"


def test_checkov_finds_nothing_on_the_rendered_objects(tmp_path):
    if checkov() is None:
        message = ("checkov is not installed: `make test-infra` creates .venv-checkov "
                   "(infra/checkov-requirements.txt)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    kinds = set()
    for stack, extra in (("dev", {}), ("prod", LABEL_STUDIO)):
        run = mocks.run(mocks.stack_config(stack, {**RELEASED, **extra}, FIXTURES))
        objects = [r for r in run.registrations if r.is_kubernetes_object]
        kinds |= {r.type.rsplit(":", 1)[-1] for r in objects}
        for r in objects:
            kind = r.type.rsplit(":", 1)[-1]
            (tmp_path / f"{stack}-{kind}-{r.name}.yaml").write_text(yaml.safe_dump(r.manifest()))
    assert {"Deployment", "StatefulSet", "PodMonitoring"} <= kinds
    result = subprocess.run([checkov(), "--config-file", str(CONFIG), "-d", str(tmp_path), "-o", "json",
                             "--compact"], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    # The two this issue was about ran and passed: image by digest, and a high UID.
    assert {"CKV_K8S_43", "CKV_K8S_40"} <= passed
