"""Check an upload request before BentoML parses it: media type, size, and the shape of the form.

BentoML answers 500 to several malformed requests (a multipart body without a boundary, an unknown binary
field, text where a file is expected; it even tries to download a text field as a URL). These checks
turn each of them into a 4xx whose JSON body says what was wrong and what to send instead. The one pass
over the form also collects the files, so that nothing parses the form a second time
(:mod:`serving.middleware`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class UploadRejected(Exception):
    """The request cannot be served as sent; `status` is the HTTP status, the message the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FormFile:
    """One file of a checked form: the client's file name (decoded) and the content."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class UploadRule:
    """What one route accepts: files in one multipart field, at most `max_files` of them; `many` when the
    API takes them as a list (`list[UploadedFile]`), not as one file."""

    field: str
    max_files: int = 1
    many: bool = False

    @property
    def example(self) -> str:
        return f'curl -F "{self.field}=@planet.jpg" URL'


def boundary_of(content_type: str | None, rule: UploadRule) -> bytes:
    """The multipart boundary, or :class:`UploadRejected` for any other kind of body."""
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        got = media_type.decode("latin-1") or "no Content-Type"
        raise UploadRejected(
            415,
            f"send the image as a multipart/form-data file in the field '{rule.field}' "
            f"(e.g. {rule.example}); got {got}",
        )
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise UploadRejected(
            400,
            "the multipart/form-data Content-Type has no boundary; let your HTTP client "
            "build the form (e.g. curl -F) instead of setting the header by hand",
        )
    return boundary


def content_length_of(header: str | None, limit: int) -> int | None:
    """The declared body size, checked against `limit` before any byte is read."""
    if header is None:
        return None
    try:
        length = int(header)
    except ValueError:
        raise UploadRejected(400, f"invalid Content-Length header {header!r}") from None
    if length > limit:
        raise UploadRejected(413, too_large_message(limit))
    return length


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than the limit of {limit:,} bytes ({limit / 2**20:.1f} MiB); "
        "send a smaller image (the model uses a few dozen pixels per side)"
    )


def check_filename(raw: bytes, rule: UploadRule) -> str:
    """The decoded file name; refuse one with a NUL character (no file system or log line can hold it).

    Its length is not limited: the prediction APIs keep uploads in memory (serving.uploads), so the name is
    never a temporary file's suffix as with BentoML's `Path` parameters.
    """
    try:  # decoded and cut to its last path component the way Starlette and BentoML do it
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("latin-1")
    if "\0" in os.path.basename(name):
        raise UploadRejected(
            400, f"the file name in '{rule.field}' contains a NUL character; rename the file"
        )
    return name


def check_form(body: bytes, boundary: bytes, rule: UploadRule) -> list[FormFile]:
    """Check the part headers and return the files in their order; reject anything else."""
    parts: list[dict[bytes, bytes]] = []
    datas: list[list[bytes]] = []
    header: dict[bytes, bytes] = {}
    field: list[bytes] = []
    value: list[bytes] = []
    ended: list[bool] = []

    def on_header_end() -> None:
        header[b"".join(field).strip().lower()] = b"".join(value).strip()
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        parts.append(dict(header))
        header.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        datas[-1].append(data[start:end])

    callbacks = {
        "on_part_begin": lambda: datas.append([]),
        "on_part_data": on_part_data,
        "on_header_field": lambda data, start, end: field.append(data[start:end]),
        "on_header_value": lambda data, start, end: value.append(data[start:end]),
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise UploadRejected(400, f"malformed multipart/form-data body ({exc}); {rule.example}") from None
    if not ended:
        raise UploadRejected(
            400, "the multipart/form-data body is truncated (no closing boundary); send the whole request"
        )

    files: list[FormFile] = []
    for headers, chunks in zip(parts, datas, strict=False):
        disposition, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise UploadRejected(400, f"a form part has no field name; {rule.example}")
        if name != rule.field:
            raise UploadRejected(
                400,
                f"unexpected form field '{name}': this endpoint takes files in the field '{rule.field}' "
                f"({rule.example})",
            )
        if b"filename" not in options:
            raise UploadRejected(
                400, f"the field '{rule.field}' must be a file upload, not a text value ({rule.example})"
            )
        filename = check_filename(options[b"filename"], rule)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not data:
            raise UploadRejected(
                400, f"the upload in '{rule.field}' is empty (0 bytes); send a JPEG or PNG file"
            )
        files.append(FormFile(filename, data))
    if not files:
        raise UploadRejected(400, f"no file in the field '{rule.field}'; {rule.example}")
    if len(files) > rule.max_files:
        if rule.max_files == 1:
            raise UploadRejected(400, f"send one file in '{rule.field}'; use /predict_batch for several")
        raise UploadRejected(
            413, f"{len(files)} files in one request; the limit is {rule.max_files}: split the batch"
        )
    return files
