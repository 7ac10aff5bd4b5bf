"""An uploaded file kept in memory: what the prediction APIs take instead of BentoML's `Path`.

BentoML hands a `Path` parameter a temporary file that it creates, writes and deletes for every request;
on this service's small images that was about a third of the server's CPU per request. BentoML treats any
`PurePath` subclass as a multipart file field, so this one gets the same form parsing and OpenAPI schema,
but validates to the bytes Starlette already holds (in memory up to 1 MiB, spooled to disk above).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import PydanticCustomError, core_schema
from starlette.datastructures import UploadFile


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
