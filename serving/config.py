"""Every serving knob, read from the environment and validated in one place.

The service, its upload guard and the packaging CLI all call :func:`load_settings`, so a wrong value fails
at start-up with a message naming the variable, instead of as a confusing error on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml.bundle import MODEL_NAME
from ml.preprocess import DEFAULT_MAX_PIXELS

DEFAULT_MODEL_TAG = f"{MODEL_NAME}:latest"

#: environment variable -> field of :class:`ServingSettings`
ENV_VARS: dict[str, str] = {
    "ORBIT_MODEL_TAG": "model_tag",
    "ORBIT_MAX_UPLOAD_BYTES": "max_upload_bytes",
    "ORBIT_MAX_PIXELS": "max_pixels",
    "ORBIT_MAX_BATCH_FILES": "max_batch_files",
    "ORBIT_MAX_BATCH_SIZE": "max_batch_size",
    "ORBIT_WORKERS": "workers",
    "ORBIT_INFERENCE_THREADS": "inference_threads",
    "ORBIT_ACCESS_LOG": "access_log",
    "ORBIT_TRACE_PREDICTIONS": "trace_predictions",
    "ORBIT_PREDICTION_LOG": "prediction_log",
    "ORBIT_LOG_IMAGE_SHARE": "log_image_share",
}


class ServingSettingsError(ValueError):
    """An ORBIT_* environment variable holds a value the service cannot use."""


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
    workers: int = Field(1, ge=1, le=64, description="server processes, each with its own copy of the model")
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

    @field_validator("prediction_log")
    @classmethod
    def _log_location(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("gs://") and (not value[5:].strip("/") or "/" in value[5:].strip("/")):
            raise ValueError("expected gs://BUCKET (the log goes under its monitoring/ prefix) or a folder")
        return value


def load_settings(environ: Mapping[str, str] | None = None) -> ServingSettings:
    """Build the settings from ORBIT_* variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    raw = {field: environ[var] for var, field in ENV_VARS.items() if environ.get(var, "").strip()}
    try:
        return ServingSettings(**raw)
    except ValidationError as exc:
        by_field = {field: var for var, field in ENV_VARS.items()}
        lines = []
        for error in exc.errors():
            var = by_field.get(str(error["loc"][0]), str(error["loc"][0]))
            lines.append(f"{var}={error.get('input')!r}: {error['msg']}")
        raise ServingSettingsError("invalid serving settings:\n  " + "\n  ".join(lines)) from None
