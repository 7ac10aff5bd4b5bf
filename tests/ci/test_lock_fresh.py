"""ci.lock_fresh: a dvc.lock older than params.yaml or ml/ stops the deploy."""

from __future__ import annotations

from ci.lock_fresh import stale

# Shaped like `dvc status --json`.
PARAMS_CHANGED = {"train": [{"changed deps": {"params.yaml": {"modified": ["train.epochs"]},
                                               "ml/train.py": "modified"}}],
                  "evaluate": [{"changed deps": {"model": "modified"}}]}


def test_changed_params_or_code_are_stale_and_named():
    assert stale(PARAMS_CHANGED) == {"train": ["ml/train.py", "params.yaml"], "evaluate": ["model"]}
    assert stale({"prepare": [{"changed command": True}]}) == {"prepare": ["command"]}


def test_an_up_to_date_lock_or_a_missing_output_alone_is_not_stale():
    assert stale({}) == {}
    assert stale({"train": [{"changed outs": {"model": "deleted"}}]}) == {}
    assert stale({"train": ["always changed"]}) == {}
