"""ci.preflight: a missing or malformed repository variable fails in the first step, naming the variable."""

from __future__ import annotations

from ci import preflight

GOOD = {
    "WIF_PROVIDER": "projects/123456789/locations/global/workloadIdentityPools/orbit-gh-1a2b3c"
    "/providers/github",
    "CI_SERVICE_ACCOUNT": "orbit-ci@my-gcp-project.iam.gserviceaccount.com",
    "DEPLOYER_SERVICE_ACCOUNT": "orbit-deployer@my-gcp-project.iam.gserviceaccount.com",
    "BUCKET_URL": "gs://orbit-data-1a2b3c",
    "REGISTRY_PATH": "europe-west1-docker.pkg.dev/my-gcp-project/orbit",
    "PULUMI_BACKEND_URL": "gs://my-gcp-project-pulumi-state",
    "PULUMI_STACK": "dev",
}


def test_well_formed_values_pass():
    assert preflight.check(list(GOOD), GOOD) == []


def test_missing_value_names_the_stack_output_to_copy():
    problems = preflight.check(["BUCKET_URL", "WIF_PROVIDER"], {**GOOD, "BUCKET_URL": " "})
    assert len(problems) == 1
    assert problems[0].startswith("BUCKET_URL is not set")
    assert "stack output bucket_url" in problems[0]


def test_malformed_values_are_reported_with_an_example():
    env = {
        **GOOD,
        "WIF_PROVIDER": "github",
        "CI_SERVICE_ACCOUNT": "orbit-ci@gmail.com",
        "BUCKET_URL": "orbit-data",
        "REGISTRY_PATH": "gcr.io/my-gcp-project",
    }
    problems = preflight.check(["WIF_PROVIDER", "CI_SERVICE_ACCOUNT", "BUCKET_URL", "REGISTRY_PATH"], env)
    assert [p.split("=")[0] for p in problems] == [
        "WIF_PROVIDER",
        "CI_SERVICE_ACCOUNT",
        "BUCKET_URL",
        "REGISTRY_PATH",
    ]
    assert all("does not look right" in p and "e.g." in p for p in problems)


def test_unknown_name_is_a_mistake_in_the_workflow():
    assert "not a variable orbit knows" in preflight.check(["BUKET_URL"], GOOD)[0]


def test_cli_prints_github_error_annotations(monkeypatch, capsys):
    monkeypatch.delenv("REGISTRY_PATH", raising=False)
    monkeypatch.setenv("PULUMI_STACK", "dev")
    assert preflight.main(["REGISTRY_PATH", "PULUMI_STACK"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("::error title=orbit configuration::REGISTRY_PATH is not set")
    assert "docs/cicd.md" in out
    assert preflight.main(["PULUMI_STACK"]) == 0
    assert preflight.main([]) == 2


def test_the_deployer_is_named_after_the_bootstrap_and_checked_like_an_account():
    [problem] = preflight.check(["DEPLOYER_SERVICE_ACCOUNT"], {})
    assert problem.startswith("DEPLOYER_SERVICE_ACCOUNT is not set") and "docs/deploy.md" in problem
    [problem] = preflight.check(["DEPLOYER_SERVICE_ACCOUNT"], {"DEPLOYER_SERVICE_ACCOUNT": "orbit-deployer"})
    assert "does not look right" in problem
    assert "INFRA_SERVICE_ACCOUNT" not in preflight.VARIABLES  # one name for the deployer, everywhere
