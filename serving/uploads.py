"""An uploaded file kept in memory: what the prediction APIs take instead of BentoML's `Path`.

BentoML hands a `Path` parameter a temporary file that it creates, writes and deletes for every request;
on this service's small images that was about a third of the server's CPU per request. BentoML treats any
`PurePath` subclass as a multipart file field, so this one gets the same OpenAPI schema (a file field).

The files themselves arrive parsed already: `serving.middleware.UploadGuard` reads and checks the whole
form anyway, so it hands the files over (:func:`forwarded_files`) and sends BentoML a small JSON body that
names them by position (`{"image": "#0"}`) instead of the form, which BentoML would parse a second time
into spooled temporary files (about a fifth of the server's CPU per request). A name resolves only to a
file of the request being served: outside a guarded request a string is refused as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import PurePosixPath
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema
from starlette.datastructures import UploadFile

from serving.inputs import FormFile

#: The files of the request being served, set by the guard around the call into BentoML.
_FORWARDED: ContextVar[Sequence[FormFile]] = ContextVar("orbit_forwarded_files", default=())
_PREFIX = "#"


def reference(index: int) -> str:
    """How the guard's JSON body names the request's file number `index`."""
    return f"{_PREFIX}{index}"


@contextmanager
def forwarded_files(files: Sequence[FormFile]) -> Iterator[None]:
    """Make `files` resolvable by :func:`reference` for the code running inside (the same request)."""
    token = _FORWARDED.set(files)
    try:
        yield
    finally:
        _FORWARDED.reset(token)


class UploadedFile(PurePosixPath):
    """The client's file name (a pure path: nothing on disk) and the file's content."""

    content: bytes = b""

    def read_bytes(self) -> bytes:
        return self.content

    @classmethod
    def from_upload(cls, value: Any) -> UploadedFile:
        if isinstance(value, UploadedFile):
            return value
        if isinstance(value, UploadFile):
            uploaded = cls(value.filename or "upload")
            uploaded.content = value.file.read()
            return uploaded
        if isinstance(value, bytes | bytearray):
            uploaded = cls("upload")
            uploaded.content = bytes(value)
            return uploaded
        if isinstance(value, str) and value.startswith(_PREFIX) and value[1:].isdigit():
            files = _FORWARDED.get()
            index = int(value[1:])
            if index < len(files):
                uploaded = cls(files[index].filename or "upload")
                uploaded.content = files[index].data
                return uploaded
        raise PydanticCustomError("file_type", "expected an uploaded file")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.from_upload, serialization=core_schema.plain_serializer_function_ser_schema(cls.read_bytes)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        # What BentoML states for its own file fields: a file in requests, a binary string in responses.
        if handler.mode == "validation":
            return {"type": "file", "format": "binary"}
        return {"type": "string", "format": "binary"}
