"""ci.rollback: the live tag and the rollback target, from `pulumi stack history --json` or a plain list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import rollback
from ci.rollback import HistoryError, current_tag, live_config, parse_history, rollback_target

KEY = "orbit:serviceImageTag"
#: Shaped like `pulumi stack history --json` of a dev stack (newest first): the first `pulumi up` by hand with
#: the service off and the example stack file's placeholder tag 0.1.0, two releases by the deploy workflow,
#: an infra update that re-applied the live tag, and a refresh in between.
REAL_HISTORY = (Path(__file__).parent / "fixtures" / "stack-history.json").read_text()
LIVE, EARLIER = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d", "9f3c2d1e0b4a5968778695a4b3c2d1e0f9a8b7c6"


def update(
    version: int,
    tag: str | None,
    result: str = "succeeded",
    message: str = "",
    kind: str = "update",
    enabled: bool | None = True,
) -> dict:
    """One entry shaped like `pulumi stack history --json` (newest first in the real output)."""
    config = {
        "gcp:project": {"value": "my-project", "secret": False},
        "orbit:githubAppPrivateKey": {"secret": True},
    }
    if tag is not None:
        config[KEY] = {"value": tag, "secret": False}
    if enabled is not None:
        config["orbit:serviceEnabled"] = {"value": str(enabled).lower(), "secret": False}
    return {
        "kind": kind,
        "startTime": "2026-01-01T00:00:00Z",
        "message": message,
        "environment": {},
        "config": config,
        "result": result,
        "version": version,
    }


HISTORY = [  # newest first
    update(7, "ccc3333", message="deploy ccc3333"),  # live now
    update(6, "bbb2222", message="rollback ddd4444 -> bbb2222"),
    update(5, "ddd4444", message="deploy ddd4444"),  # smoke test failed
    update(4, "bbb2222", message="deploy bbb2222"),
    update(3, "eee5555", result="failed", message="deploy eee5555"),
    update(2, "aaa1111", message="deploy aaa1111"),
    update(1, None, message="bootstrap", enabled=False),
]


def test_target_skips_the_failed_release_and_one_rolled_back_before():
    releases, bad = parse_history(json.dumps(HISTORY))
    assert bad == {"ddd4444"}
    assert rollback_target(releases, failed="ccc3333", bad=bad) == "bbb2222"


def test_target_never_returns_to_a_release_whose_update_failed():
    releases, bad = parse_history(json.dumps(HISTORY))
    assert rollback_target(releases, failed="ccc3333", bad=bad | {"bbb2222"}) == "aaa1111"


def test_failed_pulumi_up_rolls_back_to_what_is_live():
    history = [update(9, "fff6666", result="failed", message="deploy fff6666"), *HISTORY]
    releases, bad = parse_history(json.dumps(history))
    assert current_tag(releases) == "ccc3333"
    assert rollback_target(releases, failed="fff6666", bad=bad) == "ccc3333"


def test_order_comes_from_the_version_not_the_file():
    releases, _ = parse_history(json.dumps(list(reversed(HISTORY))))
    assert current_tag(releases) == "ccc3333"


def test_previews_and_refreshes_are_not_releases():
    history = [update(9, "zzz9999", kind="preview"), update(8, "yyy8888", kind="refresh"), *HISTORY]
    releases, _ = parse_history(json.dumps(history))
    assert current_tag(releases) == "ccc3333"


def test_nothing_to_roll_back_to_is_a_clear_error():
    releases, bad = parse_history(json.dumps([update(1, "aaa1111")]))
    with pytest.raises(HistoryError, match="no earlier good release.*fix forward"):
        rollback_target(releases, failed="aaa1111", bad=bad)


def test_real_history_gives_the_live_tag_and_the_release_before_it():
    releases, bad = parse_history(REAL_HISTORY)
    assert current_tag(releases) == LIVE
    assert rollback_target(releases, failed=LIVE, bad=bad) == EARLIER
    assert live_config(releases) == {KEY: LIVE, "orbit:serviceEnabled": "true"}


def test_the_first_update_with_the_service_off_is_never_live_nor_a_rollback_target():
    entries = json.loads(REAL_HISTORY)
    bootstrap = entries[-1]
    assert bootstrap["config"]["orbit:serviceEnabled"]["value"] == "false"
    assert bootstrap["config"][KEY]["value"] == "0.1.0"  # the placeholder of the example stack file
    releases, bad = parse_history(json.dumps([bootstrap]))
    assert current_tag(releases) is None
    assert live_config(releases) == {KEY: "0.1.0", "orbit:serviceEnabled": "false"}  # stays off
    # The very first release fails its smoke test: nothing served before it, nothing to go back to.
    first = {**entries[-2], "version": 2}
    releases, bad = parse_history(json.dumps([first, bootstrap]))
    with pytest.raises(HistoryError, match="no earlier good release.*releases that served: 9f3c2d1"):
        rollback_target(releases, failed=EARLIER, bad=bad)


def test_an_update_without_the_enabled_key_served_nothing():
    """orbit:serviceEnabled defaults to false (infra/config.py): an update without it served nothing."""
    history = [
        update(3, "ccc3333", message="deploy ccc3333"),
        update(2, "bbb2222", enabled=None),
        update(1, "aaa1111", message="deploy aaa1111"),
    ]
    releases, _ = parse_history(json.dumps(history))
    assert rollback_target(releases, failed="ccc3333") == "aaa1111"
    releases, _ = parse_history(json.dumps(history[1:]))
    assert current_tag(releases) == "aaa1111"


def test_a_service_switched_off_later_keeps_its_last_served_tag_as_target_and_stays_off():
    history = [update(8, "bbb2222", enabled=False, message="switch off"), *HISTORY]
    releases, bad = parse_history(json.dumps(history))
    assert current_tag(releases) == "ccc3333"
    assert live_config(releases) == {KEY: "bbb2222", "orbit:serviceEnabled": "false"}
    assert rollback_target(releases, failed="ddd9999", bad=bad) == "ccc3333"


def test_live_config_re_applies_tag_and_enabled_of_the_live_release():
    releases, _ = parse_history(json.dumps(HISTORY))
    assert live_config(releases) == {KEY: "ccc3333", "orbit:serviceEnabled": "true"}
    releases, _ = parse_history(json.dumps([update(1, None, enabled=False)]))
    assert live_config(releases) == {}  # never deployed: the stack file decides


@pytest.mark.parametrize("empty", ["", "[]", "null"])
def test_a_stack_never_updated_has_no_live_tag(empty: str):
    releases, bad = parse_history(empty)
    assert releases == [] and bad == set() and current_tag(releases) is None


def test_plain_lists_newest_first():
    releases, _ = parse_history("v3\n# a comment\nv2  # broken\nv1\n")
    assert rollback_target(releases, failed="v3") == "v2"
    assert rollback_target(releases, failed="v3", bad={"v2"}) == "v1"
    releases, _ = parse_history('["v3", "v2"]')
    assert rollback_target(releases, failed="v3") == "v2"


def test_unsafe_tags_are_refused():
    with pytest.raises(HistoryError, match="not a valid image tag"):
        parse_history("good\n$(rm -rf ~)\n")
    with pytest.raises(HistoryError, match="not a valid image tag"):
        parse_history(json.dumps([update(1, "a b")]))
    with pytest.raises(HistoryError, match="not valid JSON"):
        parse_history("[{")


def test_cli(tmp_path: Path, capsys):
    history = tmp_path / "history.json"
    history.write_text(json.dumps(HISTORY))
    assert rollback.main(["target", "--history", str(history), "--failed", "ccc3333"]) == 0
    assert capsys.readouterr().out == "bbb2222\n"
    assert rollback.main(["current", "--history", str(history)]) == 0
    assert capsys.readouterr().out == "ccc3333\n"
    assert rollback.main(["live-config", "--history", str(history)]) == 0
    assert capsys.readouterr().out == "orbit:serviceImageTag=ccc3333\norbit:serviceEnabled=true\n"
    assert (
        rollback.main(["target", "--history", str(history), "--failed", "ccc3333", "--bad", "bbb2222"]) == 0
    )
    assert capsys.readouterr().out == "aaa1111\n"
    assert rollback.main(["target", "--history", str(tmp_path / "nope.json"), "--failed", "x"]) == 2
    assert "pulumi stack history --json" in capsys.readouterr().err
    one = tmp_path / "one.json"
    one.write_text(json.dumps([update(1, "aaa1111")]))
    assert rollback.main(["target", "--history", str(one), "--failed", "aaa1111"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no earlier good release" in captured.err


def with_digest(entry: dict, digest: str) -> dict:
    entry["config"]["orbit:serviceImageDigest"] = {"value": digest, "secret": False}
    return entry


def test_rollback_config_redeploys_the_target_by_its_recorded_digest(tmp_path: Path, capsys):
    good, bad = "sha256:" + "b" * 64, "sha256:" + "c" * 64
    history = tmp_path / "history.json"
    entries = [with_digest(update(2, "ccc3333"), bad), with_digest(update(1, "bbb2222"), good)]
    history.write_text(json.dumps(entries))
    assert rollback.main(["target", "--history", str(history), "--failed", "ccc3333", "--config"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "orbit:serviceImageTag=bbb2222", f"orbit:serviceImageDigest={good}", "orbit:serviceEnabled=true"]
    assert rollback.main(["live-config", "--history", str(history)]) == 0
    assert f"orbit:serviceImageDigest={bad}" in capsys.readouterr().out


def test_a_target_without_a_recorded_digest_says_how_to_find_it(tmp_path: Path, capsys):
    history = tmp_path / "history.json"
    history.write_text(json.dumps(HISTORY))
    assert rollback.main(["target", "--history", str(history), "--failed", "ccc3333", "--config"]) == 1
    assert "gcloud artifacts docker images describe" in capsys.readouterr().err
    with pytest.raises(HistoryError, match="not an image digest"):
        parse_history(json.dumps([with_digest(update(1, "aaa1111"), "sha256:short")]))
