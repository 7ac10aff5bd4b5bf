"""docs/deploy.md's bootstrap, run as written against a fake `gcloud` that records every call.

The commands come from the guide's own bash blocks (step 2), so the guide and this test cannot drift. The
fake keeps `gcloud config set/unset auth/impersonate_service_account` like the real one, so each recorded
call carries the identity it would run as: the person until impersonation is switched on, the deployer
after (or whoever `--impersonate-service-account` names).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = (REPO / "docs" / "deploy.md").read_text()
PERSON = "person"
DEPLOYER = "orbit-deployer@my-orbit-dev.iam.gserviceaccount.com"

FAKE_GCLOUD = """#!{python}
import json, os, sys
state = os.environ["FAKE_GCLOUD_STATE"]
args = sys.argv[1:]
config = json.load(open(state + ".config")) if os.path.exists(state + ".config") else {{}}
who = config.get("auth/impersonate_service_account", "{person}")
if "--impersonate-service-account" in args:
    who = args[args.index("--impersonate-service-account") + 1]
with open(state, "a") as log:
    log.write(json.dumps({{"as": who, "args": args}}) + "\\n")
if args[:2] == ["config", "set"]:
    config[args[2]] = args[3]
elif args[:2] == ["config", "unset"]:
    config.pop(args[2], None)
json.dump(config, open(state + ".config", "w"))
if args[:2] == ["projects", "describe"]:
    print("918273645")
"""


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else len(text)]


def bootstrap_script() -> str:
    return "\n".join(re.findall(r"```bash\n(.*?)```", section(DEPLOY, "## 2. One-time bootstrap"), re.S))


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> list[dict]:
    work = tmp_path_factory.mktemp("bootstrap")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable, person=PERSON))
    gcloud.chmod(0o755)
    log = work / "calls.jsonl"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(work), "FAKE_GCLOUD_STATE": str(log)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", bootstrap_script()], cwd=work, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def index(calls: list[dict], *words: str) -> int:
    """Position of the first call whose arguments contain all `words` in order of appearance."""
    for i, call in enumerate(calls):
        text = " ".join(call["args"])
        if all(word in text for word in words):
            return i
    raise AssertionError(f"no gcloud call with {words}")


def test_everything_runs_as_the_person_until_the_deployer_is_impersonated_last(calls):
    switch = index(calls, "config set auth/impersonate_service_account")
    assert all(call["as"] == PERSON for call in calls[:switch + 1])
    # After the switch only the person's own login remains: nothing else may run as the deployer here.
    assert [c["args"][:3] for c in calls[switch + 1:]] == [["auth", "application-default", "login"]]
    assert calls[-1]["as"] == DEPLOYER
    assert index(calls, "serviceAccountTokenCreator") < switch


def test_what_each_step_needs_exists_before_it(calls):
    assert index(calls, "billing projects link") < index(calls, "services enable")
    assert index(calls, "services enable", "compute.googleapis.com") < index(calls, "networks delete default")
    assert index(calls, "firewall-rules delete", "default-allow-ssh", "default-allow-rdp") < index(
        calls, "networks delete default")
    pool = index(calls, "workload-identity-pools create orbit-github")
    provider = index(calls, "providers create-oidc github")
    assert pool < provider
    for account in ("orbit-deployer", "orbit-previewer"):
        created = index(calls, "service-accounts create", account)
        assert created < index(calls, "add-iam-policy-binding", f"serviceAccount:{account}")
        assert max(provider, created) < index(calls, "service-accounts add-iam-policy-binding", account,
                                              "roles/iam.workloadIdentityUser")
    assert index(calls, "kms keys create state") < index(calls, "kms keys add-iam-policy-binding state")


def test_the_provider_pins_the_repository_and_maps_the_environment(calls):
    args = calls[index(calls, "providers create-oidc github")]["args"]
    value = dict(zip(args, args[1:], strict=False))
    mapping = dict(item.split("=", 1) for item in value["--attribute-mapping"].split(","))
    assert mapping["attribute.environment"] == "assertion.environment"
    assert mapping["attribute.repository"] == "assertion.repository"  # the stack's CI binding uses it
    assert value["--attribute-condition"] == (
        "assertion.repository_id == '123456789' && assertion.repository == 'my-github-org/orbit'")
    assert value["--issuer-uri"] == "https://token.actions.githubusercontent.com"


def test_deployer_and_previewer_are_bound_on_the_environment_not_the_subject(calls):
    members = {}
    for call in calls:
        args = call["args"]
        if args[:3] == ["iam", "service-accounts", "add-iam-policy-binding"] and (
                "roles/iam.workloadIdentityUser" in args):
            members[args[3].split("@")[0]] = args[args.index("--member") + 1]
    pool = "principalSet://iam.googleapis.com/projects/918273645/locations/global/workloadIdentityPools/orbit-github"
    assert members == {"orbit-deployer": f"{pool}/attribute.environment/production",
                       "orbit-previewer": f"{pool}/attribute.environment/preview"}


def test_the_budget_grant_runs_as_the_person_not_the_deployer(calls):
    grant = calls[index(calls, "billing accounts add-iam-policy-binding")]
    assert "roles/billing.costsManager" in grant["args"] and grant["as"] == PERSON
