"""One prediction as a record: what the model answered, about which image, and which model answered.

The model tag and data version are in every record, so logs of two models never mix: the drift check
reads one model's records only, and a rollout shows up as a new partition, not as drift.
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime

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
    embedding: list[float] = Field(description="float16 values: half the size, plenty for a drift test")
    sha256: str
    image_object: str | None = None

    @field_validator("embedding", mode="before")
    @classmethod
    def _to_float16(cls, value) -> list[float]:
        return np.asarray(value, dtype=np.float16).astype(np.float64).tolist()

    @field_serializer("embedding")
    def _short_floats(self, value: list[float]) -> list[float]:
        # str(np.float16) is the shortest text that reads back to the same float16: ~7 bytes a value.
        return [float(str(v)) for v in np.asarray(value, dtype=np.float16)]

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
    """Per-channel mean and standard deviation of preprocessed float32 pixels (H, W, C).

    Computed on what the model sees, so a darker or blurrier stream of uploads shows up here even when
    the raw files differ in size or format."""
    if pixels.ndim != 3:
        raise ValueError(f"expected preprocessed pixels (H, W, C); got shape {pixels.shape}")
    flat = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64)
    return {"channel_mean": flat.mean(axis=0).tolist(), "channel_std": flat.std(axis=0).tolist()}


def upload_info(data: bytes) -> dict:
    """Size, mode and content hash of an upload; reads the image header only."""
    with Image.open(io.BytesIO(data)) as image:
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
