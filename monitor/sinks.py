"""Where the log's objects go: the GCS bucket (the emulator locally), or a folder.

The interface is three methods on purpose: a test can pass a sink that fails or stalls, and the drift check
reads back through the same object the service wrote through. Names are create-only: an object is never
overwritten (GCS `ifGenerationMatch=0`; `O_EXCL` for a folder), so a name collision fails loudly instead of
losing the earlier object.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

#: Seconds one bucket call may take, retries included; a slow bucket then costs a flush, never a request.
DEFAULT_TIMEOUT_S = 20.0


class SinkError(RuntimeError):
    """The store could not be read or written; the message says which store and why."""


class ObjectExists(SinkError):
    """The name is taken. Names are unique per writer, so this means an earlier try that timed out did
    write the object: the writer counts it as written."""


class Sink(Protocol):
    def put(self, name: str, data: bytes, content_type: str) -> None: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def get(self, name: str) -> bytes: ...


class DirSink:
    """Objects as files under a folder, same names as in the bucket (development, tests, a downloaded log)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirSink({str(self.root)!r})"

    def put(self, name: str, data: bytes, content_type: str = "") -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "xb") as out:  # create-only, like ifGenerationMatch=0
                out.write(data)
        except FileExistsError:
            raise ObjectExists(f"{path} exists") from None

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return
        for dirpath, _, files in os.walk(start):
            for file in files:
                name = (Path(dirpath) / file).relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    yield name

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class GCSSink:
    """A bucket through google-cloud-storage. Locally STORAGE_EMULATOR_HOST points it at the emulator
    (anonymous credentials then); in the cloud it uses the workload's own identity, never a key file."""

    def __init__(
        self, bucket: str, *, client=None, timeout: float = DEFAULT_TIMEOUT_S, project: str | None = None
    ):
        from google.api_core.retry import Retry
        from google.cloud import storage

        if client is None:
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                client = storage.Client(project=project or "orbit-local", credentials=AnonymousCredentials())
            else:
                client = storage.Client(project=project)
        self.bucket_name = bucket
        self.bucket = client.bucket(bucket)
        self.timeout = timeout
        self.retry = Retry(deadline=timeout)

    def __repr__(self) -> str:
        return f"GCSSink('gs://{self.bucket_name}')"

    def put(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self.bucket.blob(name).upload_from_string(
                data, content_type=content_type, if_generation_match=0, timeout=self.timeout, retry=self.retry
            )
        except PreconditionFailed:
            raise ObjectExists(f"gs://{self.bucket_name}/{name} exists") from None

    def list(self, prefix: str) -> Iterator[str]:
        for blob in self.bucket.list_blobs(prefix=prefix, timeout=self.timeout, retry=self.retry):
            yield blob.name

    def get(self, name: str) -> bytes:
        return self.bucket.blob(name).download_as_bytes(timeout=self.timeout, retry=self.retry)


def open_sink(location: str) -> Sink:
    """`gs://bucket` -> GCSSink, anything else -> DirSink (a folder)."""
    if location.startswith("gs://"):
        bucket = location[5:].strip("/")
        if not bucket or "/" in bucket:
            raise SinkError(f"{location}: expected gs://BUCKET (the log lives under its monitoring/ prefix)")
        return GCSSink(bucket)
    return DirSink(location)
