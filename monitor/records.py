"""One prediction as a record: what the model answered, about which image, and which model answered.

The model tag and data version are in every record, so logs of two models never mix: the drift check
reads one model's records only, and a rollout shows up as a new partition, not as drift.
"""

from __future__ import annotations

import base64
import hashlib
import io
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
        # 128 values: 344 characters, against ~1 KB as decimal text, and ~100x faster to write
        return base64.b64encode(np.asarray(value, dtype="<f2").tobytes()).decode("ascii")

    @property
    def model_name(self) -> str:
        return split_tag(self.model)[0]

    @property
    def model_version(self) -> str:
        return split_tag(self.model)[1]


def split_tag(tag: str) -> tuple[str, str]:
    """'planet-classifier:abc' -> ('planet-classifier', 'abc'); a tag without version gets 'latest'."""
    name, _, version = tag.partition(":")
    if not name:
        raise ValueError(f"model tag {tag!r} has no name; expected name:version")
    return name, version or "latest"


def image_stats(pixels: np.ndarray) -> dict:
    """Per-channel mean and standard deviation, and sharpness, of preprocessed float32 pixels (H, W, C).

    Computed on what the model sees, so a darker or blurrier stream of uploads shows up here even when
    the raw files differ in size or format. Sharpness (mean absolute difference between neighbouring
    pixels) is what blur changes; mean and std barely move under it."""
    if pixels.ndim != 3:
        raise ValueError(f"expected preprocessed pixels (H, W, C); got shape {pixels.shape}")
    # Plain ufunc reductions: numpy's mean/std wrappers cost more than the arithmetic on 32x32 pixels, and
    # this runs once per request.
    flat = pixels.reshape(-1, pixels.shape[-1])
    mean = np.add.reduce(flat, axis=0, dtype=np.float64) / len(flat)
    square = np.add.reduce(np.square(flat, dtype=np.float64), axis=0) / len(flat)
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    dy, dx = np.abs(pixels[1:] - pixels[:-1]), np.abs(pixels[:, 1:] - pixels[:, :-1])
    sharpness = (np.add.reduce(dy, axis=None) / dy.size + np.add.reduce(dx, axis=None) / dx.size) / 2
    return {"channel_mean": mean.tolist(), "channel_std": std.tolist(), "sharpness": float(sharpness)}


def upload_info(data: bytes, image: Image.Image | None = None) -> dict:
    """Size, mode and content hash of an upload. Pass the image the service already decoded to skip
    reading the header a second time."""
    if image is None:
        with Image.open(io.BytesIO(data)) as opened:
            width, height, mode = opened.width, opened.height, opened.mode
    else:
        width, height, mode = image.width, image.height, image.mode
    return {"width": width, "height": height, "mode": mode, "sha256": hashlib.sha256(data).hexdigest()}


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
    """The record of one image from what one Predictor call returned for it (no second forward pass)."""
    top = int(np.argmax(probabilities))
    return PredictionRecord(
        time=time,
        request_id=request_id,
        model=model,
        data_version=data_version,
        prediction=classes[top],
        top_probability=float(probabilities[top]),
        novelty=float(novelty),
        unknown=bool(unknown),
        embedding=embedding,
        **image_stats(pixels),
        **upload,
    )
