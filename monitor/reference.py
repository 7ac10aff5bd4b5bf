"""The reference: what the model's records look like on images it was not trained on (the validation split).

The guide compares traffic with the *training* split, on which the model is over-confident, so healthy
traffic looks like drift. orbit's reference is the validation split, run through the same Predictor and
novelty model as the service, so reference and traffic are records of the same kind from the same model.

`records_for_images(predictor, paths, novelty, model=..., data_version=...)` makes those records;
`Reference.from_records(records)` keeps the arrays the drift check needs; `save`/`load` store it as one
.npz next to the model it belongs to.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from monitor.records import PredictionRecord, make_record, upload_info


class ReferenceError(RuntimeError):
    """The reference cannot be built or read; the message says why and what to run."""


class PredictorLike(Protocol):
    """The shape of ml.inference.Predictor this module needs."""

    classes: list[str]
    preprocess: object  # ml.preprocess.PreprocessConfig

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class NoveltyLike(Protocol):
    """The shape of ml.novelty.NoveltyModel this module needs."""

    threshold: float

    def score(self, embeddings: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Records:
    """Records of one model as arrays: what every statistic and plot reads."""

    model: str
    data_version: str
    embeddings: np.ndarray  # (n, d) float32
    predictions: np.ndarray  # (n,) str
    top_probability: np.ndarray
    novelty: np.ndarray
    unknown: np.ndarray  # (n,) bool
    channel_mean: np.ndarray  # (n, c)
    channel_std: np.ndarray  # (n, c)
    sharpness: np.ndarray
    image_objects: np.ndarray  # (n,) str, "" when the image was not kept
    times: np.ndarray  # (n,) datetime64[ms]

    def __len__(self) -> int:
        return len(self.predictions)

    @property
    def model_name(self) -> str:
        return self.model.partition(":")[0]

    @property
    def model_has_version(self) -> bool:
        """A reference built before the BentoML import knows the model's name only."""
        return bool(self.model.partition(":")[2])

    @classmethod
    def from_records(cls, records: Sequence[PredictionRecord]) -> Records:
        if not records:
            raise ReferenceError("no records: nothing to describe")
        models = sorted({r.model for r in records})
        if len(models) > 1:
            raise ReferenceError(f"records of several models mixed: {', '.join(models)}; use one model's")
        return cls(
            model=models[0],
            data_version=records[0].data_version,
            embeddings=np.asarray([r.embedding for r in records], dtype=np.float32),
            predictions=np.asarray([r.prediction for r in records], dtype=str),
            top_probability=np.asarray([r.top_probability for r in records], dtype=np.float64),
            novelty=np.asarray([r.novelty for r in records], dtype=np.float64),
            unknown=np.asarray([r.unknown for r in records], dtype=bool),
            channel_mean=np.asarray([r.channel_mean for r in records], dtype=np.float64),
            channel_std=np.asarray([r.channel_std for r in records], dtype=np.float64),
            sharpness=np.asarray([r.sharpness for r in records], dtype=np.float64),
            image_objects=np.asarray([r.image_object or "" for r in records], dtype=str),
            times=np.asarray(
                [r.time.astimezone(UTC).replace(tzinfo=None) for r in records], dtype="datetime64[ms]"
            ),
        )

    def save(self, path: Path) -> None:
        """One compressed .npz; small (about 300 records of float32 embeddings)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"model": self.model, "data_version": self.data_version})
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        with open(path, "wb") as out:
            np.savez_compressed(out, meta=np.asarray(meta), **arrays)

    @classmethod
    def load(cls, path: Path | str) -> Records:
        if not Path(path).is_file():
            raise ReferenceError(
                f"{path} not found: build the reference from the validation split first (its DVC stage)"
            )
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "the reference") -> Records:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                arrays = {k: npz[k] for k in npz.files if k != "meta"}
            return cls(**meta, **arrays)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReferenceError(f"{origin} is not a reference file ({exc}); rebuild it") from None


#: The reference is the validation split's records; same class, named for what it is.
Reference = Records

#: Fewer reference records than this make every test weak; refuse rather than pretend.
MIN_REFERENCE = 50


def build_reference(records: Sequence[PredictionRecord]) -> Reference:
    """The reference from the validation split's records (one model)."""
    if len(records) < MIN_REFERENCE:
        raise ReferenceError(
            f"{len(records)} validation records; the reference needs at least {MIN_REFERENCE} "
            "(raise prepare.split or add images)"
        )
    return Reference.from_records(records)


def records_for_images(
    predictor: PredictorLike,
    paths: Sequence[Path],
    novelty: NoveltyLike,
    *,
    model: str,
    data_version: str,
    batch_size: int = 64,
    time: datetime | None = None,
) -> list[PredictionRecord]:
    """Run any Predictor-shaped object over image files in batches and make the records the service would.

    One `predictor.run` per batch gives probabilities and embeddings together; `novelty` is anything with
    NoveltyModel's `score(embeddings, probabilities)` and `threshold`."""
    from ml.preprocess import preprocess

    time = time or datetime.now(UTC)
    records: list[PredictionRecord] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        uploads = [Path(p).read_bytes() for p in chunk]
        pixels = np.stack([preprocess(data, predictor.preprocess) for data in uploads])
        probabilities, embeddings = predictor.run(pixels)
        scores = np.asarray(novelty.score(embeddings, probabilities), dtype=np.float64)
        for i, path in enumerate(chunk):
            records.append(
                make_record(
                    time=time,
                    request_id=f"file:{Path(path).name}",
                    model=model,
                    data_version=data_version,
                    classes=list(predictor.classes),
                    probabilities=probabilities[i],
                    embedding=embeddings[i],
                    novelty=scores[i],
                    unknown=bool(scores[i] > novelty.threshold),
                    pixels=pixels[i],
                    upload=upload_info(uploads[i]),
                )
            )
    return records
