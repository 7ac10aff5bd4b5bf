"""Records for the monitor tests, without a model: synthetic embeddings and image statistics."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np

from monitor.records import PredictionRecord

CLASSES = ["Earth", "Jupiter", "Mars", "Saturn"]
MODEL = "planet-classifier:v1"


def synthetic_records(
    n: int,
    *,
    seed: int,
    model: str = MODEL,
    start: datetime | None = None,
    shift: float = 0.0,
    dark: float = 1.0,
    blur: float = 1.0,
    unknown_rate: float = 0.01,
    dim: int = 16,
) -> list[PredictionRecord]:
    """n records of an in-distribution stream; `shift` moves the embeddings, `dark` scales the pixels,
    `blur` the sharpness."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    labels = rng.integers(0, len(CLASSES), n)
    centres = np.random.default_rng(1234).normal(size=(len(CLASSES), dim)) * 2
    embeddings = centres[labels] + rng.normal(size=(n, dim)) + shift
    means = rng.normal(0.25, 0.05, (n, 3)) * dark
    stds = np.abs(rng.normal(0.2, 0.03, (n, 3))) * dark
    sharpness = np.abs(rng.normal(0.05, 0.01, n)) * blur
    unknown = rng.random(n) < unknown_rate
    novelty = rng.random(n) * 0.5 + unknown * 0.5
    records = []
    for i in range(n):
        records.append(
            PredictionRecord(
                time=start + timedelta(seconds=i),
                request_id=f"r{seed}-{i}",
                model=model,
                data_version="d1",
                prediction=CLASSES[labels[i]],
                top_probability=float(1 - novelty[i]),
                novelty=float(novelty[i]),
                unknown=bool(unknown[i]),
                width=128,
                height=128,
                mode="RGB",
                channel_mean=means[i].tolist(),
                channel_std=stds[i].tolist(),
                sharpness=float(sharpness[i]),
                embedding=embeddings[i],
                sha256=hashlib.sha256(f"{seed}-{i}".encode()).hexdigest(),
            )
        )
    return records
