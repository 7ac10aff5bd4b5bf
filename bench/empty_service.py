"""A BentoML service with no model: `make bench-serve` starts it to show BentoML's own floor.

Ready time: our service's is this floor (two processes importing BentoML) plus loading the model; the
difference says how much of the start is still ours to cut. Throughput: `POST /upload` takes the same
multipart upload as `/predict` (in memory, like ours) and answers a small JSON object without looking at
it, so its requests per second are what BentoML itself allows on this machine, before any image work.
"""

from __future__ import annotations

import bentoml
from pydantic import BaseModel

from serving.uploads import UploadedFile


class Received(BaseModel):
    bytes: int


@bentoml.service(logging={"access": {"enabled": False}}, tracing={"excluded_urls": ["/upload"]})
class EmptyService:
    @bentoml.api
    def ping(self) -> dict:
        return {"ok": True}

    @bentoml.api(route="/upload")
    async def upload(self, image: UploadedFile) -> Received:
        return Received(bytes=len(image.read_bytes()))
