"""A BentoML service with no model: `make bench-serve` starts it to show BentoML's own start-up time.

Our service's ready time is this floor (two processes importing BentoML) plus loading the model; the
difference says how much of the start is still ours to cut.
"""

from __future__ import annotations

import bentoml


@bentoml.service
class EmptyService:
    @bentoml.api
    def ping(self) -> dict:
        return {"ok": True}
