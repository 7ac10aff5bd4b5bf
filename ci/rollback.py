"""Which image tag is live, and which one to roll back to when a release does not answer.

The deploy workflow passes the tag to `pulumi up -c orbit:serviceImageTag=TAG -c orbit:serviceEnabled=true`
and never commits it, so the stack's update history is the record of releases: each successful `update`
with `orbit:serviceEnabled` true carries the tag it served in its config, and a rollback's message
(`rollback BAD -> GOOD`) marks BAD as a release that failed, so a second rollback never returns to it.
An update with the service disabled, or whose config names no enabled key (the first `pulumi up` of a stack,
before any image exists), served nothing: its tag is never "live" and never a
rollback target. `live-config` prints the live values (tag, digest, enabled) for a hand-run `pulumi up`; the
program itself keeps the live image on an update that names none (infra/live.py).

    pulumi stack history --json > history.json           # never --show-secrets: the file stays harmless
    python -m ci.rollback current --history history.json   # the live tag ('' before the first deploy)
    python -m ci.rollback live-config --history history.json   # KEY=VALUE lines for `pulumi up --config`
    python -m ci.rollback target --history history.json --failed "$GITHUB_SHA"
    python -m ci.rollback target --config ...              # KEY=VALUE lines: tag, digest, enabled=true

A plain list works too (a JSON array or one tag per line, newest first), for a registry listing or a
hand-kept file; then `--bad TAG` marks releases known to be broken.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_KEY = "orbit:serviceImageTag"
#: The digest of that tag, as the build resolved it; the cluster pulls the digest (infra/live.py).
DIGEST_KEY = "orbit:serviceImageDigest"
#: The other key the deploy workflow sets (infra/config.py: false until the first image is pushed).
ENABLED_KEY = "orbit:serviceEnabled"
ROLLBACK_MESSAGE = "rollback {bad} -> {good}"
_ROLLBACK_RE = re.compile(r"\brollback (\S+) -> (\S+)")
#: An OCI tag: what Artifact Registry and `docker push` accept; also keeps shell and YAML output safe.
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


class HistoryError(ValueError):
    """The history cannot be read or holds no usable release; the message says what to do."""


@dataclass(frozen=True)
class Release:
    tag: str
    succeeded: bool = True
    version: int | None = None
    message: str = ""
    #: `orbit:serviceEnabled` of the update ("true"/"false"); None for a plain list, which names served tags.
    enabled: str | None = None
    #: `orbit:serviceImageDigest` of the update (None before digests were recorded, or for a plain list).
    digest: str | None = None

    @property
    def served(self) -> bool:
        """The update succeeded with the service on: this tag really answered requests."""
        return self.succeeded and self.enabled in (None, "true")


def valid_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise HistoryError(f"{tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; max 128)")
    return tag


def valid_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise HistoryError(f"{digest!r} is not an image digest (sha256: and 64 hex digits)")
    return digest


def release_config(release: Release, key: str = DEFAULT_KEY) -> dict[str, str]:
    """The `pulumi up --config` values that serve `release` again: its tag, its digest, service on."""
    if release.digest is None:
        raise HistoryError(f"release {release.tag} has no recorded {DIGEST_KEY}; pass it by hand "
                           f"(gcloud artifacts docker images describe REGISTRY/IMAGE:{release.tag})")
    return {key: release.tag, DIGEST_KEY: release.digest, ENABLED_KEY: "true"}


def _from_pulumi(entries: list[dict], key: str) -> tuple[list[Release], set[str]]:
    releases: list[Release] = []
    bad: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or "kind" not in entry:
            raise HistoryError(
                "history entries must be objects with 'kind', as `pulumi stack history --json`"
            )
        message = entry.get("message") or ""
        if match := _ROLLBACK_RE.search(message):
            bad.add(match.group(1))  # the release failed, whether or not rolling it back worked
        if entry["kind"] != "update":
            continue
        config = entry.get("config") or {}
        value = (config.get(key) or {}).get("value")
        if value is None:
            continue  # an update from before the first deploy
        enabled = (config.get(ENABLED_KEY) or {}).get("value")
        digest = (config.get(DIGEST_KEY) or {}).get("value")
        releases.append(
            Release(
                tag=valid_tag(value),
                succeeded=entry.get("result") == "succeeded",
                version=entry.get("version"),
                message=message,
                # absent: the stack's default, false until the first image exists (infra/config.py)
                enabled="false" if enabled is None else str(enabled).strip().lower(),
                digest=valid_digest(digest) if digest else None,
            )
        )
    # `pulumi stack history` lists newest first; sort by version anyway so a merged file cannot mislead.
    if all(r.version is not None for r in releases):
        releases.sort(key=lambda r: r.version, reverse=True)
    return releases, bad


def parse_history(text: str, key: str = DEFAULT_KEY) -> tuple[list[Release], set[str]]:
    """Releases newest first, and the tags that a recorded rollback marked as bad."""
    stripped = text.strip()
    if not stripped:
        return [], set()
    if stripped[0] in "[{" or stripped == "null":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"history is not valid JSON: {exc}") from None
        if data is None:  # a stack that was never updated
            return [], set()
        if isinstance(data, dict):
            data = [data]
        if all(isinstance(item, str) for item in data):
            return [Release(tag=valid_tag(t)) for t in data], set()
        return _from_pulumi(data, key)
    lines = [line.split("#", 1)[0].strip() for line in stripped.splitlines()]
    return [Release(tag=valid_tag(t)) for t in lines if t], set()


def current_tag(releases: list[Release]) -> str | None:
    """The tag of the newest update that served it: what the stack answers with now (None: nothing yet)."""
    return next((r.tag for r in releases if r.served), None)


def live_config(releases: list[Release], key: str = DEFAULT_KEY) -> dict[str, str]:
    """The deploy-owned config of the newest successful update, to re-apply on an infrastructure change.

    Switched off stays off: a disabled newest update re-applies `orbit:serviceEnabled=false`.
    """
    newest = next((r for r in releases if r.succeeded), None)
    if newest is None:
        return {}
    config = {key: newest.tag}
    if newest.digest is not None:
        config[DIGEST_KEY] = newest.digest
    if newest.enabled is not None:
        config[ENABLED_KEY] = newest.enabled
    return config


def rollback_target(releases: list[Release], failed: str, bad: set[str] = frozenset()) -> str:
    """The newest tag that was served, and is neither the failed one nor known bad."""
    return rollback_release(releases, failed, bad).tag


def rollback_release(releases: list[Release], failed: str, bad: set[str] = frozenset()) -> Release:
    """The newest release that was served, and is neither the failed one nor known bad."""
    excluded = {failed, *bad}
    for release in releases:
        if release.served and release.tag not in excluded:
            return release
    seen = ", ".join(dict.fromkeys(r.tag for r in releases if r.served)) or "none"
    raise HistoryError(
        f"no earlier good release to roll back to (releases that served: {seen}; excluded: "
        f"{', '.join(sorted(excluded))}); fix forward or deploy a known tag by hand"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.rollback", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands = (
        ("current", "print the live tag"),
        ("live-config", "print KEY=VALUE lines of the live deploy config"),
        ("target", "print the tag to roll back to"),
    )
    for name, text in commands:
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--history", type=Path, required=True, help="pulumi stack history --json, or a list")
        cmd.add_argument(
            "--key", default=DEFAULT_KEY, help=f"config key holding the tag (default {DEFAULT_KEY})"
        )
    target = sub.choices["target"]
    target.add_argument("--failed", required=True, help="the tag that failed its smoke test")
    target.add_argument("--bad", action="append", default=[], help="another tag never to return to")
    target.add_argument("--config", action="store_true",
                        help="print KEY=VALUE lines (tag, digest, enabled) for `pulumi up --config`")
    args = parser.parse_args(argv)
    if not args.history.is_file():
        print(
            f"rollback: {args.history} not found; write it with `pulumi stack history --json`",
            file=sys.stderr,
        )
        return 2
    try:
        releases, bad = parse_history(args.history.read_text(), args.key)
        if args.command == "current":
            tag = current_tag(releases)
            print(f"rollback: live tag: {tag or 'none (nothing deployed yet)'}", file=sys.stderr)
            print(tag or "")
            return 0
        if args.command == "live-config":
            for name, value in live_config(releases, args.key).items():
                print(f"{name}={value}")
            return 0
        release = rollback_release(releases, valid_tag(args.failed), bad | set(args.bad))
        lines = ([f"{k}={v}" for k, v in release_config(release, args.key).items()] if args.config
                 else [release.tag])
    except HistoryError as exc:
        print(f"rollback: {exc}", file=sys.stderr)
        return 1
    print(f"rollback: {args.failed} failed; rolling back to {release.tag}", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
