"""ASGI middleware that vets upload requests before BentoML sees them.

It reads the body of the guarded routes itself (bounded by the size limit, so a huge or endless upload is
cut off early) and checks the form with :mod:`serving.inputs`. Every rejection, a wrong method included, is
a JSON `{"error": ...}` with a 4xx status; other routes pass through untouched.

A form that passes is not replayed to BentoML as it came: its files are handed over in memory
(:func:`serving.uploads.forwarded_files`) and BentoML gets `{"field": "#0"}` (or a list of such names) as
`application/json`, the other body its API endpoints take, so the form is parsed once, here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from serving.inputs import (
    FormFile,
    UploadRejected,
    UploadRule,
    boundary_of,
    check_form,
    content_length_of,
    too_large_message,
)
from serving.uploads import forwarded_files, reference

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(
    send: Send, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Headers that describe the body; the forwarded JSON body gets its own.
_REPLACED_HEADERS = (b"content-type", b"content-length", b"transfer-encoding")


class _Disconnected(Exception):
    pass


class UploadGuard:
    def __init__(self, app: ASGIApp, *, rules: Mapping[str, UploadRule], max_body_bytes: int) -> None:
        self.app = app
        self.rules = dict(rules)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = self.rules.get(scope.get("path", "")) if scope["type"] == "http" else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "POST":  # BentoML's own 405 is plain text
            await send_json_error(
                send,
                405,
                f"{scope.get('method')} is not allowed here; POST a multipart/form-data file in the field "
                f"'{rule.field}' ({rule.example})",
                headers=((b"allow", b"POST"),),
            )
            return
        try:
            files = await self._read_checked_body(scope, receive, rule)
        except UploadRejected as exc:
            await send_json_error(send, exc.status, exc.message)
            return
        except _Disconnected:
            return

        names = [reference(i) for i in range(len(files))]
        body = json.dumps({rule.field: names if rule.many else names[0]}).encode()
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in _REPLACED_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {**scope, "headers": headers}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect as the server would signal it

        with forwarded_files(files):
            await self.app(scope, replay, send)

    async def _read_checked_body(self, scope: Scope, receive: Receive, rule: UploadRule) -> list[FormFile]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        boundary = boundary_of(headers.get("content-type"), rule)
        content_length_of(headers.get("content-length"), self.max_body_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                raise UploadRejected(413, too_large_message(self.max_body_bytes))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return check_form(b"".join(chunks), boundary, rule)
