"""Label Studio's ML-backend protocol in front of the BentoML service, on loopback only.

    python -m labeling backend [--port 9090] [--service-url http://127.0.0.1:3000]

`GET /health`, `POST /setup` and `POST /predict` as Label Studio calls them; `/predict` answers for
**every** task of the request, in order (the guide's backend answered only the first), by sending all
their images to the service's `POST /predict_batch` in one go. Images are read the way the export reads
them (`LabelStudio.fetch`): media from the local folder, anything else from Label Studio with the token.
A task whose image cannot be read gets an empty prediction and the reason in the log; the others still
get theirs. The adapter holds no model, so it needs neither TensorFlow nor Label Studio's packages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from labeling.project import IMAGE_NAME
from labeling.tasks import ModelServiceError, to_prediction

HOST = "127.0.0.1"
DEFAULT_PORT = 9090
log = logging.getLogger("labeling.backend")


def create_app(
    *,
    fetch: Callable[[str], bytes],
    predict: Callable[[Sequence[bytes]], list[dict]],
    model_version: str,
) -> Starlette:
    """The protocol over `fetch` (task image URL -> bytes) and `predict` (images -> service answers)."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "UP", "model_class": "orbit planet-classifier (BentoML)"})

    async def setup(_: Request) -> JSONResponse:
        return JSONResponse({"model_version": model_version})

    async def predict_tasks(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            tasks = body["tasks"]
            if not isinstance(tasks, list):
                raise TypeError("'tasks' must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"expected {{'tasks': [...]}} ({exc})"}, status_code=400)
        images: dict[int, bytes] = {}
        for index, task in enumerate(tasks):
            url = (task.get("data") or {}).get(IMAGE_NAME) if isinstance(task, dict) else None
            try:
                images[index] = fetch(url)
            except Exception as exc:  # one unreadable task must not cost the others their prediction
                log.warning("task %s: cannot read its image %r: %s", _task_id(task), url, exc)
        try:
            answers = dict(zip(images, predict(list(images.values())), strict=True)) if images else {}
        except ModelServiceError as exc:  # say so to Label Studio, whose log shows it, instead of a bare 500
            return JSONResponse({"error": str(exc)}, status_code=503)
        empty = {"model_version": model_version, "score": 0.0, "result": []}
        results = [
            to_prediction(answers[i], model_version) if i in answers else empty for i in range(len(tasks))
        ]
        return JSONResponse({"results": results, "model_version": model_version})

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/", health, methods=["GET"]),
            Route("/setup", setup, methods=["POST"]),
            Route("/predict", predict_tasks, methods=["POST"]),
        ]
    )


def _task_id(task: object) -> object:
    return task.get("id") if isinstance(task, dict) else None


def connect(ls, project_id: int, backend_url: str, title: str = "orbit served model") -> tuple[dict, bool]:
    """Attach the backend to the project once; Label Studio checks `/health` and `/setup` on the way.

    An earlier orbit backend at another address (a different port last time) is removed, so the project
    never asks a dead one.
    """
    kept = None
    for backend in ls.ml_backends(project_id):
        if backend.get("url", "").rstrip("/") == backend_url.rstrip("/"):
            kept = backend
        elif backend.get("title") == title:
            ls.request("DELETE", f"/api/ml/{backend['id']}")
    if kept:
        return kept, False
    return ls.add_ml_backend(project_id, backend_url, title), True
