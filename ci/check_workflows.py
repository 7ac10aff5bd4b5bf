"""Check that the workflows only call things that exist, and keep orbit's workflow rules.

A workflow that calls `make deploy-image` or `python -m ci.smok` fails only on GitHub, after a merge; this
catches it in `make test`. Generic hygiene (SHA pins, template injection, persisted checkout credentials,
broad permissions) belongs to zizmor and the workflow schema (tests/ci/test_workflows.py); this keeps orbit's.
It reads every `run:` block of `.github/workflows/*.yml` and checks:

- each `make TARGET` names a target of the Makefile;
- each `python -m PKG.MOD` of a repository package (ci, ml, serving, infra, local) has its module file;
- each path under `ci/` that a step runs exists;
- each `uses:` pinned to a commit SHA names its release in a `# vX.Y.Z` comment;
- the workflow sets `permissions: {}` at the top and every job sets its own `permissions:`;
- a job that may run on a self-hosted runner (`runs-on` from a variable, or not a GitHub-hosted label) calls
  no `make` (the runner image has none) and gets Python from actions/setup-python before it runs any;
- each job authenticates to Google as one of orbit's four identities, at most one per job; `pulumi preview`
  (and reading the stack's history or outputs) runs as PREVIEW_SERVICE_ACCOUNT or DEPLOYER_SERVICE_ACCOUNT,
  anything that changes the stack (`up`, `destroy`, `refresh`, ...) only as the deployer; the deployer is
  never used by a job that can run on a pull request; a job using the deployer or the preview account
  declares the `environment:` its WIF binding admits; a job that runs `pulumi` runs on INFRA_RUNNER.

    python -m ci.check_workflows            # from the repository root; exit 1 lists every problem
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LOCAL_PACKAGES = ("ci", "ml", "serving", "infra", "local", "monitor")
_PUNCTUATION = ";&|()\n"
_SHELL_WORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "env", "{", "}"}
_MAKE_OPTIONS_WITH_VALUE = {"-C", "-f", "-o", "-W", "-I", "--directory", "--file"}
_RULE = re.compile(r"^([A-Za-z0-9_.%/-]+(?:[ \t]+[A-Za-z0-9_.%/-]+)*)[ \t]*::?(?!=)")
_USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
_SHA_PINNED = re.compile(r"@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}\b")
#: Google identities a job may authenticate as (docs/cicd.md#identities), by repository variable.
CI_IDENTITY = "CI_SERVICE_ACCOUNT"
DEPLOYER_IDENTITY = "DEPLOYER_SERVICE_ACCOUNT"
PREVIEW_IDENTITY = "PREVIEW_SERVICE_ACCOUNT"
#: Reads the prediction log (the data bucket's monitoring/ prefix) for the drift check; nothing else.
MONITOR_IDENTITY = "MONITOR_SERVICE_ACCOUNT"
IDENTITIES = (CI_IDENTITY, DEPLOYER_IDENTITY, PREVIEW_IDENTITY, MONITOR_IDENTITY)
#: Identities whose Workload Identity binding admits only jobs of one GitHub environment.
ENVIRONMENT_BOUND = (DEPLOYER_IDENTITY, PREVIEW_IDENTITY, MONITOR_IDENTITY)
_VARS_REF = re.compile(r"^\$\{\{\s*vars\.([A-Za-z0-9_]+)\s*\}\}$")
#: `pulumi` subcommands that never touch a stack, its state or the cloud.
_PULUMI_OFFLINE = {"version", "--version", "help", "--help", "about", "gen-completion"}
#: `pulumi` commands that only read the stack: the read-only preview identity may run them.
PULUMI_READ_ONLY = frozenset(
    {
        "pulumi preview",
        "pulumi login",
        "pulumi logout",
        "pulumi whoami",
        "pulumi stack history",
        "pulumi stack output",
        "pulumi stack ls",
        "pulumi stack select",
        "pulumi config get",
    }
)
#: Subcommands whose own subcommand decides what they do (`pulumi stack output` reads, `stack rm` deletes).
_PULUMI_GROUPS = {"stack", "config", "state", "plugin", "policy"}
#: Where every job that runs `pulumi` runs: prod admits only authorized networks to the control plane.
INFRA_RUNS_ON = "${{ vars.INFRA_RUNNER || 'ubuntu-latest' }}"
_HOSTED_LABEL = re.compile(r"^(ubuntu|windows|macos)-[A-Za-z0-9._-]+$")
_PR_EVENTS = {"pull_request", "pull_request_target"}
_SETUP_PYTHON = "actions/setup-python@"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    make_targets: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    run_blocks: int = 0
    uses: int = 0
    #: "file:job" -> the repository variable of the Google identity it authenticates as ("" for none)
    identities: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def make_targets(makefile: Path) -> set[str]:
    """Rule names of the Makefile (explicit rules; pattern rules and variables are ignored)."""
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        if line.startswith(("\t", "#", " ")):
            continue
        match = _RULE.match(line)
        if match:
            targets.update(t for t in match.group(1).split() if "%" not in t and not t.startswith("."))
    return targets


def _substitutions(word: str) -> list[str]:
    """The bodies of the `$( ... )` in a word; nested ones are found when those bodies are parsed."""
    found, start = [], word.find("$(")
    while start != -1:
        depth, index = 0, start + 1
        while index < len(word):
            depth += {"(": 1, ")": -1}.get(word[index], 0)
            if depth == 0:
                break
            index += 1
        found.append(word[start + 2 : index])
        start = word.find("$(", index)
    return found


def commands(script: str) -> list[list[str]]:
    """Simple commands of a shell script (words only), split at ; & | ( ) and newlines."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    result: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and all(ch in _PUNCTUATION for ch in token):
                result.append([])
            else:
                result[-1].append(token)
    except ValueError as exc:
        raise ValueError(f"cannot parse shell: {exc}") from None
    # Command substitutions inside quotes ("tag=$(python -m ci.x)") stay one word to shlex: parse them too.
    for words in list(result):
        for word in words:
            for inner in _substitutions(word):
                result.extend(commands(inner))
    cleaned = []
    for words in result:
        while words and (words[0] in _SHELL_WORDS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
            words = words[1:]
        if words:
            cleaned.append(words)
    return cleaned


def _make_goals(args: list[str]) -> list[str]:
    goals, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in _MAKE_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.startswith("-") or "=" in arg:
            continue
        else:
            goals.append(arg)
    return goals


def _module_exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return (
        path.with_suffix(".py").is_file()
        or (path / "__init__.py").is_file()
        or (path / "__main__.py").is_file()
    )


def pulumi_commands(parsed: list[list[str]]) -> list[str]:
    """`pulumi SUBCOMMAND` of each simple command that needs the stack (its state, the cloud)."""
    found = []
    for words in parsed:
        if Path(words[0]).name == "pulumi":
            subs = [w for w in words[1:] if not w.startswith("-")]
            sub = subs[0] if subs else ""
            if sub not in _PULUMI_OFFLINE and not set(words[1:]) & {"--version", "--help"}:
                if sub in _PULUMI_GROUPS and len(subs) > 1:
                    sub = f"{sub} {subs[1]}"
                found.append(f"pulumi {sub}".strip())
    return found


def check_run(script: str, where: str, root: Path, targets: set[str], report: Report) -> list[list[str]]:
    """Check one `run:` block; returns its simple commands for the job-level rules."""
    report.run_blocks += 1
    try:
        parsed = commands(script)
    except ValueError as exc:
        report.add(where, str(exc))
        return []
    for words in parsed:
        name = Path(words[0]).name
        if name == "make":
            for goal in _make_goals(words[1:]):
                report.make_targets.add(goal)
                if goal.startswith("$"):
                    report.add(where, f"`make {goal}`: a target from a variable cannot be checked; name it")
                elif goal not in targets:
                    report.add(where, f"`make {goal}`: no such target in the Makefile")
        if _is_python(name) and len(words) > 2 and words[1] == "-m":
            module = words[2]
            if module.split(".")[0] in LOCAL_PACKAGES:
                report.modules.add(module)
                if not _module_exists(root, module):
                    report.add(where, f"`python -m {module}`: no module file {module.replace('.', '/')}.py")
        for word in words:
            path = word[2:] if word.startswith("./") else word
            if path.startswith("ci/") and not (root / path).exists():
                report.add(where, f"`{word}`: no such file")
    return parsed


def _is_python(name: str) -> bool:
    return re.fullmatch(r"python(3(\.\d+)?)?", name) is not None


def check_uses_lines(text: str, name: str, report: Report) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        match = _USES_LINE.match(line)
        if not match:
            continue
        report.uses += 1
        ref = match.group("ref").strip("'\"")
        # Whether it is pinned at all is zizmor's unpinned-uses; offline, zizmor does not read the comment.
        if _SHA_PINNED.search(ref) and not _VERSION_COMMENT.match(match.group("comment") or ""):
            report.add(
                f"{name}:{number}", f"`uses: {ref}` needs a `# vX.Y.Z` comment naming the pinned release"
            )


def triggers(data: dict) -> set[str]:
    """The events a workflow runs on (YAML 1.1 reads the key `on` as True)."""
    on = data.get("on", data.get(True))
    if isinstance(on, str):
        return {on}
    return set(on) if isinstance(on, list | dict) else set()


def may_run_on_pull_request(job: dict, events: set[str]) -> bool:
    """Whether the job can run for a pull request; conservative: only a plain `event_name ==` rules it out."""
    if not events & _PR_EVENTS:
        return False
    condition = str(job.get("if", ""))
    required = re.findall(r"github\.event_name\s*==\s*'([a-z_]+)'", condition)
    return not (required and "||" not in condition and not set(required) & _PR_EVENTS)


def may_run_self_hosted(job: dict) -> bool:
    """True unless `runs-on` is a literal GitHub-hosted label: a variable may name a runner scale set."""
    runs_on = job.get("runs-on")
    return not (isinstance(runs_on, str) and _HOSTED_LABEL.fullmatch(runs_on))


def check_runner(job: dict, where: str, steps: list[tuple[dict, list[list[str]]]], report: Report) -> None:
    """Self-hosted runners (ghcr.io/actions/actions-runner) have git, but neither make nor Python."""
    if not may_run_self_hosted(job):
        return
    has_python = False
    for step, parsed in steps:
        if str(step.get("uses", "")).startswith(_SETUP_PYTHON):
            has_python = True
        for words in parsed:
            name = Path(words[0]).name
            if name == "make":
                report.add(
                    where,
                    f"`{' '.join(words)}` on `runs-on: {job.get('runs-on')}`, which may be a self-hosted "
                    "runner without make: run the commands the target runs",
                )
            elif _is_python(name) and not has_python and "/" not in words[0]:
                report.add(
                    where,
                    f"runs `{name}` on `runs-on: {job.get('runs-on')}` before actions/setup-python: the "
                    "runner image has no Python",
                )


def check_workflow(path: Path, root: Path, targets: set[str], report: Report) -> None:
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        report.add(path.name, f"not valid YAML: {exc}")
        return
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
        report.add(path.name, "no jobs: mapping")
        return
    check_uses_lines(text, path.name, report)
    if data.get("permissions") != {}:
        report.add(path.name, "top-level `permissions: {}` is required; grant what each job needs on the job")
    events = triggers(data)
    for job_id, job in data["jobs"].items():
        where = f"{path.name}:{job_id}"
        if not isinstance(job, dict):
            report.add(where, "job must be a mapping")
            continue
        if "permissions" not in job:
            report.add(where, "job has no `permissions:`; list exactly what it needs ({} for nothing)")
        pulumi: list[str] = []
        steps: list[tuple[dict, list[list[str]]]] = []
        for index, step in enumerate(job.get("steps") or []):
            if not isinstance(step, dict):
                continue
            parsed: list[list[str]] = []
            if isinstance(step.get("run"), str):
                label = step.get("name") or step.get("id") or f"step {index + 1}"
                parsed = check_run(step["run"], f"{where}:{label}", root, targets, report)
                pulumi += pulumi_commands(parsed)
            steps.append((step, parsed))
            command = (step.get("with") or {}).get("command")  # pulumi/actions can run `up` itself
            if str(step.get("uses", "")).startswith("pulumi/actions@") and command:
                pulumi.append(f"pulumi {command}")
        check_runner(job, where, steps, report)
        check_identity(job, where, pulumi, report, on_pull_request=may_run_on_pull_request(job, events))


def google_identities(job: dict) -> list[str]:
    """The `service_account:` of each google-github-actions/auth step, as the variable's name if it is one."""
    found = []
    for step in job.get("steps") or []:
        if isinstance(step, dict) and str(step.get("uses", "")).startswith("google-github-actions/auth@"):
            account = str((step.get("with") or {}).get("service_account", ""))
            match = _VARS_REF.match(account.strip())
            found.append(match.group(1) if match else account)
    return found


def check_identity(
    job: dict, where: str, pulumi: list[str], report: Report, on_pull_request: bool = False
) -> None:
    """One known identity per job; the stack changed only by the deployer, never for a pull request."""
    identities = google_identities(job)
    for account in identities:
        if account not in IDENTITIES:
            report.add(
                where,
                f"authenticates as `{account}`, not a known identity: use "
                + " or ".join(f"`${{{{ vars.{name} }}}}`" for name in IDENTITIES),
            )
    if len(set(identities)) > 1:
        report.add(where, f"authenticates as {' and '.join(sorted(set(identities)))}: one identity per job")
    identity = identities[-1] if identities else ""
    report.identities[where] = identity
    if pulumi:
        changes = [c for c in dict.fromkeys(pulumi) if c not in PULUMI_READ_ONLY]
        runs = ", ".join(f"`{c}`" for c in dict.fromkeys(pulumi))
        allowed = (DEPLOYER_IDENTITY,) if changes else (PREVIEW_IDENTITY, DEPLOYER_IDENTITY)
        if not identities:
            names = " or ".join(allowed)
            report.add(where, f"runs {runs} without Google credentials: authenticate as {names}")
        elif identity not in allowed:
            if identity == PREVIEW_IDENTITY:
                what = f"is read-only: {', '.join(f'`{c}`' for c in changes)} change the stack"
            elif changes:
                what = "may not change the stack (the update would fail with 403 halfway)"
            else:
                what = "may not read the stack's state"
            use = " or ".join(f"`${{{{ vars.{name} }}}}`" for name in allowed)
            report.add(where, f"runs {runs} as {identity}, which {what}: authenticate as {use}")
        if job.get("runs-on") != INFRA_RUNS_ON:
            report.add(
                where,
                f"runs {runs} on `{job.get('runs-on')}`: use `runs-on: {INFRA_RUNS_ON}`, prod's control "
                "plane admits only orbit:masterAuthorizedNetworks",
            )
    if on_pull_request and DEPLOYER_IDENTITY in identities:
        report.add(
            where,
            f"uses {DEPLOYER_IDENTITY} in a job that can run on a pull request, whose code is not reviewed "
            f"yet: use {PREVIEW_IDENTITY} for previews",
        )
    for account in dict.fromkeys(a for a in identities if a in ENVIRONMENT_BOUND):
        if not job.get("environment"):
            report.add(
                where,
                f"uses {account} without an `environment:`; its Workload Identity binding admits only "
                "jobs of its protected environment (docs/deploy.md)",
            )


def check(root: Path) -> Report:
    report = Report()
    workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    if not workflows:
        report.add(str(root), "no workflows under .github/workflows")
        return report
    makefile = root / "Makefile"
    targets = make_targets(makefile) if makefile.is_file() else set()
    for path in workflows:
        check_workflow(path, root, targets, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ci.check_workflows", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default .)")
    args = parser.parse_args(argv)
    report = check(args.root)
    for problem in report.problems:
        print(f"  {problem}")
    targets = ", ".join(sorted(report.make_targets)) or "none"
    modules = ", ".join(sorted(report.modules)) or "none"
    summary = f"{report.run_blocks} run blocks, {report.uses} actions; make: {targets}; modules: {modules}"
    for job, identity in report.identities.items():
        print(f"  {job}: Google identity {identity or 'none'}")
    if report.problems:
        print(f"check_workflows: {len(report.problems)} problem(s) in {summary}")
        return 1
    print(f"check_workflows: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
