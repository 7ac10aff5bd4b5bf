"""Check that the workflows only call things that exist, and keep orbit's workflow rules.

A workflow that calls `make deploy-image` or `python -m ci.smok` fails only on GitHub, after a merge; this
catches it in `make test`. It reads every `run:` block of `.github/workflows/*.yml` and checks:

- each `make TARGET` names a target of the Makefile;
- each `python -m PKG.MOD` of a repository package (ci, ml, serving, infra, local) has its module file;
- each path under `ci/` that a step runs exists;
- each `uses:` outside the repository is pinned to a full 40-hex commit SHA with a `# vX.Y.Z` comment;
- the workflow sets `permissions: {}` at the top and every job sets its own `permissions:`.

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

LOCAL_PACKAGES = ("ci", "ml", "serving", "infra", "local")
_PUNCTUATION = ";&|()\n"
_SHELL_WORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "env", "{", "}"}
_MAKE_OPTIONS_WITH_VALUE = {"-C", "-f", "-o", "-W", "-I", "--directory", "--file"}
_RULE = re.compile(r"^([A-Za-z0-9_.%/-]+(?:[ \t]+[A-Za-z0-9_.%/-]+)*)[ \t]*::?(?!=)")
_USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
_PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}\b")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    make_targets: set[str] = field(default_factory=set)
    modules: set[str] = field(default_factory=set)
    run_blocks: int = 0
    uses: int = 0

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


def check_run(script: str, where: str, root: Path, targets: set[str], report: Report) -> None:
    report.run_blocks += 1
    try:
        parsed = commands(script)
    except ValueError as exc:
        report.add(where, str(exc))
        return
    for words in parsed:
        name = Path(words[0]).name
        if name == "make":
            for goal in _make_goals(words[1:]):
                report.make_targets.add(goal)
                if goal.startswith("$"):
                    report.add(where, f"`make {goal}`: a target from a variable cannot be checked; name it")
                elif goal not in targets:
                    report.add(where, f"`make {goal}`: no such target in the Makefile")
        if re.fullmatch(r"python(3(\.\d+)?)?", name) and len(words) > 2 and words[1] == "-m":
            module = words[2]
            if module.split(".")[0] in LOCAL_PACKAGES:
                report.modules.add(module)
                if not _module_exists(root, module):
                    report.add(where, f"`python -m {module}`: no module file {module.replace('.', '/')}.py")
        for word in words:
            path = word[2:] if word.startswith("./") else word
            if path.startswith("ci/") and not (root / path).exists():
                report.add(where, f"`{word}`: no such file")


def check_uses_lines(text: str, name: str, report: Report) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        match = _USES_LINE.match(line)
        if not match:
            continue
        report.uses += 1
        ref = match.group("ref").strip("'\"")
        if ref.startswith(("./", "docker://")):
            continue
        if not _PINNED.fullmatch(ref):
            report.add(f"{name}:{number}", f"`uses: {ref}` must be pinned to a full 40-hex commit SHA")
        elif not _VERSION_COMMENT.match(match.group("comment") or ""):
            report.add(
                f"{name}:{number}", f"`uses: {ref}` needs a `# vX.Y.Z` comment naming the pinned release"
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
    for job_id, job in data["jobs"].items():
        where = f"{path.name}:{job_id}"
        if not isinstance(job, dict):
            report.add(where, "job must be a mapping")
            continue
        if "permissions" not in job:
            report.add(where, "job has no `permissions:`; list exactly what it needs ({} for nothing)")
        for index, step in enumerate(job.get("steps") or []):
            if isinstance(step, dict) and isinstance(step.get("run"), str):
                label = step.get("name") or step.get("id") or f"step {index + 1}"
                check_run(step["run"], f"{where}:{label}", root, targets, report)


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
    if report.problems:
        print(f"check_workflows: {len(report.problems)} problem(s) in {summary}")
        return 1
    print(f"check_workflows: ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
