"""The model bundle: the folder training writes and serving loads, and the one reader/writer of its meta.json.

    model/model.keras   the trained Keras model (training, evaluation)
    model/model.onnx    the inference graph without augmentation; outputs `probabilities` and `embedding`
    model/meta.json     :class:`BundleMeta`: classes, preprocessing, params, versions, novelty summary
    model/novelty.npz   the unknown-image detector fitted on the embeddings of model.onnx (ml/novelty.py)

Train writes meta.json through :func:`write_bundle_meta`; evaluate, serving, packaging and the demo read it
through :func:`read_bundle`, so the contract between training and serving is this file and nothing else.
Needs only pydantic and numpy/Pillow (via ml.preprocess): the serving image imports it without TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml.preprocess import PreprocessConfig

MODEL_NAME = "planet-classifier"  # the BentoML model (and bento) name; defined here only
MODEL_DIR = Path("model")
KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
META_FILE = "meta.json"
NOVELTY_FILE = "novelty.npz"  # ml.novelty re-exports it; defined here so the bundle lists all its files

#: The command that (re)creates every file of the bundle.
FIX = "run the train stage first: `make repro` (or `dvc repro train`) trains and exports the model"


class BundleError(RuntimeError):
    """A bundle file is missing or its parts disagree; the message says what, and the command to fix it."""


class PreprocessSpec(BaseModel):
    """meta.json's `preprocess` section: how serving must prepare pixels (see ml.preprocess)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(ge=8, le=512)
    color_mode: Literal["rgb", "grayscale"]

    @property
    def config(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.image_size, color_mode=self.color_mode)


class NoveltySpec(BaseModel):
    """meta.json's `novelty` section: :meth:`ml.novelty.NoveltyModel.describe` of the fitted detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(NOVELTY_FILE, description="the fitted arrays, next to meta.json")
    method: str
    threshold: float = Field(description="a novelty score above it answers `unknown: true`")
    false_unknown_rate: float = Field(gt=0.0, lt=1.0, description="the wanted share of known images flagged")
    val_flagged_rate: float = Field(ge=0.0, le=1.0, description="the share of validation images flagged")
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)
    embedding_dim: int = Field(ge=1)
    n_classes: int = Field(ge=1)


class BundleMeta(BaseModel):
    """meta.json, validated: everything needed to use the exported model without the training code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[str] = Field(min_length=1, description="label order; the only class list after training")
    preprocess: PreprocessSpec
    params: dict = Field(description="the prepare and train params the model was made with")
    versions: dict[str, str] = Field(description="keras, tf2onnx, onnx, onnxruntime, ... at export time")
    n_train: int = Field(ge=0, description="training images")
    embedding_dim: int = Field(ge=1, description="width of the `embedding` output of model.onnx")
    novelty: NoveltySpec | None = Field(
        None, description="the unknown-image detector; None only in bundles made before it existed"
    )

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, value: list[str]) -> list[str]:
        if not all(value) or len(set(value)) != len(value):
            raise ValueError(f"must be distinct, non-empty class names; got {value!r}")
        return value

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.preprocess.config


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "meta.json"
    if error["type"] == "missing":
        return f"{key}: missing (meta.json comes from an older or different training run)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    return f"{key}: {error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})"


def read_bundle(folder: Path) -> BundleMeta:
    """Read and validate `folder/meta.json`; every problem at once, in a :class:`BundleError`."""
    path = Path(folder) / META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} not found; {FIX}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); {FIX}") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path} must hold a JSON object; {FIX}")
    try:
        return BundleMeta.model_validate(raw)
    except ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise BundleError(f"{path} is not a valid bundle description:\n  {lines}\n{FIX}") from None


def write_bundle_meta(folder: Path, meta: BundleMeta) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(meta.model_dump_json(indent=1) + "\n")


def bundle_file(folder: Path, name: str) -> Path:
    """The path of one bundle file, or a :class:`BundleError` saying how to create it."""
    path = Path(folder) / name
    if not path.is_file():
        raise BundleError(f"{path} not found; {FIX}")
    return path
