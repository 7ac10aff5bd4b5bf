"""Fail a workflow early when a repository variable or the stack file still holds something a fork must set.

Without this, a fork that forgot `WIF_PROVIDER` fails deep inside google-github-actions/auth with an
error that does not name the variable, and one that kept `gcp:project: my-gcp-project` in its stack file
runs `pulumi up` against a project it does not own. Each workflow maps the `vars.*` it uses into its
environment under the same names and calls this:

    python -m ci.preflight WIF_PROVIDER CI_SERVICE_ACCOUNT BUCKET_URL    # stdlib only: before any install
    python -m ci.preflight --stack "$PULUMI_STACK" WIF_PROVIDER ...    # also Pulumi.<stack>.yaml (pydantic)

With `--stack`, the checked-out `Pulumi.<stack>.yaml` must be valid (infra/config.py validates it, as
`pulumi up` would, without the engine), must not keep a placeholder value of the example stack files, and its
GitHub owner, repository and repository ID must be the repository the workflow runs in (`GITHUB_REPOSITORY`,
`GITHUB_REPOSITORY_ID`): the Workload Identity provider admits no other.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DOCS = "docs/cicd.md#repository-variables"
_ACCOUNT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com"

#: name -> (pattern, stack output or source, example)
VARIABLES: dict[str, tuple[str, str, str]] = {
    "WIF_PROVIDER": (
        r"projects/\d+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}",
        "stack output workload_identity_provider",
        "projects/123456789/locations/global/workloadIdentityPools/github/providers/github",
    ),
    "CI_SERVICE_ACCOUNT": (
        _ACCOUNT,
        "stack output ci_service_account",
        "orbit-ci@my-project.iam.gserviceaccount.com",
    ),
    "DEPLOYER_SERVICE_ACCOUNT": (
        _ACCOUNT,
        "deployer service account of the bootstrap (docs/deploy.md, step 2)",
        "orbit-deployer@my-project.iam.gserviceaccount.com",
    ),
    "PREVIEW_SERVICE_ACCOUNT": (
        _ACCOUNT,
        "read-only previewer service account of the bootstrap (docs/deploy.md, step 2)",
        "orbit-previewer@my-project.iam.gserviceaccount.com",
    ),
    "MONITOR_SERVICE_ACCOUNT": (
        _ACCOUNT,
        "read-only reader of the bucket's monitoring/ prefix (docs/monitoring.md; added to infra later)",
        "orbit-monitor@my-project.iam.gserviceaccount.com",
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
    "LABEL_STUDIO_URL": (
        r"https?://[A-Za-z0-9.-]+(:\d+)?/?",
        "stack output labeling_url (Label Studio on the cluster, docs/labeling.md)",
        "http://label-studio.labeling.svc.cluster.local:8080",
    ),
}
#: Variables whose documented example is a real, usable value (every other example is a placeholder).
_EXAMPLE_IS_FINE = {"PULUMI_STACK", "LABEL_STUDIO_URL"}

#: The placeholder values of the example stack files (Pulumi.dev.yaml, Pulumi.prod.yaml), by key, with the
#: value to put in the fix command. tests/ci/test_preflight.py checks this against the `# placeholder` lines.
STACK_PLACEHOLDERS: dict[str, tuple[frozenset[str], str]] = {
    "gcp:project": (frozenset({"my-gcp-project", "my-gcp-project-prod"}), "<your project ID>"),
    "orbit:githubOwner": (frozenset({"my-github-org"}), "<owner of this repository>"),
    "orbit:githubRepositoryId": (
        frozenset({"123456789"}),
        '"$(gh api repos/<owner>/<repo> --jq .id)"',
    ),
    "orbit:workloadIdentityProvider": (
        frozenset({"projects/123456789012/locations/global/workloadIdentityPools/orbit-github/providers/github"}),
        '"$(gcloud iam workload-identity-pools providers describe github --location global '
        '--workload-identity-pool orbit-github --format \'value(name)\')"',
    ),
    "orbit:githubAppId": (frozenset({"123456"}), "<your GitHub App's ID>"),
    "orbit:githubAppInstallationId": (frozenset({"7654321"}), "<its installation ID>"),
    "orbit:billingAccount": (frozenset({"012345-6789AB-CDEF01"}), "<billing account ID>"),
    "orbit:masterAuthorizedNetworks": (frozenset({"203.0.113.0/24"}), "<your office or VPN CIDR>"),
    "orbit:serviceDomain": (frozenset({"planets.example.org"}), "<a domain you control>"),
    "orbit:alertNotificationChannels": (
        frozenset({"projects/my-gcp-project-prod/notificationChannels/1234567890"}),
        '"$(gcloud beta monitoring channels list --format \'value(name)\' --limit 1)"',
    ),
}
#: Keys CI itself overrides on every release, so their example value does no harm.
STACK_KEYS_SET_BY_CI = frozenset({"orbit:serviceImageTag"})
#: Keys that may hold their placeholder when unused: the fix also offers `pulumi config rm`.
_OPTIONAL_KEYS = frozenset(
    {
        "orbit:githubAppId",
        "orbit:githubAppInstallationId",
        "orbit:billingAccount",
        "orbit:githubRepositoryId",
        "orbit:masterAuthorizedNetworks",  # the IAM-checked DNS endpoint may be all a stack needs
        "orbit:serviceDomain",  # only public and iap stacks serve a domain (docs/edge.md)
    }
)


@dataclass(frozen=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None

    def annotation(self) -> str:
        """A GitHub `::error::` line: it shows on the run's summary page, at the file's line if known."""
        where = ""
        if self.file:
            where = f",file={self.file}" + (f",line={self.line}" if self.line else "")
        # Workflow commands end at a newline; GitHub decodes these escapes back.
        message = self.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return f"::error title=orbit configuration{where}::{message}"


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
        elif value == example and name not in _EXAMPLE_IS_FINE:
            problems.append(f"{name}={value!r} is the example from the docs: set the {source}")
    preview = env.get("PREVIEW_SERVICE_ACCOUNT", "").strip()
    deployer = env.get("DEPLOYER_SERVICE_ACCOUNT", "").strip()
    if "PREVIEW_SERVICE_ACCOUNT" in names and preview and preview == deployer:
        problems.append(
            "PREVIEW_SERVICE_ACCOUNT is the deployer: previews run a pull request's code, so they need the "
            "separate read-only account (docs/deploy.md)"
        )
    return problems


def _config_nodes(path: Path, stack: str):
    """`config:` of a stack file as {key: (node, line)}, from PyYAML's nodes (they keep line numbers)."""
    import yaml  # only for --stack: the variables check runs before anything is installed

    if not path.is_file():
        raise FileNotFoundError(
            f"{path.name} not found: create the stack (`pulumi stack init {stack}`) and commit its file, "
            "or fix PULUMI_STACK"
        )
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise ValueError(f"{path.name} is not a Pulumi stack file (no mapping at the top)")
    config = next((v for k, v in root.value if k.value == "config"), None)
    if not isinstance(config, yaml.MappingNode):
        raise ValueError(f"{path.name} has no `config:` mapping; is it a Pulumi stack file?")
    return {k.value: (v, k.start_mark.line + 1) for k, v in config.value}


def _scalars(node) -> list[str]:
    """The plain values of a scalar or a list node (a map or a `secure:` value has none to compare)."""
    if isinstance(getattr(node, "value", None), str):
        return [node.value]
    if isinstance(node.value, list) and all(isinstance(getattr(n, "value", None), str) for n in node.value):
        return [n.value for n in node.value]
    return []


def _fix(key: str, stack: str, value: str, kind: str = "scalar") -> str:
    target = f"'{key}[0]'" if kind == "list" else key
    path = "--path " if kind == "list" else ""
    command = f"`pulumi config set {path}{target} {value} --stack {stack}`"
    if key in _OPTIONAL_KEYS:
        command += f" (or `pulumi config rm {key} --stack {stack}` if you do not use it)"
    return f"{command}, then commit Pulumi.{stack}.yaml"


def check_stack_file(stack: str, root: Path, env: Mapping[str, str]) -> list[Problem]:
    """Placeholders left in Pulumi.<stack>.yaml, and a GitHub repository that is not this one."""
    path = root / f"Pulumi.{stack}.yaml"
    try:
        config = _config_nodes(path, stack)
    except (FileNotFoundError, ValueError) as exc:
        return [Problem(str(exc), path.name)]
    problems = []
    for key, (values, example) in STACK_PLACEHOLDERS.items():
        if key not in config:
            continue
        node, line = config[key]
        left = [v for v in _scalars(node) if v in values]
        if left:
            kind = "list" if isinstance(node.value, list) else "scalar"
            problems.append(
                Problem(
                    f"{key} is still the placeholder {left[0]!r} of the example stack file: set yours with "
                    + _fix(key, stack, example, kind),
                    path.name,
                    line,
                )
            )
    problems += _invalid(stack, root, config, path)
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if "/" in repository:
        problems += _compare_repository(config, repository, env.get("GITHUB_REPOSITORY_ID", ""), stack, path)
    return problems


def _invalid(stack: str, root: Path, config: dict, path: Path) -> list[Problem]:
    """What `pulumi up` would refuse in the file, each with its fix (infra/config.py owns every rule)."""
    from infra.config import ConfigError, from_stack_file  # pydantic: only for --stack

    try:
        from_stack_file(stack, root)
    except ConfigError as error:
        return [Problem(f"{key}: {message} (fix: `{fix} --stack {stack}`)", path.name,
                        config.get(key, (None, None))[1])
                for (key, message), fix in zip(error.problems, error.fixes, strict=True)]
    return []


def _compare_repository(config: dict, repository: str, repository_id: str, stack: str, path: Path):
    owner, repo = repository.split("/", 1)
    expected = {"orbit:githubOwner": owner, "orbit:githubRepo": repo}
    if repository_id.strip():
        expected["orbit:githubRepositoryId"] = repository_id.strip()
    problems = []
    for key, want in expected.items():
        if key not in config:
            continue
        node, line = config[key]
        have = _scalars(node)
        placeholder = STACK_PLACEHOLDERS.get(key, (frozenset(), ""))[0]
        # Exact, case included: the provider's condition is `assertion.repository == 'owner/repo'`.
        if have and have[0] not in placeholder and have[0] != want:
            problems.append(
                Problem(
                    f"{key} is {have[0]!r}, but this workflow runs in {repository}: the Workload Identity "
                    f"provider admits only the repository the stack names. Fix it with "
                    + _fix(key, stack, want),
                    path.name,
                    line,
                )
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="repository variables to check")
    parser.add_argument("--stack", help="also check Pulumi.STACK.yaml for placeholders and the repository")
    parser.add_argument("--root", type=Path, default=Path("."), help="where the stack files are (default .)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.names and args.stack is None:
        print("usage: python -m ci.preflight [--stack STACK] NAME [NAME ...]", file=sys.stderr)
        return 2
    problems = [Problem(f"{p} (see {DOCS})") for p in check(args.names, os.environ)]
    if args.stack is not None:
        if re.fullmatch(VARIABLES["PULUMI_STACK"][0], args.stack):
            problems += check_stack_file(args.stack, args.root, os.environ)
        else:
            problems.append(Problem(f"--stack {args.stack!r} is not a stack name (letters, digits, _ . -)"))
    for problem in problems:
        print(problem.annotation())
    if problems:
        return 1
    checked = ", ".join([*args.names, *([f"Pulumi.{args.stack}.yaml"] if args.stack else [])])
    print(f"preflight: ok: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
