"""Smoke-test a deployed classifier: real images in, well-formed and mostly right predictions out, in time.

Right after `pulumi up` the load balancer may still answer 404/502 or refuse connections, so those are
retried with backoff until `--timeout`; an answer that is wrong (bad status, bad JSON, unknown class,
probabilities that do not sum to 1) fails at once, because the service is up and broken.

With `--images` every image is labelled by its folder, and a well-formed answer is not enough: at least
`--min-images` images must be sent and the share answered with the right class must reach `--min-accuracy`
(default `gate.min_value` of params.yaml), so a model that answers everything with one class fails.

    python -m ci.smoke --url https://planets.example.org --images data/raw --per-class 3
    python -m ci.smoke --url http://127.0.0.1:3000 --image data/raw/Saturn/Saturn_1.jpg --timeout 30

`--access` follows the stack's access mode (stack output `service_access`, docs/edge.md): `public` posts to
the URL as it is; `iap` adds the OIDC ID token found in $ORBIT_SMOKE_ID_TOKEN (`--token-env`); `internal`
(no external address) posts through a `kubectl port-forward` to the Service, for as long as the test runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from ml.params import ParamsError, load_params

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Answers that mean "not ready yet" while a rollout or a load balancer settles.
RETRY_STATUS = frozenset({404, 408, 425, 429, 500, 502, 503, 504})
#: The response of `serving.service:PlanetClassifier.predict`.
LABEL_KEY = "prediction"
PROBABILITIES_KEY = "probabilities"
SUM_TOLERANCE = 1e-3
#: One image of each of the ten classes.
DEFAULT_MIN_IMAGES = 10
#: infra's access modes (orbit:serviceAccess); the environment variable holding the ID token for `iap`.
ACCESS_MODES = ("public", "iap", "internal")
TOKEN_ENV = "ORBIT_SMOKE_ID_TOKEN"
#: What an `internal` stack's Service is (infra/config.py SERVING_NAMESPACE, infra/components/service.py).
SERVICE_NAMESPACE, SERVICE_TARGET, SERVICE_PORT = "serving", "service/planet-classifier", 80


class SmokeError(RuntimeError):
    """The endpoint failed the smoke test, or the test could not start; the message says which and why."""


@dataclass
class Outcome:
    image: Path
    label: str
    confidence: float
    expected: str | None
    attempts: int

    @property
    def correct(self) -> bool | None:
        return None if self.expected is None else self.label == self.expected


@dataclass
class Settings:
    url: str
    classes: list[str] | None = None
    timeout: float = 300.0
    request_timeout: float = 30.0
    first_delay: float = 2.0
    max_delay: float = 30.0
    form_field: str = "image"
    headers: dict[str, str] = field(default_factory=dict)


def pick_images(images_dir: Path, per_class: int) -> list[tuple[Path, str]]:
    """The first `per_class` images of each class folder, in name order, so every run sends the same ones."""
    if not images_dir.is_dir():
        raise SmokeError(f"{images_dir} is not a folder of <Class>/*.jpg; run `dvc pull data/raw.dvc` first")
    picked = []
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        picked += [(p, folder.name) for p in files[:per_class]]
    if not picked:
        raise SmokeError(f"no images under {images_dir}/<Class>/ (looked for {', '.join(IMAGE_SUFFIXES)})")
    return picked


def read_image(path: Path) -> bytes:
    if not path.is_file():
        raise SmokeError(f"image {path} not found")
    data = path.read_bytes()
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise SmokeError(f"{path} is not a readable image ({exc}); pass a JPEG or PNG of a planet") from None
    return data


def check_payload(payload: object, classes: list[str] | None) -> tuple[str, float]:
    """The predicted label and its probability, or SmokeError listing everything wrong with the answer."""
    if not isinstance(payload, dict):
        raise SmokeError(f"expected a JSON object, got {type(payload).__name__}: {str(payload)[:200]}")
    missing = [key for key in (LABEL_KEY, PROBABILITIES_KEY) if key not in payload]
    if missing:
        raise SmokeError(f"answer lacks {' and '.join(repr(k) for k in missing)}: {str(payload)[:300]}")
    label, probs = payload[LABEL_KEY], payload[PROBABILITIES_KEY]
    if not isinstance(label, str):
        raise SmokeError(f"'{LABEL_KEY}' must be a class name, got {label!r}")
    if not isinstance(probs, dict) or not probs:
        raise SmokeError(f"'{PROBABILITIES_KEY}' must map class -> probability, got {str(probs)[:200]}")
    bad = {
        k: v
        for k, v in probs.items()
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or not 0 <= v <= 1
    }
    if bad:
        raise SmokeError(f"probabilities outside [0, 1] or not numbers: {bad}")
    total = sum(probs.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise SmokeError(f"probabilities sum to {total:.6f}, not 1 (tolerance {SUM_TOLERANCE})")
    known = set(classes) if classes else set(probs)
    if label not in known:
        raise SmokeError(f"predicted {label!r}, which is not one of the classes: {', '.join(sorted(known))}")
    if classes and set(probs) != set(classes):
        missing, extra = sorted(set(classes) - set(probs)), sorted(set(probs) - set(classes))
        raise SmokeError(
            f"probabilities do not cover exactly the classes (missing: {missing}, unexpected: {extra})"
        )
    if probs[label] + 1e-9 < max(probs.values()):
        raise SmokeError(f"predicted {label!r} ({probs[label]:.4f}) is not the most probable class")
    return label, float(probs[label])


def predict(
    client: httpx.Client,
    settings: Settings,
    image: Path,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, float, int]:
    """POST one image until it gets a definite answer or the deadline passes."""
    data = read_image(image)
    url = settings.url.rstrip("/") + "/predict"
    deadline = clock() + settings.timeout
    delay, attempt, last = settings.first_delay, 0, "no attempt"
    while True:
        attempt += 1
        try:
            response = client.post(url, files={settings.form_field: (image.name, data, "image/jpeg")})
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                try:
                    payload = response.json()
                except ValueError:
                    raise SmokeError(f"{url} answered 200 but not JSON: {response.text[:200]!r}") from None
                label, confidence = check_payload(payload, settings.classes)
                return label, confidence, attempt
            if response.status_code not in RETRY_STATUS:
                raise SmokeError(
                    f"{url} answered HTTP {response.status_code} to {image.name}: {response.text[:300]!r}"
                )
            last = f"HTTP {response.status_code}"
        remaining = deadline - clock()
        if remaining <= 0:
            raise SmokeError(
                f"{url} did not answer within {settings.timeout:.0f} s ({attempt} attempts; "
                f"last: {last}). Check the rollout: the pods, the service and the ingress."
            )
        wait = min(delay, settings.max_delay, remaining)
        print(f"smoke: {last}; retrying in {wait:.0f} s ({remaining:.0f} s left)", file=sys.stderr)
        sleep(wait)
        delay *= 2


def run(
    settings: Settings,
    images: list[tuple[Path, str | None]],
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    if not settings.url.startswith(("http://", "https://")):
        raise SmokeError(f"--url must start with http:// or https://, got {settings.url!r}")
    outcomes = []
    with httpx.Client(
        timeout=settings.request_timeout, transport=transport, headers=settings.headers, follow_redirects=True
    ) as client:
        for image, expected in images:
            label, confidence, attempts = predict(client, settings, image, clock, sleep)
            outcomes.append(Outcome(image, label, confidence, expected, attempts))
            mark = (
                "" if expected is None else (" (correct)" if label == expected else f" (expected {expected})")
            )
            print(f"smoke: {image.name}: {label} {confidence:.3f}{mark}")
    return outcomes


@contextlib.contextmanager
def port_forward(kubectl: str = "kubectl", namespace: str = SERVICE_NAMESPACE, target: str = SERVICE_TARGET,
                 port: int = SERVICE_PORT, wait: float = 60.0) -> Iterator[str]:
    """http://127.0.0.1:<free port>, forwarded by kubectl to the Service for as long as the block runs."""
    command = [kubectl, "port-forward", "--namespace", namespace, "--address", "127.0.0.1", target,
               f":{port}"]
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise SmokeError(f"{kubectl} not found: an internal stack is reached through kubectl port-forward "
                         "(gcloud components install kubectl)") from None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], wait)
        line = proc.stdout.readline() if ready else ""
        found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if not found:
            proc.kill()
            error = proc.communicate(timeout=10)[1].strip() or f"no answer within {wait:.0f} s"
            raise SmokeError(f"kubectl port-forward to {namespace}/{target} did not start: {error[:300]}. "
                             "Is kubectl pointed at the cluster (gcloud container clusters get-credentials "
                             "NAME --location LOCATION --dns-endpoint)?")
        # kubectl logs every connection on stdout: keep reading so that it never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def reach(access: str, url: str, token_env: str = TOKEN_ENV,
          forward: Callable[[], contextlib.AbstractContextManager[str]] | None = None,
          ) -> Iterator[tuple[str, dict[str, str]]]:
    """(base URL, headers) that reach a service of this access mode."""
    if access == "internal":
        with (forward or port_forward)() as local:
            yield local, {}
    elif access == "iap":
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise SmokeError(f"an iap stack answers only signed-in callers: put an OIDC ID token for the IAP "
                             f"OAuth client in ${token_env} (gcloud auth print-identity-token --audiences "
                             "CLIENT_ID --include-email) and list that identity in orbit:iapMembers")
        yield url, {"Authorization": f"Bearer {token}"}
    else:
        yield url, {}


def check_accuracy(outcomes: list[Outcome], min_accuracy: float, source: str) -> str:
    """The summary of the labelled answers, or SmokeError when too few of them are right."""
    scored = [o for o in outcomes if o.correct is not None]
    if not scored:
        return "not scored (unlabelled images; pass --images DIR to check the answers)"
    right = sum(bool(o.correct) for o in scored)
    share = right / len(scored)
    summary = f"{right}/{len(scored)} as labelled ({share:.0%}; minimum {min_accuracy:.0%}, {source})"
    if share + 1e-9 < min_accuracy:
        labels = {o.label for o in scored}
        same = ""
        if len(labels) == 1 and len(scored) > 1:
            same = f"; it answered {labels.pop()!r} to every image"
        wrong = ", ".join(f"{o.image.name}: {o.label}, not {o.expected}" for o in scored if not o.correct)
        raise SmokeError(f"only {summary}{same}. Wrong: {wrong[:600]}")
    return summary


def _min_accuracy(flag: float | None, params: Path) -> tuple[float, str]:
    if flag is not None:
        if not 0.0 <= flag <= 1.0:
            raise SmokeError(f"--min-accuracy must be a share between 0 and 1, got {flag}")
        return flag, "--min-accuracy"
    try:
        return load_params(params).gate.min_value, f"gate.min_value of {params}"
    except ParamsError as exc:
        raise SmokeError(f"cannot read the threshold: {exc}; or pass --min-accuracy") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the service (POSTs to URL/predict)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, action="append", help="an image to send (repeatable, unscored)")
    source.add_argument(
        "--images", type=Path, help="a folder of <Class>/*.jpg; the class names become --classes"
    )
    parser.add_argument("--per-class", type=int, default=1, help="images per class with --images (default 1)")
    parser.add_argument("--classes", help="comma-separated class names the service must answer with")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a healthy answer")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        help="share of --images answered with their folder's class needed to pass (default gate.min_value)",
    )
    parser.add_argument(
        "--min-images",
        type=int,
        default=DEFAULT_MIN_IMAGES,
        help=f"fail unless --images yields at least this many images (default {DEFAULT_MIN_IMAGES})",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="where gate.min_value is")
    parser.add_argument("--access", choices=ACCESS_MODES, default="public",
                        help="the stack's access mode (stack output service_access): how to reach --url")
    parser.add_argument("--token-env", default=TOKEN_ENV,
                        help=f"environment variable with the ID token for --access iap (default {TOKEN_ENV})")
    args = parser.parse_args(argv)
    try:
        if args.per_class < 1:
            raise SmokeError("--per-class must be at least 1")
        if args.images:
            images: list[tuple[Path, str | None]] = list(pick_images(args.images, args.per_class))
            classes = sorted({expected for _, expected in images})
            if len(images) < args.min_images:
                raise SmokeError(
                    f"only {len(images)} images under {args.images} with --per-class {args.per_class}; "
                    f"need at least {args.min_images} (--min-images): raise --per-class or add images"
                )
            min_accuracy, threshold = _min_accuracy(args.min_accuracy, args.params)
        else:
            images = [(path, None) for path in args.image]
            classes, min_accuracy, threshold = None, 0.0, ""
        if args.classes:
            classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        with reach(args.access, args.url, args.token_env) as (url, headers):
            outcomes = run(Settings(url=url, classes=classes, timeout=args.timeout, headers=headers), images)
        summary = check_accuracy(outcomes, min_accuracy, threshold)
    except SmokeError as exc:
        print(f"smoke: FAIL: {exc}", file=sys.stderr)
        return 1
    print(f"smoke: PASS: {len(outcomes)} images answered well-formed predictions; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
