"""The in-memory upload type: BentoML must still see a multipart file field, and no temporary file is made."""

from __future__ import annotations

import io

import pydantic
import pytest
from starlette.datastructures import UploadFile

from serving.uploads import UploadedFile
from tests.serving.conftest import COLOURS, disc, encode

JPEG = encode(disc(COLOURS["Mars"]))


def test_an_upload_becomes_its_bytes_and_the_clients_file_name():
    uploaded = UploadedFile.from_upload(UploadFile(io.BytesIO(b"\xff\xd8data"), filename="dir/planet.jpg"))
    assert uploaded.read_bytes() == b"\xff\xd8data"
    assert uploaded.name == "planet.jpg"


def test_a_text_value_is_not_taken_for_a_file():
    with pytest.raises(pydantic.ValidationError, match="expected an uploaded file"):
        pydantic.TypeAdapter(UploadedFile).validate_python("https://example.com/planet.jpg")


def test_bentoml_treats_it_as_a_multipart_file(client):
    from serving.service import PlanetClassifier

    for name, field in (("predict", "image"), ("predict_batch", "images")):
        spec = PlanetClassifier.apis[name].input_spec
        assert spec.mime_type() == "multipart/form-data"
        assert spec.multipart_fields == [field]
    schema = PlanetClassifier.apis["predict"].input_spec.model_json_schema()
    assert schema["properties"]["image"] == {"format": "binary", "title": "Image", "type": "file"}


def test_predictions_make_no_temporary_file(client, monkeypatch):
    """BentoML gives a `Path` parameter a file in a request directory from this pool: a third of the CPU."""
    from bentoml._internal import context

    def refuse() -> str:
        raise AssertionError("a temporary directory was requested for an upload")

    monkeypatch.setattr(context.request_tempdir_pool, "acquire", refuse)
    assert client.post("/predict", files={"image": ("planet.jpg", JPEG)}).json()["prediction"] == "Mars"
    response = client.post("/predict_batch", files=[("images", ("a.jpg", JPEG)), ("images", ("b.jpg", JPEG))])
    assert response.status_code == 200, response.text
