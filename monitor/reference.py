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


# --- the DVC stage and the deploy's publish step -------------------------------------------------------

#: Next to model.onnx in the bundle, so the stored model and the bento carry the reference built for them.
REFERENCE_FILE = "reference.npz"
PUBLISHED = "monitoring/reference/current.npz"  # what the scheduled drift check reads


def build_for_bundle(
    model_dir: Path, raw_dir: Path, prepared_dir: Path, *, data_version: str, batch_size: int = 64
) -> Reference:
    """The reference of the bundle in `model_dir`: its Predictor and novelty model over the validation split's
    files (the manifest prepare wrote), decoded from the raw files exactly as the service decodes uploads."""
    from ml.bundle import MODEL_NAME
    from ml.inference import Predictor
    from ml.novelty import load_from_bundle
    from ml.prepare import read_manifest

    predictor = Predictor.load(model_dir)
    novelty = load_from_bundle(model_dir, predictor.meta)
    files = read_manifest(prepared_dir)["files"]["val"]
    missing = [f for f in files if not (raw_dir / f).is_file()]
    if missing:
        raise ReferenceError(
            f"{len(missing)} validation file(s) of {prepared_dir} are not in {raw_dir} (e.g. {missing[0]}); "
            "run `dvc pull` or `make data`, then `dvc repro`"
        )
    records = records_for_images(
        predictor, [raw_dir / f for f in files], novelty, model=MODEL_NAME, data_version=data_version,
        batch_size=batch_size,
    )
    return build_reference(records)


def stamped(reference: Reference, model: str) -> Reference:
    """The reference named for one stored model version (the tag BentoML gave it), as its records are."""
    from dataclasses import replace

    from monitor.records import split_tag

    name, version = split_tag(model)
    if name != reference.model_name:
        raise ReferenceError(f"the reference was built for {reference.model}, not for {model}")
    return replace(reference, model=f"{name}:{version}")


def publish(reference: Reference, location: str) -> list[str]:
    """Write the reference as `monitoring/reference/current.npz` and, kept for a rollback, under its version.

    `location` is gs://BUCKET (the log's bucket) or a folder. current.npz is replaced on every deploy, so this
    writes without the log's create-only rule."""
    import tempfile

    from monitor.sinks import GCSSink, open_sink

    name, version = reference.model.partition(":")[::2]
    if not version:
        raise ReferenceError(f"{reference.model} names no version: stamp it with the served tag first")
    with tempfile.TemporaryDirectory() as tmp:
        reference.save(Path(tmp) / REFERENCE_FILE)
        data = (Path(tmp) / REFERENCE_FILE).read_bytes()
    names = [f"monitoring/reference/{name}/{version}.npz", PUBLISHED]
    sink = open_sink(location)
    for object_name in names:
        if isinstance(sink, GCSSink):
            sink.bucket.blob(object_name).upload_from_string(
                data, content_type="application/octet-stream", timeout=sink.timeout, retry=sink.retry
            )
        else:
            path = Path(location) / object_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return [f"{location.rstrip('/')}/{n}" for n in names]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m monitor.reference",
        description="Build the drift reference from the validation split (DVC stage `reference`), or publish "
        "the served model's reference next to the prediction log (the deploy workflow).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="model/reference.npz from the bundle and the validation split")
    build.add_argument("--model-dir", type=Path, default=Path("model"))
    build.add_argument("--raw", type=Path, default=Path("data/raw"))
    build.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    build.add_argument("--out", type=Path, default=None, help="default: MODEL_DIR/reference.npz")
    pub = commands.add_parser("publish", help="the stored model's reference to gs://BUCKET/" + PUBLISHED)
    pub.add_argument("--to", required=True, help="gs://BUCKET (the log's bucket) or a folder")
    pub.add_argument(
        "--model", default="planet-classifier:latest", help="BentoML model whose reference to publish"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            from serving.package import DATA_DVC_FILE, data_version

            reference = build_for_bundle(
                args.model_dir, args.raw, args.prepared, data_version=data_version(DATA_DVC_FILE)
            )
            out = args.out or args.model_dir / REFERENCE_FILE
            reference.save(out)
            flagged = float(reference.unknown.mean())
            print(f"reference: {len(reference)} validation records of {reference.model} -> {out} "
                  f"({flagged:.1%} unknown)")
        else:
            import bentoml
            from bentoml.exceptions import NotFound

            try:
                stored = bentoml.models.get(args.model)
            except NotFound:
                raise ReferenceError(
                    f"{args.model} is not in the BentoML store: run `make bento` first"
                ) from None
            path = Path(stored.path_of(REFERENCE_FILE))
            reference = stamped(Reference.load(path), str(stored.tag))
            for written in publish(reference, args.to):
                print(f"published the reference of {reference.model} ({len(reference)} records): {written}")
    except ReferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
