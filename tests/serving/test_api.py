"""The service in-process: response schema, image kinds, every bad input, parity with the pipeline."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from ml.evaluate import predict_files
from ml.preprocess import PreprocessConfig, preprocess_batch
from serving.classifier import Classifier
from tests.conftest import REAL_DATA
from tests.serving.conftest import CLASSES, COLOURS, IMAGE_SIZE, corrupt_exif_jpeg, disc, encode

CONFIG = PreprocessConfig(IMAGE_SIZE, "rgb")


def post_image(
    client, data: bytes, *, field: str = "image", filename: str = "planet.jpg", route: str = "/predict"
):
    return client.post(route, files={field: (filename, data, "application/octet-stream")})


def expected_probabilities(keras_model, payloads: list[bytes]) -> np.ndarray:
    return np.asarray(keras_model(preprocess_batch(payloads, CONFIG), training=False))


def assert_prediction_schema(body: dict) -> None:
    assert set(body) == {"prediction", "probabilities", "unknown", "novelty"}
    assert isinstance(body["unknown"], bool) and isinstance(body["novelty"], float)
    assert list(body["probabilities"]) == CLASSES
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["prediction"] == max(body["probabilities"], key=body["probabilities"].get)


@pytest.mark.parametrize("expected", CLASSES)
def test_predict_answers_the_class_of_the_dominant_colour(client, expected):
    response = post_image(client, encode(disc(COLOURS[expected])))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction_schema(body)
    assert body["prediction"] == expected
    assert body["probabilities"][expected] > 0.5


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    return encode(disc(COLOURS["Uranus"], size=(48, 30)), "JPEG", exif=exif)


IMAGE_KINDS = {
    "greyscale-jpeg": encode(disc(COLOURS["Neptune"], mode="L")),
    "rgba-png": encode(disc(COLOURS["Mars"], mode="RGBA"), "PNG"),
    "rgb-png": encode(disc(COLOURS["Uranus"]), "PNG"),
    "palette-png": encode(disc(COLOURS["Mars"], mode="P"), "PNG"),
    "wide-jpeg": encode(disc(COLOURS["Neptune"], size=(300, 120))),  # letterboxed
    "cmyk-jpeg": encode(disc(COLOURS["Mars"], mode="CMYK")),
    "animated-gif": encode(
        disc(COLOURS["Neptune"]), "GIF", save_all=True, append_images=[disc(COLOURS["Mars"])]
    ),
    "tiff": encode(disc(COLOURS["Uranus"]), "TIFF"),
    "webp": encode(disc(COLOURS["Neptune"]), "WEBP"),
    "bmp": encode(disc(COLOURS["Mars"]), "BMP"),
    "ico": encode(disc(COLOURS["Uranus"]), "ICO"),
    "exif-rotated-jpeg": exif_rotated_jpeg(),
    "1x1-png": encode(Image.new("RGB", (1, 1), COLOURS["Mars"]), "PNG"),
    "long-thin-png": encode(disc(COLOURS["Neptune"], size=(4000, 8)), "PNG"),  # square 16 M px: allowed
}


@pytest.mark.parametrize("kind", list(IMAGE_KINDS))
def test_other_image_kinds_get_the_same_answer_as_the_pipeline(client, keras_model, kind):
    data = IMAGE_KINDS[kind]
    response = post_image(client, data, filename=f"x.{kind.rsplit('-', 1)[-1]}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction_schema(body)
    expected = expected_probabilities(keras_model, [data])[0]
    np.testing.assert_allclose(list(body["probabilities"].values()), expected, atol=1e-5)


def test_rgba_transparency_is_black_not_white(client):
    """A red disc whose outside is transparent white must still read as red on black (training's look)."""
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent...
    rgba[10:30, 10:30] = (220, 40, 30, 255)  # ...around an opaque red square
    response = post_image(client, encode(Image.fromarray(rgba, "RGBA"), "PNG"), filename="x.png")
    assert response.json()["prediction"] == "Mars"


def unknown_images() -> dict[str, bytes]:
    """Images of none of the classes: dwarf planets the model never saw, pixel noise, a photo crop."""
    from ml.synthetic import probe_images, render_unknown

    rng = np.random.default_rng(5)
    return {
        "Eris": encode(render_unknown("Eris", 128, rng)),
        "Ceres": encode(render_unknown("Ceres", 128, rng)),
        "noise": encode(probe_images("noise", 1, rng)[0]),
        "photo": encode(probe_images("photos", 1, rng)[0]),
    }


@pytest.mark.parametrize("name", ["Eris", "Ceres", "noise", "photo"])
def test_an_image_of_no_known_class_comes_back_unknown(client, name):
    response = post_image(client, unknown_images()[name])
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction_schema(body)
    assert body["unknown"] is True, body  # still answered with its nearest class, as before
    known = post_image(client, encode(disc(COLOURS["Mars"]))).json()
    assert known["unknown"] is False and body["novelty"] > known["novelty"]


def test_novelty_is_the_bundles_score_of_the_same_model_call(model_dir):
    """One model call per batch gives both answers; novelty is ml.novelty's score of its embeddings."""
    from ml.inference import Predictor
    from ml.novelty import load_from_bundle

    classifier = Classifier.load(model_dir)
    calls = []
    run = classifier.predictor.run
    classifier.predictor.run = lambda x: calls.append(len(x)) or run(x)
    payloads = [encode(disc(COLOURS[c])) for c in CLASSES] + list(unknown_images().values())
    results = classifier.classify(payloads)
    assert calls == [len(payloads)]  # no second forward pass for the embedding
    predictor = Predictor.load(model_dir)
    detector = load_from_bundle(model_dir, predictor.meta)
    embeddings = predictor.run(preprocess_batch(payloads, CONFIG))[1]
    np.testing.assert_allclose([r.novelty for r in results], detector.score(embeddings), rtol=1e-6, atol=1e-6)
    assert [r.unknown for r in results] == [False] * len(CLASSES) + [True] * len(unknown_images())


def test_a_bundle_without_a_novelty_model_is_refused_with_the_fix(model_dir, tmp_path):
    import shutil

    from ml.bundle import BundleError, read_bundle, write_bundle_meta

    folder = tmp_path / "old-bundle"
    shutil.copytree(model_dir, folder)
    write_bundle_meta(folder, read_bundle(folder).model_copy(update={"novelty": None}))
    with pytest.raises(BundleError, match=r"no novelty model.*make repro"):
        Classifier.load(folder)


def test_predict_batch_answers_each_image_in_order(client):
    order = ["Neptune", "Mars", "Uranus", "Mars"]
    files = [("images", (f"{i}.jpg", encode(disc(COLOURS[c])), "image/jpeg")) for i, c in enumerate(order)]
    response = client.post("/predict_batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["prediction"] for item in body] == order
    for item, (_, (_, data, _)) in zip(body, files, strict=True):
        assert_prediction_schema(item)
        single = post_image(client, data).json()
        np.testing.assert_allclose(
            list(item["probabilities"].values()), list(single["probabilities"].values()), atol=1e-5
        )
        assert item["unknown"] is single["unknown"] is False
        assert item["novelty"] == pytest.approx(single["novelty"], abs=1e-3)


def test_predict_batch_flags_each_unknown_image(client):
    payloads = [encode(disc(COLOURS["Uranus"])), unknown_images()["noise"], encode(disc(COLOURS["Mars"]))]
    files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(payloads)]
    body = client.post("/predict_batch", files=files).json()
    assert [item["unknown"] for item in body] == [False, True, False]


def test_parity_with_the_pipeline_evaluation(client, keras_model, tmp_path):
    """Service and pipeline agree on class and probabilities for the same files (real ones when present)."""
    paths = []
    for i, (name, colour) in enumerate(COLOURS.items()):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(encode(disc(colour, size=(64 + 8 * i, 64))))
        paths.append(path)
    if REAL_DATA.is_dir():  # a few real renders too, when ../shared is there
        paths += sorted(REAL_DATA.glob("*/*.jpg"))[::40][:8]
    expected = predict_files(keras_model, paths, CONFIG, batch_size=64)
    for path, probabilities in zip(paths, expected, strict=True):
        body = post_image(client, path.read_bytes(), filename=path.name).json()
        assert body["prediction"] == CLASSES[int(np.argmax(probabilities))], path.name
        np.testing.assert_allclose(list(body["probabilities"].values()), probabilities, atol=1e-5)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "orbit-test-boundary") -> bytes:
    """A hand-made multipart body: (field name, filename or None for a text field, content)."""
    chunks = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


MULTIPART = {"Content-Type": "multipart/form-data; boundary=orbit-test-boundary"}
JPEG = encode(disc(COLOURS["Mars"]))


def corrupt_jpeg() -> bytes:
    data = bytearray(JPEG)
    data[2:40] = b"\x00" * 38  # wipe the markers after SOI: Pillow cannot parse the header
    return bytes(data)


#: 1x100000 pixels in a few hundred bytes: letterboxing before resizing once made it a 100000x100000 canvas.
LONG_LINE = encode(Image.new("RGB", (1, 100_000)), "PNG")


def pixel_bomb() -> bytes:
    """A 6000x6000 PNG of a few KB: 36 M pixels, over the default 25 M limit."""
    buffer = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS = {
    "text-file": dict(files={"image": ("notes.txt", b"hello, not an image", "text/plain")}),
    "truncated-jpeg": dict(files={"image": ("cut.jpg", JPEG[: len(JPEG) // 2], "image/jpeg")}),
    "corrupt-jpeg": dict(files={"image": ("bad.jpg", corrupt_jpeg(), "image/jpeg")}),
    "empty-upload": dict(files={"image": ("empty.jpg", b"", "image/jpeg")}),
    "wrong-field-name": dict(files={"file": ("planet.jpg", JPEG, "image/jpeg")}),
    "text-value-not-file": dict(
        content=multipart([("image", None, b"http://127.0.0.1:9/planet.jpg")]), headers=MULTIPART
    ),
    "json-body": dict(
        content=json.dumps({"image": "planet.jpg"}).encode(), headers={"Content-Type": "application/json"}
    ),
    "plain-text-body": dict(content=b"planet.jpg", headers={"Content-Type": "text/plain"}),
    "no-content-type": dict(content=JPEG, headers={"Content-Type": ""}),
    "multipart-without-boundary": dict(content=b"xx", headers={"Content-Type": "multipart/form-data"}),
    "malformed-multipart": dict(content=b"this is not multipart", headers=MULTIPART),
    "unterminated-multipart": dict(content=multipart([("image", "a.jpg", JPEG)])[:-30], headers=MULTIPART),
    "two-images-to-predict": dict(
        content=multipart([("image", "a.jpg", JPEG), ("image", "b.jpg", JPEG)]), headers=MULTIPART
    ),
    "extra-binary-field": dict(
        content=multipart([("image", "a.jpg", JPEG), ("extra", "b.bin", b"\xff\xfe")]), headers=MULTIPART
    ),
    "pixel-bomb": dict(files={"image": ("bomb.png", pixel_bomb(), "image/png")}),
    # Found by the adversarial probe; each answered 500 (or worse) before the fix:
    "corrupt-exif": dict(files={"image": ("exif.jpg", corrupt_exif_jpeg(COLOURS["Mars"]), "image/jpeg")}),
    "filename-with-nul": dict(content=multipart([("image", "a\x00b.jpg", JPEG)]), headers=MULTIPART),
    # and a few more that were already refused properly:
    "svg-named-jpeg": dict(
        files={"image": ("x.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/jpeg")}
    ),
    "jpeg-header-then-garbage": dict(
        files={"image": ("x.jpg", JPEG[:200] + bytes(range(256)) * 8, "image/jpeg")}
    ),
    "batch-field-on-predict": dict(files={"images": ("a.jpg", JPEG, "image/jpeg")}),
}

EXPECTED = {  # status, a phrase the error must contain
    "text-file": (400, "not a recognised image format"),
    "truncated-jpeg": (400, "truncated"),
    "corrupt-jpeg": (400, "image"),
    "empty-upload": (400, "empty"),
    "wrong-field-name": (400, "unexpected form field 'file'"),
    "text-value-not-file": (400, "must be a file upload"),
    "json-body": (415, "multipart/form-data"),
    "plain-text-body": (415, "multipart/form-data"),
    "no-content-type": (415, "multipart/form-data"),
    "multipart-without-boundary": (400, "boundary"),
    "malformed-multipart": (400, "malformed multipart"),
    "unterminated-multipart": (400, "truncated"),
    "two-images-to-predict": (400, "/predict_batch"),
    "extra-binary-field": (400, "unexpected form field 'extra'"),
    "pixel-bomb": (400, "pixels"),
    "corrupt-exif": (400, "EXIF data is corrupt"),
    "filename-with-nul": (400, "NUL character"),
    "svg-named-jpeg": (400, "not a recognised image format"),
    "jpeg-header-then-garbage": (400, "image"),
    "batch-field-on-predict": (400, "unexpected form field 'images'"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_json_error_that_says_what_is_wrong(client, case):
    response = client.post("/predict", **BAD_REQUESTS[case])
    status, phrase = EXPECTED[case]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert phrase in response.json()["error"]


@pytest.mark.parametrize("name", ["a" * 246 + ".jpg", "\U0001fa90" * 80 + ".jpg"])
def test_a_file_name_longer_than_a_file_system_allows_is_fine(client, name):
    """Uploads stay in memory, so a 250- or 324-byte name (BentoML's `Path` made it a 500) needs no limit."""
    response = client.post("/predict", content=multipart([("image", name, JPEG)]), headers=MULTIPART)
    assert response.status_code == 200, response.text


def test_oversized_upload_is_refused_before_decoding(client):
    from serving.service import SETTINGS

    big = JPEG + b"\0" * SETTINGS.max_upload_bytes
    response = post_image(client, big)
    assert response.status_code == 413
    assert f"{SETTINGS.max_upload_bytes:,} bytes" in response.json()["error"]


def test_batch_with_a_bad_image_names_every_bad_file(client):
    files = [
        ("images", ("a.jpg", JPEG, "image/jpeg")),
        ("images", ("b.txt", b"nope", "text/plain")),
        ("images", ("c.jpg", JPEG[:100], "image/jpeg")),
    ]
    response = client.post("/predict_batch", files=files)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "images[1]" in error and "images[2]" in error and "images[0]" not in error


def test_a_file_that_breaks_the_decoder_fails_only_its_own_slot(client):
    """Pillow's struct.error on a corrupt EXIF used to fail every request batched with it (a 500 for all)."""
    files = [
        ("images", ("a.jpg", JPEG, "image/jpeg")),
        ("images", ("b.jpg", corrupt_exif_jpeg(COLOURS["Neptune"]), "image/jpeg")),
        ("images", ("c.png", pixel_bomb(), "image/png")),
    ]
    response = client.post("/predict_batch", files=files)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "images[1]: the image's EXIF data is corrupt" in error
    assert "images[2]: the image is" in error and "pixels" in error
    assert "images[0]" not in error


def test_classify_isolates_each_upload(keras_model, model_dir):
    """Within one model call, bad uploads get their own error and the good ones are still classified."""
    classifier = Classifier.load(model_dir)
    good = encode(disc(COLOURS["Uranus"]))
    results = classifier.classify([corrupt_exif_jpeg(COLOURS["Mars"]), good, pixel_bomb(), good])
    assert [type(r).__name__ for r in results] == [
        "InvalidImageError",
        "Classified",
        "InvalidImageError",
        "Classified",
    ]
    np.testing.assert_allclose(
        results[1].probabilities, expected_probabilities(keras_model, [good])[0], atol=1e-5
    )


@pytest.mark.parametrize(
    "filename",
    ["../../../../tmp/orbit-traversal.jpg", "/etc/passwd", "планета \U0001fa90.jpg", "b" * 196 + ".jpg", ""],
    ids=["traversal", "absolute", "unicode", "200-bytes", "empty"],
)
def test_odd_but_usable_file_names_are_served(client, filename):
    response = client.post("/predict", content=multipart([("image", filename, JPEG)]), headers=MULTIPART)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "Mars"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
@pytest.mark.parametrize("route", ["/predict", "/predict_batch"])
def test_wrong_method_gets_a_json_405(client, method, route):
    response = client.request(method, route)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/json"
    if method != "HEAD":
        assert f"{method} is not allowed here; POST a multipart/form-data file" in response.json()["error"]


def test_batch_with_too_many_files_is_refused(client):
    from serving.service import SETTINGS

    files = [("images", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(SETTINGS.max_batch_files + 1)]
    response = client.post("/predict_batch", files=files)
    assert response.status_code == 413
    assert f"limit is {SETTINGS.max_batch_files}" in response.json()["error"]


def test_service_still_answers_after_every_bad_input(client):
    for request in BAD_REQUESTS.values():
        assert client.post("/predict", **request).status_code < 500
    assert post_image(client, JPEG).json()["prediction"] == "Mars"


def test_health_and_openapi(client):  # /metrics needs the multi-process server: see test_http.py
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {"/predict", "/predict_batch"} <= set(spec["paths"])
    from serving.service import SETTINGS

    images = spec["components"]["schemas"]["predict_batch__Input"]["properties"]["images"]
    assert (images["minItems"], images["maxItems"]) == (1, SETTINGS.max_batch_files)  # the guard's bounds


@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (1, 100_000), (255, 255, 255)), Image.new("RGB", (20_000, 2), (255, 255, 255))],
    ids=["1x100000-png", "20000x2-png"],
)
def test_long_thin_images_are_served_without_a_huge_canvas(client, image):
    """Scaling before letterboxing keeps the work proportional to the model's input, whatever the shape."""
    response = client.post("/predict", files={"image": ("line.png", encode(image, "PNG"), "image/png")})
    assert response.status_code == 200, response.text
    assert sum(response.json()["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
