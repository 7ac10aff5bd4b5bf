"""The real `bentoml serve` on loopback: the guide's curl call, limits from env, metrics, concurrency."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.serving.conftest import (
    CLASSES,
    COLOURS,
    SERVER_MAX_BATCH_FILES,
    SERVER_MAX_UPLOAD,
    corrupt_exif_jpeg,
    disc,
    encode,
)

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


def test_cpu_count_starts_one_worker_per_cpu(server_url):
    """ORBIT_WORKERS=cpu_count (the session's server, as the GKE Deployment sets it) is BentoML's: the
    cgroup's CPU quota where there is one (the pod's limit of 1 gives one worker), otherwise the cores."""
    import psutil
    from bentoml._internal.resource import system_resources  # the count cpu_count is resolved with

    port = server_url.rsplit(":", 1)[1]
    (server,) = [p for p in psutil.process_iter(["cmdline"])
                 if "serve" in (p.info["cmdline"] or []) and port in (p.info["cmdline"] or [])]
    workers = [c for c in server.children(recursive=True) if "--worker-id" in c.cmdline()]
    assert len(workers) == max(1, int(system_resources()["cpu"]))


def series(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in Prometheus' text format ("" for a series without labels)."""
    pattern = rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+|[+-]Inf|NaN)$"
    return {m.group(1) or "": float(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE)}


def test_metrics_count_predictions_by_class_unknowns_and_novelty(server_url, model_dir):
    from ml.bundle import read_bundle
    from ml.synthetic import probe_images

    threshold = read_bundle(model_dir).novelty.threshold
    noise = encode(probe_images("noise", 1, np.random.default_rng(3))[0])
    before = httpx.get(f"{server_url}/metrics", timeout=10).text
    for name in ("Mars", "Mars", "Neptune"):
        httpx.post(f"{server_url}/predict", files={"image": ("x.jpg", encode(disc(COLOURS[name])))},
                   timeout=30).raise_for_status()
    answers = [httpx.post(f"{server_url}/predict", files={"image": ("n.jpg", noise)}, timeout=30).json()]
    batch = [("images", ("u.jpg", encode(disc(COLOURS["Uranus"])))), ("images", ("n.jpg", noise))]
    answers += httpx.post(f"{server_url}/predict_batch", files=batch, timeout=30).json()
    assert [a["unknown"] for a in answers] == [True, False, True]
    after = httpx.get(f"{server_url}/metrics", timeout=10).text

    def delta(name: str) -> dict[str, float]:
        old = series(before, name)
        return {k: v - old.get(k, 0.0) for k, v in series(after, name).items()}

    by_class = delta("orbit_predictions_total")
    assert set(by_class) == {f'{{class="{c}"}}' for c in CLASSES}  # every class, even at 0
    expected = {"Mars": 2, "Neptune": 1, "Uranus": 1}
    for answer in answers[::2]:  # the two noise images, answered with their nearest class
        expected[answer["prediction"]] += 1
    assert by_class == {f'{{class="{c}"}}': expected[c] for c in CLASSES}
    assert delta("orbit_unknown_predictions_total") == {"": 2}
    assert delta("orbit_novelty_count") == {"": 6}
    buckets = {float(k.split('"')[1]): v for k, v in delta("orbit_novelty_bucket").items()}
    at_threshold = [v for le, v in buckets.items() if le == pytest.approx(threshold, rel=1e-9)]
    assert at_threshold == [4]  # le=threshold: the four known images, not the two unknown ones
    assert buckets[float("inf")] == 6


def test_a_storm_of_bad_requests_leaves_good_ones_answered_correctly(server_url):
    """Bad requests interleaved with good ones at concurrency 16; then the server is still ready and right.

    The corrupt-EXIF upload used to fail every good request that shared its model batch with a 500.
    """
    boundary = "orbit-storm"
    cut = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'.encode()
    nul = cut.replace(b'filename="a.jpg"', b'filename="a\0b.jpg"')
    form = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    bad = [
        dict(files={"image": ("exif.jpg", corrupt_exif_jpeg(COLOURS["Mars"]))}),
        dict(files={"image": ("page.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n")}),
        dict(content=nul + JPEG + f"\r\n--{boundary}--\r\n".encode(), headers=form),
        dict(files={"image": ("t.jpg", b"not an image at all")}),
        dict(content=b'{"image": "a.jpg"}', headers={"Content-Type": "application/json"}),
        dict(content=cut + JPEG[:500], headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}),
        dict(method="GET"),
    ]
    good = {name: encode(disc(COLOURS[name])) for name in CLASSES}
    plan = [("good", CLASSES[i % 3]) if i % 2 == 0 else ("bad", (i // 2) % len(bad)) for i in range(112)]

    def call(item: tuple[str, object]) -> tuple[str, object, int, dict]:
        kind, which = item
        with httpx.Client(timeout=60) as client:
            if kind == "good":
                response = client.post(f"{server_url}/predict", files={"image": ("p.jpg", good[which])})
            else:
                options = dict(bad[which])
                response = client.request(options.pop("method", "POST"), f"{server_url}/predict", **options)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return kind, which, response.status_code, response.json() if is_json else {"text": response.text}

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(call, plan))
    for kind, which, status, body in outcomes:
        if kind == "good":
            assert (status, body.get("prediction")) == (200, which), body
        else:
            assert 400 <= status < 500 and body.get("error"), (bad[which], status, body)
    assert httpx.get(f"{server_url}/readyz", timeout=10).status_code == 200
    after = httpx.post(f"{server_url}/predict", files={"image": ("p.jpg", good["Neptune"])}, timeout=30)
    assert after.json()["prediction"] == "Neptune"
