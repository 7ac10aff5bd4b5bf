"""Every serving knob, read from the environment and validated in one place.

The service, its upload guard and the packaging CLI all call :func:`load_settings`, so a wrong value fails
at start-up with a message naming the variable, instead of as a confusing error on the first request.
Each field is read from ``ORBIT_<FIELD>`` (pydantic-settings, ``env_prefix``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml.bundle import MODEL_NAME
from ml.preprocess import DEFAULT_MAX_PIXELS

DEFAULT_MODEL_TAG = f"{MODEL_NAME}:latest"
ENV_PREFIX = "ORBIT_"


class ServingSettingsError(ValueError):
    """An ORBIT_* environment variable holds a value the service cannot use."""


class ServingSettings(BaseSettings):
    # env_ignore_empty: an empty variable means "unset" (the default), as an empty `env:` value in a manifest.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True
    )

    model_tag: str = Field(DEFAULT_MODEL_TAG, min_length=1, description="BentoML model to serve")
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1024**3, description="largest request body accepted, in bytes"
    )
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=64,
        le=200_000_000,
        description="largest image decoded (width x height), checked before any pixel is decoded",
    )
    max_batch_files: int = Field(64, ge=1, le=1024, description="most images in one /predict_batch request")
    max_batch_size: int = Field(64, ge=1, le=1024, description="most images in one model call")
    # One by default: the fastest start, the least memory. "cpu_count" (BentoML's) starts one per CPU of the
    # cgroup's quota; the GKE Deployment sets it, so the pod's CPU limit decides (docs/serving.md).
    workers: int | Literal["cpu_count"] = Field(
        1, description="server processes, each with its own model; cpu_count = one per CPU available"
    )
    inference_threads: int = Field(
        1, ge=1, le=256, description="onnxruntime threads per worker; 1 leaves a core to the HTTP event loop"
    )
    # Both off by default: together they cost about a third of the throughput (docs/serving.md).
    access_log: bool = Field(False, description="log one line per request")
    trace_predictions: bool = Field(False, description="OpenTelemetry spans for /predict and /predict_batch")
    # Off unless set: a bare `bentoml serve` (tests, a quick try) writes nothing anywhere. `make serve` sets a
    # local folder, the GKE Deployment the data bucket (docs/monitoring.md).
    prediction_log: str = Field(
        "", description="where every prediction is recorded: gs://BUCKET, a folder, or empty for off"
    )
    log_image_share: float = Field(
        0.05, ge=0.0, le=1.0, description="share of known-looking uploads kept (every unknown one is kept)"
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        """`ORBIT_MAX_PIXELS=" "` keeps the default, like an empty one (env_ignore_empty only drops "")."""
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("workers", mode="before")
    @classmethod
    def _worker_count(cls, value: Any) -> Any:
        """One message for both forms, instead of one per member of the union."""
        text = str(value).strip()
        if text == "cpu_count":
            return text
        if not text.isdigit() or not 1 <= int(text) <= 64:
            raise ValueError("expected a number of processes from 1 to 64, or cpu_count (one per CPU)")
        return int(text)

    @field_validator("prediction_log")
    @classmethod
    def _log_location(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("gs://") and (not value[5:].strip("/") or "/" in value[5:].strip("/")):
            raise ValueError("expected gs://BUCKET (the log goes under its monitoring/ prefix) or a folder")
        return value


def env_var(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings() -> ServingSettings:
    """Build the settings from ORBIT_* variables; unset or blank ones keep their defaults.

    Every bad variable is reported at once, each with its value and what to do about it.
    """
    try:
        return ServingSettings()
    except ValidationError as exc:
        lines = [
            f"{env_var(str(e['loc'][0]))}={e.get('input')!r}: {e['msg']}"
            " (set a valid value, or unset it for the default)"
            for e in exc.errors()
        ]
        raise ServingSettingsError("invalid serving settings:\n  " + "\n  ".join(lines)) from None
