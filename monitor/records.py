"""One prediction as a record: what the model answered, about which image, and which model answered.

The model tag and data version are in every record, so logs of two models never mix: the drift check
reads one model's records only, and a rollout shows up as a new partition, not as drift.

Two forms of the same JSON line. :class:`PredictionRecord` is the read schema (validated, as the drift check,
the reference and the labelling loop load it). The service writes :class:`LogEntry` instead: the model's side
of the line is encoded once per image, for a whole batch at a time on the inference thread
(:func:`observe_batch`: vectorised statistics, packed embeddings), so a request only adds its time and id,
and a flush only joins strings; nothing is validated again on the write path. Both go through
:func:`observe_batch`, and tests check that what the service writes reads back as the record
:func:`make_record` builds.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator


class PredictionRecord(BaseModel):
    """One line of the prediction log (JSON Lines)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    time: datetime
    request_id: str
    model: str = Field(description="the BentoML tag, name:version")
    data_version: str
    prediction: str
    top_probability: float
    novelty: float
    unknown: bool
    width: int
    height: int
    mode: str
    channel_mean: list[float]
    channel_std: list[float]
    sharpness: float = Field(description="mean absolute difference of neighbouring pixels: falls with blur")
    embedding: list[float] = Field(description="float16 values, stored as base64 of little-endian float16")
    sha256: str
    image_object: str | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """Times without a zone are UTC; windows compare times, and naive and aware ones do not compare."""
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("embedding", mode="before")
    @classmethod
    def _to_float16(cls, value) -> list[float]:
        if isinstance(value, str):  # as stored
            return np.frombuffer(base64.b64decode(value), dtype="<f2").astype(np.float64).tolist()
        return np.asarray(value, dtype=np.float16).astype(np.float64).tolist()

    @field_serializer("embedding", when_used="json")
    def _packed(self, value: list[float]) -> str:
        return pack_embeddings(np.asarray(value)[None])[0]

    @property
    def model_name(self) -> str:
        return split_tag(self.model)[0]

    @property
    def model_version(self) -> str:
        return split_tag(self.model)[1]

    # PredictionLog takes a PredictionRecord or a LogEntry: the two methods it needs.
    def with_image(self, name: str) -> PredictionRecord:
        return self.model_copy(update={"image_object": name})

    def json_line(self) -> str:
        return self.model_dump_json()


def split_tag(tag: str) -> tuple[str, str]:
    """'planet-classifier:abc' -> ('planet-classifier', 'abc'); a tag without version gets 'latest'."""
    name, _, version = tag.partition(":")
    if not name:
        raise ValueError(f"model tag {tag!r} has no name; expected name:version")
    return name, version or "latest"


def pack_embeddings(embeddings: np.ndarray) -> list[str]:
    """Each row as base64 of little-endian float16: 128 values in 344 characters, against ~1 KB as decimal
    text. The stored form of `PredictionRecord.embedding`."""
    rows = np.ascontiguousarray(embeddings, dtype="<f2")
    return [base64.b64encode(row).decode("ascii") for row in rows]


def image_stats_batch(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel mean (N, C), channel std (N, C), sharpness (N,)) of preprocessed pixels (N, H, W, C).

    Computed on what the model sees, so a darker or blurrier stream of uploads shows up here even when
    the raw files differ in size or format. Sharpness (mean absolute difference between neighbouring
    pixels) is what blur changes; mean and std barely move under it. A whole batch in a few numpy calls:
    the service runs this once per model call, not once per request."""
    if pixels.ndim != 4:
        raise ValueError(f"expected a batch of preprocessed pixels (N, H, W, C); got shape {pixels.shape}")
    if pixels.dtype != np.float64:
        pixels = np.asarray(pixels, dtype=np.float32)
    n, h, w, c = pixels.shape
    # Sums over the pixels as matrix products in the pixels' own precision: numpy's reductions over an axis
    # whose inner one holds only the 3 channels cost several times more than the arithmetic, and float64
    # copies of a batch fall out of the cache. float32 sums are good to about 1e-6 here.
    flat = pixels.reshape(n, h * w, c)
    weights = np.full(h * w, 1.0 / (h * w), dtype=pixels.dtype)
    mean = (weights @ flat).astype(np.float64)
    square = (weights @ (flat * flat)).astype(np.float64)
    var = np.maximum(square - mean * mean, 0.0)
    # Where the spread is tiny (a nearly flat image) that difference is mostly rounding: redone in float64.
    for i in np.flatnonzero((var < 1e-4).any(axis=1)):
        var[i] = flat[i].astype(np.float64).var(axis=0)
    std = np.sqrt(var)
    dy = np.abs(pixels[:, 1:] - pixels[:, :-1]).reshape(n, -1)
    dx = np.abs(pixels[:, :, 1:] - pixels[:, :, :-1]).reshape(n, -1)
    sharpness = (
        np.add.reduce(dy, axis=1).astype(np.float64) / max(dy.shape[1], 1)
        + np.add.reduce(dx, axis=1).astype(np.float64) / max(dx.shape[1], 1)
    ) / 2
    return mean, std, sharpness


def image_stats(pixels: np.ndarray) -> dict:
    """:func:`image_stats_batch` of one image (H, W, C), as the record's fields."""
    if pixels.ndim != 3:
        raise ValueError(f"expected preprocessed pixels (H, W, C); got shape {pixels.shape}")
    mean, std, sharpness = image_stats_batch(pixels[None])
    return {
        "channel_mean": mean[0].tolist(), "channel_std": std[0].tolist(), "sharpness": float(sharpness[0])
    }


def upload_info(data: bytes, image: Image.Image | None = None) -> dict:
    """Size, mode and content hash of an upload. Pass the image the service already decoded to skip
    reading the header a second time."""
    if image is None:
        with Image.open(io.BytesIO(data)) as opened:
            width, height, mode = opened.width, opened.height, opened.mode
    else:
        width, height, mode = image.width, image.height, image.mode
    return {"width": width, "height": height, "mode": mode, "sha256": hashlib.sha256(data).hexdigest()}


@dataclass(frozen=True, slots=True)
class Observation:
    """The model's side of one record, encoded: the JSON members from `prediction` to `embedding`."""

    unknown: bool
    sha256: str
    members: str


def _numbers(values: list[float]) -> str:
    return ",".join(map(repr, values))


@functools.lru_cache(maxsize=256)
def _json_string(text: str) -> str:
    """Class names and image modes: a handful of strings, encoded once each."""
    return json.dumps(text)


def observe_batch(
    *,
    classes: Sequence[str],
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    novelty: np.ndarray,
    unknown: np.ndarray,
    pixels: np.ndarray,
    uploads: Sequence[dict],
) -> list[Observation | None]:
    """What one model call answered for a batch of N images, one :class:`Observation` each.

    `uploads[i]` holds `width`, `height`, `mode` and `sha256` (see :func:`upload_info`). An image whose
    numbers are not finite gets None: JSON has no NaN, and the reader would refuse the line.
    """
    top = np.argmax(probabilities, axis=1)
    top_p = probabilities[np.arange(len(top)), top].astype(np.float64)
    novelty = np.asarray(novelty, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite images are left out just below
        mean, std, sharpness = image_stats_batch(pixels)
        # one check for all numbers of an image: a NaN or an infinity anywhere makes the sum non-finite
        finite = np.isfinite(top_p + novelty + sharpness + mean.sum(axis=1) + std.sum(axis=1))
    packed = pack_embeddings(embeddings)
    out: list[Observation | None] = []
    for k, p, s, u, m, d, sh, emb, info, ok in zip(
        top.tolist(), top_p.tolist(), novelty.tolist(), np.asarray(unknown).tolist(), mean.tolist(),
        std.tolist(), sharpness.tolist(), packed, uploads, finite.tolist(), strict=True,
    ):
        if not ok:
            out.append(None)
            continue
        members = (
            f'"prediction":{_json_string(classes[k])},"top_probability":{p!r},"novelty":{s!r},'
            f'"unknown":{"true" if u else "false"},'
            f'"width":{int(info["width"])},"height":{int(info["height"])},'
            f'"mode":{_json_string(info["mode"])},"channel_mean":[{_numbers(m)}],"channel_std":[{_numbers(d)}],'
            f'"sharpness":{sh!r},"embedding":"{emb}"'
        )
        out.append(Observation(bool(u), str(info["sha256"]), members))
    return out


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record on the write path: the request's side plus the encoded :class:`Observation`.

    Its :meth:`json_line` is a line `PredictionRecord.model_validate_json` reads (the same fields)."""

    time: datetime
    request_id: str
    model: str
    data_version: str
    observation: Observation
    image_object: str | None = None

    @property
    def unknown(self) -> bool:
        return self.observation.unknown

    @property
    def sha256(self) -> str:
        return self.observation.sha256

    def with_image(self, name: str) -> LogEntry:
        return replace(self, image_object=name)

    def json_line(self) -> str:
        time = self.time if self.time.tzinfo else self.time.replace(tzinfo=UTC)
        image = "null" if self.image_object is None else json.dumps(self.image_object)
        return (
            f'{{"time":"{time.isoformat()}","request_id":{json.dumps(self.request_id)},'
            f'"model":{json.dumps(self.model)},"data_version":{json.dumps(self.data_version)},'
            f'{self.observation.members},"sha256":{json.dumps(self.observation.sha256)},"image_object":{image}}}'
        )


def make_record(
    *,
    time: datetime,
    request_id: str,
    model: str,
    data_version: str,
    classes: list[str],
    probabilities: np.ndarray,
    embedding: np.ndarray,
    novelty: float,
    unknown: bool,
    pixels: np.ndarray,
    upload: dict,
) -> PredictionRecord:
    """The record of one image from what one Predictor call returned for it (no second forward pass):
    the line the service would write for it, read back."""
    observation = observe_batch(
        classes=classes,
        probabilities=np.asarray(probabilities)[None],
        embeddings=np.asarray(embedding)[None],
        novelty=np.array([novelty]),
        unknown=np.array([bool(unknown)]),
        pixels=np.asarray(pixels)[None],
        uploads=[upload],
    )[0]
    if observation is None:
        raise ValueError(f"the record of {request_id!r} has a value that is not a finite number")
    entry = LogEntry(time, request_id, model, data_version, observation)
    return PredictionRecord.model_validate_json(entry.json_line())
