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


def test_the_form_is_parsed_once_by_the_guard_not_again_by_bentoml(client, monkeypatch):
    """The guard hands its files over; BentoML's multipart parsing (spooled files) is never reached."""
    from _bentoml_impl.serde import MultipartSerde

    async def refuse(self, request, cls):
        raise AssertionError("BentoML parsed the form a second time")

    monkeypatch.setattr(MultipartSerde, "parse_request", refuse)
    blue = encode(disc(COLOURS["Neptune"]))
    assert client.post("/predict", files={"image": ("planet.jpg", JPEG)}).json()["prediction"] == "Mars"
    response = client.post("/predict_batch", files=[("images", ("a.jpg", blue)), ("images", ("b.jpg", JPEG))])
    assert [p["prediction"] for p in response.json()] == ["Neptune", "Mars"], "each file, in order"


def test_the_guard_collects_each_file_with_its_name():
    from serving.inputs import UploadRule, check_form

    body = (
        b'--b\r\nContent-Disposition: form-data; name="images"; filename="dir/a.jpg"\r\n\r\nfirst\r\n'
        b'--b\r\nContent-Disposition: form-data; name="images"; filename="\xd0\xbf.png"\r\n\r\n'
        + JPEG + b"\r\n--b--\r\n"
    )
    files = check_form(body, b"b", UploadRule("images", max_files=4, many=True))
    assert [(f.filename, f.data) for f in files] == [("dir/a.jpg", b"first"), ("п.png", JPEG)]


def test_a_file_reference_resolves_only_inside_its_request():
    from serving.inputs import FormFile
    from serving.uploads import forwarded_files, reference

    adapter = pydantic.TypeAdapter(list[UploadedFile])
    with forwarded_files([FormFile("dir/a.jpg", b"one"), FormFile("", b"two")]):
        first, second = adapter.validate_python([reference(0), reference(1)])
        assert (first.name, first.read_bytes()) == ("a.jpg", b"one")
        assert (second.name, second.read_bytes()) == ("upload", b"two")
        with pytest.raises(pydantic.ValidationError, match="expected an uploaded file"):
            adapter.validate_python([reference(2)])  # no such file in this request
    with pytest.raises(pydantic.ValidationError, match="expected an uploaded file"):
        adapter.validate_python([reference(0)])  # outside a guarded request: a string as before


def test_a_chunked_upload_reaches_the_api_as_one_body(client):
    """A body sent in chunks (several ASGI messages) is collected, checked and forwarded like any other."""
    from tests.serving.test_api import MULTIPART, multipart

    body = multipart([("image", "planet.jpg", JPEG)])
    chunks = iter([body[:100], body[100:]])  # a generator body: sent with Transfer-Encoding: chunked
    response = client.post("/predict", content=chunks, headers=MULTIPART)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "Mars"
