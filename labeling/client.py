"""A small REST client for the Label Studio endpoints orbit uses; no Label Studio SDK in `.venv`.

The SDK pulls opencv, pandas and nltk (field notes); the dozen calls below are plain JSON over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from labeling.service import Paths, load_credentials, paths, running

LOCAL_FILES_PREFIX = "/data/local-files/"


class LabelStudioError(RuntimeError):
    """Label Studio refused a request or is not reachable; the message names the call and its answer."""


class LabelStudio:
    """One Label Studio server, authenticated with the admin's legacy API token."""

    def __init__(self, url: str, token: str, *, files_root: Path | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.files_root = files_root
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=timeout
        )

    @classmethod
    def local(cls, state: Path | str | None = None) -> LabelStudio:
        """The server `make label` started, with the token from its 0600 credentials file."""
        where: Paths = paths(state)
        current = running(where)
        if current is None:
            raise LabelStudioError("Label Studio is not running; start it with `make label`")
        return cls(current.url, load_credentials(where).token, files_root=where.files_root)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise LabelStudioError(
                f"{method} {self.url}{path} failed: {exc}; is Label Studio running?"
            ) from None
        if answer.status_code >= 400:
            raise LabelStudioError(f"{method} {path} -> {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    # --- projects, storages, tasks -----------------------------------------------------------

    def projects(self) -> list[dict]:
        found = self.request("GET", "/api/projects", params={"page_size": 1000})
        return found["results"] if isinstance(found, dict) else found

    def create_project(self, **fields: Any) -> dict:
        return self.request("POST", "/api/projects", json=fields)

    def update_project(self, project_id: int, **fields: Any) -> dict:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields)

    def local_storages(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/storages/localfiles", params={"project": project_id})

    def create_local_storage(self, project_id: int, path: Path, title: str) -> dict:
        body = {"project": project_id, "path": str(path), "title": title, "use_blob_urls": True}
        return self.request("POST", "/api/storages/localfiles", json=body)

    def import_tasks(self, project_id: int, tasks: list[dict]) -> dict:
        return self.request("POST", f"/api/projects/{project_id}/import", json=tasks)

    def export(self, project_id: int, *, all_tasks: bool = False) -> list[dict]:
        """Label Studio's JSON export: annotated tasks only, unless `all_tasks`."""
        params = {"exportType": "JSON", "download_all_tasks": str(all_tasks).lower()}
        return self.request("GET", f"/api/projects/{project_id}/export", params=params)

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project with its predictions and annotations in full (the JSON export
        lists prediction ids only)."""
        found: list[dict] = []
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": 200, "fields": "all"}
            answer = self.request("GET", "/api/tasks", params=params)
            found += answer["tasks"]
            if not answer["tasks"] or len(found) >= answer["total"]:
                return found
            page += 1

    def export_with_predictions(self, project_id: int) -> list[dict]:
        """The JSON export of annotated tasks, each prediction id replaced by the prediction itself, so
        the export can record the model's pre-label and score next to the person's label."""
        exported = self.export(project_id)
        if not exported:
            return exported
        full = {p["id"]: p for task in self.tasks(project_id) for p in task.get("predictions", [])}
        for task in exported:
            task["predictions"] = [
                full.get(p, p) if isinstance(p, int) else p for p in task.get("predictions", [])
            ]
        return exported

    def annotate(self, task_id: int, result: list[dict]) -> dict:
        return self.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": result})

    def ml_backends(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/ml", params={"project": project_id})

    def add_ml_backend(self, project_id: int, url: str, title: str) -> dict:
        return self.request("POST", "/api/ml", json={"project": project_id, "url": url, "title": title})

    # --- media ---------------------------------------------------------------------------------

    def fetch(self, url_or_path: str) -> bytes:
        """The bytes of a task's image: a local-files URL is read from disk, anything else from the server."""
        parsed = urlparse(url_or_path)
        if parsed.path == LOCAL_FILES_PREFIX and self.files_root is not None and not parsed.netloc:
            relative = parse_qs(parsed.query).get("d", [""])[0]
            target = (self.files_root / relative).resolve()
            if not target.is_relative_to(self.files_root.resolve()) or not target.is_file():
                raise LabelStudioError(f"{url_or_path} names no file under {self.files_root}")
            return target.read_bytes()
        if parsed.netloc and f"{parsed.scheme}://{parsed.netloc}" != self.url:
            raise LabelStudioError(f"{url_or_path} is not on this Label Studio ({self.url}); not fetching it")
        try:
            answer = self.http.get(parsed.path + (f"?{parsed.query}" if parsed.query else ""))
        except httpx.TransportError as exc:
            raise LabelStudioError(f"fetching {url_or_path} failed: {exc}") from None
        if answer.status_code != 200:
            raise LabelStudioError(f"fetching {url_or_path} -> {answer.status_code}")
        return answer.content
