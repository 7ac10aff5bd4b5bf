"""Validation accuracy by where the images came from, so a data change is judged like with like.

The split is stable under additions (ml/prepare.py), so the "original" validation images (no provenance
record: in the dataset before labelling) are the same on main and on a pull request that adds labels; their
accuracy is the fair before/after comparison. "labelled" are the images added by labelling; of those,
"changed" are the ones where the person overrode the model's pre-label and "accepted" the ones where the
pre-label was kept unchanged (a model grading its own accepted pre-labels tends to look better than it is).
"""

from __future__ import annotations

import numpy as np

#: The groups, each reported as `n_val_<group>` and, when it has images, `accuracy_<group>` (no null: dvc
#: drops nulls and BentoML's model metadata refuses them).
ORIGINS = ("original", "labelled", "changed", "accepted")
METRIC_KEYS = tuple(f"accuracy_{o}" for o in ORIGINS) + tuple(f"n_val_{o}" for o in ORIGINS)


def origin_masks(files: list[str], labelled: dict[str, bool | None]) -> dict[str, np.ndarray]:
    """Group -> mask over `files`; `labelled`: the manifest's file -> changed (None: no pre-label)."""
    changed = [labelled.get(f) for f in files]
    is_labelled = np.array([f in labelled for f in files], dtype=bool)
    return {
        "original": ~is_labelled,
        "labelled": is_labelled,
        "changed": np.array([c is True for c in changed], dtype=bool),
        "accepted": np.array([c is False for c in changed], dtype=bool),
    }


def origin_metrics(
    files: list[str], y_true: np.ndarray, y_pred: np.ndarray, labelled: dict[str, bool | None]
) -> dict:
    """The metrics.json entries `n_val_<group>` for every group of ORIGINS, and `accuracy_<group>` for the
    groups with images."""
    right = np.asarray(y_true) == np.asarray(y_pred)
    out: dict = {}
    for name, mask in origin_masks(files, labelled).items():
        n = int(mask.sum())
        if n:
            out[f"accuracy_{name}"] = round(float(right[mask].mean()), 6)
        out[f"n_val_{name}"] = n
    return out


__all__ = ["METRIC_KEYS", "ORIGINS", "origin_masks", "origin_metrics"]
