"""Where each labelled image came from: `data/raw/provenance.jsonl`, one JSON object per image file.

Written by `labeling.export` (the only writer), read by prepare (which carries the origin of each
validation image into the manifest, for evaluate). Records are matched to files by content hash, so moving
a file between class folders keeps its history. A file without a record was in the dataset before
labelling ("original").
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROVENANCE_FILE = "provenance.jsonl"


class ProvenanceError(ValueError):
    """provenance.jsonl cannot be read; the message names the line and how to repair it."""


class ProvenanceRecord(BaseModel):
    """One labelled image: who labelled it, when, and what the model had proposed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="path relative to data/raw, e.g. Ceres/<sha256>.jpg")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str
    task_id: int | str
    annotation_id: int | str | None = None
    annotator: str | None = None
    annotated_at: datetime | None = None
    prelabel: str | None = Field(None, description="the model's pre-annotation (class), if the task had one")
    prelabel_score: float | None = None
    model_version: str | None = None
    changed: bool | None = Field(None, description="the person chose another label; None: no pre-label")
    source: str | None = Field(None, description="the task's image URL or path")
    exported_at: datetime


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_provenance(raw_dir: Path) -> list[ProvenanceRecord]:
    """Every record of `raw_dir/provenance.jsonl` (empty when the file does not exist yet)."""
    path = Path(raw_dir) / PROVENANCE_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(ProvenanceRecord.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0 if isinstance(exc, json.JSONDecodeError) else -1].strip()
            raise ProvenanceError(
                f"{path}, line {number}: not a provenance record ({first}); restore the file from git/DVC "
                "(`dvc checkout data/raw`) instead of editing it by hand"
            ) from None
    return records


def append_provenance(raw_dir: Path, records: list[ProvenanceRecord]) -> None:
    """Append records, one line each, flushed to disk before returning."""
    if not records:
        return
    lines = "".join(record.model_dump_json(exclude_none=False) + "\n" for record in records)
    with (Path(raw_dir) / PROVENANCE_FILE).open("a", encoding="utf-8") as handle:
        handle.write(lines)
        handle.flush()


def by_sha256(records: list[ProvenanceRecord]) -> dict[str, ProvenanceRecord]:
    """Content hash -> its first record (export never writes two for one hash)."""
    out: dict[str, ProvenanceRecord] = {}
    for record in records:
        out.setdefault(record.sha256, record)
    return out


__all__ = [
    "PROVENANCE_FILE",
    "ProvenanceError",
    "ProvenanceRecord",
    "append_provenance",
    "by_sha256",
    "read_provenance",
    "sha256_bytes",
    "sha256_file",
]
