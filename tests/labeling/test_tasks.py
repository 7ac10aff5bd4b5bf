"""Tasks from a folder and from the bucket: deduplicated by content hash, each with the model's
pre-annotation (choice, score, model version), media served by Label Studio under a content-hash name."""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
import time

import httpx
import pytest

from labeling.project import ensure_project
from labeling.tasks import ImportReport, bucket_images, folder_images, identify, import_images, predict_batch
from local.net import free_port
from tests.labeling.conftest import CLASSES, COLOURS, MODEL_TAG, disc


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(CLASSES):
        (folder / f"{i}-unnamed.jpg").write_bytes(disc(COLOURS[name], seed=i))
    (folder / "sub" / "copy-of-0.jpg").write_bytes((folder / "0-unnamed.jpg").read_bytes())  # same bytes
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_identify_names_what_is_not_an_image_and_hashes_the_rest(monkeypatch):
    from PIL import Image

    good = disc(COLOURS["Mars"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # a 40x40 disc is then a "decompression bomb"
    report = ImportReport()
    assert identify([("bomb.jpg", good), ("text.jpg", b"hello"), ("cut.jpg", good[:200])], report) == []
    assert [r.split(":")[0] for r in report.rejected] == ["bomb.jpg", "text.jpg", "cut.jpg"]
    monkeypatch.undo()
    [found] = identify([("ok.jpg", good)], report)
    assert (found.sha256, found.ext) == (hashlib.sha256(good).hexdigest(), "jpg")


def project_tasks(ls, project_id):
    return ls.tasks(project_id)


@pytest.mark.slow
def test_folder_import_is_deduplicated_and_pre_annotated(ls, title, model_service, image_folder):
    project, _ = ensure_project(ls, CLASSES, title=title)
    predict = functools.partial(predict_batch, model_service.url)
    report = import_images(
        ls, project["id"], folder_images(image_folder), predict=predict, model_version=MODEL_TAG
    )
    assert (report.imported, report.already_there) == (3, 1)  # the copy of 0 is the same image
    assert len(report.rejected) == 1 and "notes.jpg" in report.rejected[0]

    tasks = project_tasks(ls, project["id"])
    assert len(tasks) == 3
    by_hash = {t["data"]["sha256"]: t for t in tasks}
    for i, name in enumerate(CLASSES):
        data = disc(COLOURS[name], seed=i)
        task = by_hash[hashlib.sha256(data).hexdigest()]
        [prediction] = task["predictions"]
        assert prediction["model_version"] == MODEL_TAG
        assert prediction["result"][0]["value"]["choices"] == [name]
        assert 0.5 < prediction["score"] <= 1.0
        # Label Studio itself serves the media file, named by its hash, to the labelling page
        assert task["data"]["image"].endswith(f"media/{task['data']['sha256']}.jpg")
        assert ls.http.get(task["data"]["image"]).content == data
        assert ls.fetch(task["data"]["image"]) == data

    again = import_images(
        ls, project["id"], folder_images(image_folder), predict=predict, model_version=MODEL_TAG
    )
    assert (again.imported, again.already_there) == (0, 4)
    assert len(project_tasks(ls, project["id"])) == 3


@pytest.mark.slow
def test_a_failing_model_service_imports_nothing_and_says_so(ls, title, image_folder):
    project, _ = ensure_project(ls, CLASSES, title=title)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match="make serve"):
        import_images(
            ls,
            project["id"],
            folder_images(image_folder),
            predict=functools.partial(predict_batch, dead),
            model_version=MODEL_TAG,
        )
    assert project_tasks(ls, project["id"]) == []


@pytest.fixture
def emulator():
    """gcp-storage-emulator in memory on a free loopback port, as local.bucket runs it."""
    port = free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--port", str(port), "--in-memory", "-q"], start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{endpoint}/storage/v1/b?project=p", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_bucket_import_reads_the_monitoring_prefix_only(ls, title, model_service, emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator}
    )
    bucket = client.create_bucket("orbit-data")
    bucket.blob("monitoring/images/2026-12-01/a.jpg").upload_from_string(disc(COLOURS["Neptune"], seed=7))
    bucket.blob("monitoring/records/2026-12-01/a.json").upload_from_string(b"{}")
    bucket.blob("elsewhere/b.jpg").upload_from_string(disc(COLOURS["Mars"], seed=8))

    project, _ = ensure_project(ls, CLASSES, title=title)
    report = import_images(
        ls,
        project["id"],
        bucket_images("orbit-data", client=client),
        predict=functools.partial(predict_batch, model_service.url),
        model_version=MODEL_TAG,
    )
    assert report.imported == 1
    [task] = project_tasks(ls, project["id"])
    assert task["data"]["source"] == "gs://orbit-data/monitoring/images/2026-12-01/a.jpg"
    assert task["predictions"][0]["result"][0]["value"]["choices"] == ["Neptune"]
