"""The ML-backend protocol: /health, /setup, and /predict answering for every task of a batch."""

from __future__ import annotations

import functools

import httpx
import pytest

from labeling.backend import connect, create_app
from labeling.project import ensure_project
from labeling.tasks import predict_batch
from local.net import free_port
from tests.labeling.conftest import CLASSES, COLOURS, MODEL_TAG, ThreadedServer, disc

IMAGES = {
    f"/data/local-files/?d=media/{name}.jpg": disc(COLOURS[name], seed=i) for i, name in enumerate(CLASSES)
}


@pytest.fixture
def backend(model_service):
    app = create_app(
        fetch=IMAGES.__getitem__,
        predict=functools.partial(predict_batch, model_service.url),
        model_version=MODEL_TAG,
    )
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_health_and_setup_answer_as_label_studio_expects(backend):
    assert backend.get("/health").json()["status"] == "UP"
    assert backend.post("/setup", json={"project": "1.0", "schema": "<View/>"}).json() == {
        "model_version": MODEL_TAG
    }


def test_predict_answers_every_task_of_a_batch_in_order_in_one_model_call(backend, model_service):
    urls = list(IMAGES) * 3  # 9 tasks, mixed classes
    tasks = [{"id": i, "data": {"image": url}} for i, url in enumerate(urls)]
    calls_before = len(model_service.requests)
    answer = backend.post("/predict", json={"tasks": tasks, "project": "1.1"}).json()
    assert len(answer["results"]) == len(tasks)
    expected = [url.split("/")[-1].removesuffix(".jpg") for url in urls]
    got = [r["result"][0]["value"]["choices"][0] for r in answer["results"]]
    assert got == expected
    for result in answer["results"]:
        assert result["model_version"] == MODEL_TAG
        assert 0.5 < result["score"] <= 1.0
        assert {k: result["result"][0][k] for k in ("from_name", "to_name", "type")} == {
            "from_name": "body",
            "to_name": "image",
            "type": "choices",
        }
    assert model_service.requests[calls_before:] == [9]


def test_an_unreadable_task_gets_an_empty_prediction_and_the_others_theirs(backend):
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=media/gone.jpg"}},
        {"id": 2, "data": {"image": list(IMAGES)[0]}},
    ]
    results = backend.post("/predict", json={"tasks": tasks}).json()["results"]
    assert results[0]["result"] == [] and results[0]["score"] == 0.0
    assert results[1]["result"][0]["value"]["choices"] == ["Mars"]


def test_a_request_without_tasks_is_a_clear_400(backend):
    answer = backend.post("/predict", json={"nothing": 1})
    assert answer.status_code == 400 and "tasks" in answer.json()["error"]


@pytest.mark.slow
def test_label_studio_accepts_the_loopback_backend_once(ls, title, model_service):
    project, _ = ensure_project(ls, CLASSES, title=title)
    app = create_app(
        fetch=ls.fetch, predict=functools.partial(predict_batch, model_service.url), model_version=MODEL_TAG
    )
    with ThreadedServer(app) as server:
        added, created = connect(ls, project["id"], server.url)
        assert created and added["url"].rstrip("/") == server.url
        again, created = connect(ls, project["id"], server.url)
        assert not created and again["id"] == added["id"]
        assert len(ls.ml_backends(project["id"])) == 1
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_model_service_that_is_down_is_a_503_that_says_so():
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(
        fetch=IMAGES.__getitem__, predict=functools.partial(predict_batch, dead), model_version=MODEL_TAG
    )
    with ThreadedServer(app) as server:
        answer = httpx.post(
            f"{server.url}/predict", json={"tasks": [{"id": 1, "data": {"image": list(IMAGES)[0]}}]}
        )
    assert answer.status_code == 503 and "make serve" in answer.json()["error"]
