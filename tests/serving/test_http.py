"""The real `bentoml serve` on loopback: the guide's curl call, limits from env, metrics, concurrency."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import CLASSES, COLOURS, SERVER_MAX_BATCH_FILES, SERVER_MAX_UPLOAD, disc, encode

pytestmark = pytest.mark.slow

JPEG = encode(disc(COLOURS["Uranus"]))


def batch_size_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^orbit_model_batch_size_sum(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_the_guides_curl_call(server_url, tmp_path):
    image = tmp_path / "planet.jpg"
    image.write_bytes(JPEG)
    out = subprocess.run(
        ["curl", "-s", "-F", f"image=@{image}", f"{server_url}/predict"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body = httpx.Response(200, content=out.stdout).json()
    assert body["prediction"] == "Uranus"
    assert list(body["probabilities"]) == CLASSES


def test_upload_limit_comes_from_the_environment(server_url):
    big = JPEG + b"\0" * SERVER_MAX_UPLOAD
    response = httpx.post(f"{server_url}/predict", files={"image": ("big.jpg", big)}, timeout=30)
    assert response.status_code == 413
    assert f"{SERVER_MAX_UPLOAD:,} bytes" in response.json()["error"]


def test_streamed_body_without_length_is_cut_at_the_limit(server_url):
    """A chunked upload (no Content-Length) is counted while it arrives and refused past the limit."""
    boundary = "orbit-stream"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'.encode()

    def chunks():
        yield head
        for _ in range(SERVER_MAX_UPLOAD // 10_000 + 5):
            yield b"\0" * 10_000

    response = httpx.post(
        f"{server_url}/predict",
        content=chunks(),
        timeout=30,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


def test_batch_file_limit_comes_from_the_environment(server_url):
    files = [("images", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(SERVER_MAX_BATCH_FILES + 1)]
    assert httpx.post(f"{server_url}/predict_batch", files=files, timeout=30).status_code == 413
    response = httpx.post(f"{server_url}/predict_batch", files=files[:SERVER_MAX_BATCH_FILES], timeout=30)
    assert response.status_code == 200
    assert [item["prediction"] for item in response.json()] == ["Uranus"] * SERVER_MAX_BATCH_FILES


def test_malformed_requests_get_4xx_and_the_server_stays_up(server_url):
    cases = [
        dict(content=b"x", headers={"Content-Type": "multipart/form-data"}),
        dict(content=b"{}", headers={"Content-Type": "application/json"}),
        dict(files={"image": ("a.jpg", b"\xff\xd8\xff\xe0 truncated")}),
        dict(data={"image": "http://127.0.0.1:1/x.jpg"}, files={"other": ("b.bin", b"\xff")}),
    ]
    for case in cases:
        response = httpx.post(f"{server_url}/predict", timeout=30, **case)
        assert 400 <= response.status_code < 500, (case, response.text)
        assert "error" in response.json()
    assert httpx.get(f"{server_url}/livez", timeout=10).status_code == 200


def test_concurrent_requests_all_answered_and_counted_in_metrics(server_url):
    colours = [name for name in CLASSES for _ in range(8)]
    payloads = {name: encode(disc(COLOURS[name])) for name in CLASSES}
    before = batch_size_total(server_url)

    def call(name: str) -> str:
        response = httpx.post(f"{server_url}/predict", files={"image": ("x.jpg", payloads[name])}, timeout=60)
        response.raise_for_status()
        return response.json()["prediction"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(call, colours))
    assert answers == colours
    assert batch_size_total(server_url) - before == len(colours)  # every image went through the model once
    metrics = httpx.get(f"{server_url}/metrics", timeout=10).text
    assert "bentoml_service_request_total" in metrics or "bentoml_api_server_request_total" in metrics
