"""`params.yaml`, read and validated in one place.

Every stage calls :func:`load_params` first, so a wrong value fails before any data is read or any
model is built, with a message that names the key and the values it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml.preprocess import COLOR_MODES, PreprocessConfig

DEFAULT_PARAMS_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or holds a value out of range."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    """Where `make data` gets the raw images from (not a DVC stage: data/raw is tracked with `dvc add`)."""

    source: Literal["folder", "url", "synthetic"] = "folder"
    folder: str = "../shared/data/planets/raw"
    url: str = "https://github.com/swiss-ai-center/a-guide-to-mlops/archive/refs/heads/data.zip"
    synthetic_per_class: int = Field(60, ge=1, le=10_000)
    synthetic_size: int = Field(128, ge=16, le=1024)
    synthetic_seed: int = 0


class PrepareParams(_Section):
    seed: int = 77
    split: float = Field(
        0.2, gt=0.0, lt=1.0, description="each image's chance of validation, drawn from its content and seed"
    )
    image_size: int = Field(32, ge=8, le=512)
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    batch_size: int = Field(32, ge=1, le=4096)
    min_images_per_class: int = Field(
        20, ge=2, le=100_000, description="a class folder with fewer images is refused, not trained on"
    )
    classes: list[str] = Field(
        default_factory=list, description="pin: the class folders data/raw must hold; []: whatever it holds"
    )

    @field_validator("classes")
    @classmethod
    def _classes_distinct(cls, value: list[str]) -> list[str]:
        if value and (len(value) < 2 or len(set(value)) != len(value) or not all(value)):
            raise ValueError("must be [] (no pin) or a list of at least 2 distinct, non-empty class names")
        return value

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.image_size, color_mode=self.color_mode)


class AugmentParams(_Section):
    flip: bool = True
    rotation: float = Field(0.5, ge=0.0, le=1.0, description="fraction of a full turn (keras RandomRotation)")
    zoom: float = Field(0.0, ge=0.0, lt=1.0)


class TrainParams(_Section):
    seed: int = 77
    lr: float = Field(0.003, gt=0.0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = Field("cosine", description="cosine: decay to 0 by the end")
    epochs: int = Field(12, ge=1, le=1000)
    conv_filters: list[int] = Field(default_factory=lambda: [16, 32, 64])
    batch_norm: bool = False
    pooling: Literal["avg", "flatten"] = Field("flatten", description="how conv features become a vector")
    dense_units: int = Field(128, ge=0, le=8192, description="0: no hidden dense layer")
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    augment: AugmentParams = AugmentParams()

    @field_validator("conv_filters")
    @classmethod
    def _filters_positive(cls, value: list[int]) -> list[int]:
        if not value or any(f < 1 for f in value):
            raise ValueError("must be a non-empty list of positive integers, e.g. [32, 64]")
        return value


class EvaluateParams(_Section):
    preview_count: int = Field(25, ge=1, le=400)


class NoveltyParams(_Section):
    """The unknown-image detector fitted on the model's embeddings (ml/novelty.py)."""

    method: Literal["relative_mahalanobis", "mahalanobis"] = Field(
        "relative_mahalanobis", description="distance to the nearest training class, in the embedding"
    )
    false_unknown_rate: float = Field(
        0.01, gt=0.0, lt=0.5, description="share of known validation images flagged: sets the threshold"
    )


class GateParams(_Section):
    """Regression gate used by CI: a candidate may not lose more than this against main."""

    metric: str = "accuracy"
    max_drop: float = Field(0.01, ge=0.0, le=1.0)
    min_value: float = Field(0.9, ge=0.0, le=1.0)


class Params(_Section):
    data: DataParams = DataParams()
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    novelty: NoveltyParams = NoveltyParams()
    gate: GateParams = GateParams()

    @model_validator(mode="after")
    def _image_survives_the_pooling(self) -> Params:
        """Each conv block halves the image; too many blocks would fail only deep inside Keras."""
        blocks, size = len(self.train.conv_filters), self.prepare.image_size
        if size >> blocks < 1:
            raise ValueError(
                f"train.conv_filters: {blocks} blocks halve prepare.image_size={size} to nothing; "
                f"use at most {size.bit_length() - 1} blocks or a larger image_size"
            )
        return self


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if not key:  # a check across sections: its message names the keys
        return error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{key}: got {error.get('input')!r}; allowed values: {allowed}"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def parse_params(raw: dict) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise ParamsError(f"params.yaml has invalid values:\n  {lines}") from None


def load_params(path: str | Path = DEFAULT_PARAMS_PATH) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run from the repository root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        sections = ", ".join(Params.model_fields)
        raise ParamsError(f"{path} must be a mapping of sections ({sections})")
    return parse_params(raw)


__all__ = ["COLOR_MODES", "Params", "ParamsError", "load_params", "parse_params"]
