"""Tasks for Label Studio: images from a folder or the prediction log's bucket prefix, each with the
served model's pre-annotation, deduplicated by content hash.

Each image is copied once into the media folder as `<sha256>.<ext>` and its task carries
`data.sha256`, so importing the same images again (from anywhere, under any name) adds nothing. The
pre-annotation comes from the BentoML service's `POST /predict_batch`: its top class as the choice, its
probability as the score, the model tag as `model_version`. Sorting tasks by score ascending in Label
Studio is therefore uncertainty sampling: the least certain images first.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from labeling.client import LOCAL_FILES_PREFIX, LabelStudio
from labeling.project import CHOICES_NAME, IMAGE_NAME, NONE_OF_THESE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif"}
MONITORING_PREFIX = "monitoring/images/"
BATCH = 32  # images per /predict_batch request (the service accepts up to 64 by default)


class ModelServiceError(RuntimeError):
    """The served model did not answer a batch; the message carries its answer."""


@dataclass(frozen=True)
class Candidate:
    """One image to label: its bytes, where it came from, and its content hash."""

    source: str
    data: bytes
    sha256: str
    ext: str


@dataclass
class ImportReport:
    imported: int = 0
    already_there: int = 0
    rejected: list[str] = field(default_factory=list)  # "source: why"

    def __str__(self) -> str:
        text = f"{self.imported} task(s) imported, {self.already_there} already in the project"
        if self.rejected:
            text += f", {len(self.rejected)} rejected:\n  " + "\n  ".join(self.rejected)
        return text


# --- sources ------------------------------------------------------------------------------------


def folder_images(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every image-named file under `folder`, in a stable order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield str(path), path.read_bytes()


def bucket_images(
    bucket: str, prefix: str = MONITORING_PREFIX, *, client=None
) -> Iterator[tuple[str, bytes]]:
    """The images the prediction log kept under `prefix` in `bucket` (the emulator when
    STORAGE_EMULATOR_HOST is set, as `make bucket-start` arranges for DVC)."""
    from google.cloud import storage

    client = client or storage.Client()
    for blob in client.list_blobs(bucket, prefix=prefix):
        if Path(blob.name).suffix.lower() in IMAGE_SUFFIXES:
            yield f"gs://{bucket}/{blob.name}", blob.download_as_bytes()


def identify(items: Iterable[tuple[str, bytes]], report: ImportReport) -> list[Candidate]:
    """Decodable images, hashed; anything else is reported by name and skipped."""
    found = []
    for source, data in items:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
                fmt = image.format
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            SyntaxError,
            ValueError,
        ) as exc:
            report.rejected.append(f"{source}: not a readable image ({exc})")
            continue
        if fmt not in EXTENSIONS:
            report.rejected.append(f"{source}: format {fmt} is not one the service reads")
            continue
        found.append(Candidate(source, data, hashlib.sha256(data).hexdigest(), EXTENSIONS[fmt]))
    return found


# --- the served model ---------------------------------------------------------------------------


def served_model_tag(model_name: str = "planet-classifier") -> str:
    """The tag of the model `make serve` serves (the newest in the BentoML store)."""
    import bentoml

    try:
        return str(bentoml.models.get(f"{model_name}:latest").tag)
    except bentoml.exceptions.NotFound:
        raise ModelServiceError(f"no {model_name} in the BentoML store; run `make bento` first") from None


def predict_batch(service_url: str, images: Sequence[bytes], *, timeout: float = 120.0) -> list[dict]:
    """The service's answers for `images`, in order: `{"prediction", "probabilities", ...}` each."""
    answers: list[dict] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        files = [
            ("images", (f"{start + i}.img", data, "application/octet-stream")) for i, data in enumerate(chunk)
        ]
        try:
            response = httpx.post(f"{service_url.rstrip('/')}/predict_batch", files=files, timeout=timeout)
        except httpx.TransportError as exc:
            raise ModelServiceError(
                f"the model service at {service_url} is not reachable ({exc}); `make serve`"
            ) from None
        if response.status_code != 200:
            raise ModelServiceError(f"/predict_batch -> {response.status_code}: {response.text[:500]}")
        body = response.json()
        if not isinstance(body, list) or len(body) != len(chunk):
            raise ModelServiceError(f"/predict_batch answered {len(body)} results for {len(chunk)} images")
        answers.extend(body)
    return answers


def to_prediction(answer: dict, model_version: str) -> dict:
    """A Label Studio prediction from one service answer: choice, score and model version.

    An answer the service flags `unknown` (its novelty detector, once merged) pre-selects "none of these".
    """
    probabilities = answer.get("probabilities") or {}
    top = answer["prediction"]
    score = float(probabilities.get(top, answer.get("top_probability", 0.0)))
    choice = NONE_OF_THESE if answer.get("unknown") else top
    result = {
        "from_name": CHOICES_NAME,
        "to_name": IMAGE_NAME,
        "type": "choices",
        "value": {"choices": [choice]},
    }
    return {"model_version": str(answer.get("model") or model_version), "score": score, "result": [result]}


# --- import -------------------------------------------------------------------------------------


def media_url(media: Path, files_root: Path, image: Candidate) -> str:
    return f"{LOCAL_FILES_PREFIX}?d={(media / f'{image.sha256}.{image.ext}').relative_to(files_root)}"


def known_hashes(ls: LabelStudio, project_id: int) -> set[str]:
    return {t["data"].get("sha256") for t in ls.export(project_id, all_tasks=True)} - {None}


def import_images(
    ls: LabelStudio,
    project_id: int,
    items: Iterable[tuple[str, bytes]],
    *,
    predict: Callable[[Sequence[bytes]], list[dict]],
    model_version: str,
) -> ImportReport:
    """Import what is new among `items` as tasks with pre-annotations; skip what the project holds."""
    if ls.files_root is None:
        raise ValueError("the Label Studio client needs its files root to place media (LabelStudio.local())")
    report = ImportReport()
    seen = known_hashes(ls, project_id)
    fresh: list[Candidate] = []
    for image in identify(items, report):
        if image.sha256 in seen:
            report.already_there += 1
            continue
        seen.add(image.sha256)
        fresh.append(image)
    if not fresh:
        return report
    answers = predict(
        [image.data for image in fresh]
    )  # before any file is written: a failure leaves no trace
    media = ls.files_root / "media"
    media.mkdir(parents=True, exist_ok=True)
    tasks = []
    for image, answer in zip(fresh, answers, strict=True):
        target = media / f"{image.sha256}.{image.ext}"
        if not target.exists():
            target.write_bytes(image.data)
        data = {
            IMAGE_NAME: media_url(media, ls.files_root, image),
            "sha256": image.sha256,
            "source": image.source,
        }
        tasks.append({"data": data, "predictions": [to_prediction(answer, model_version)]})
    ls.import_tasks(project_id, tasks)
    ls.update_project(project_id, model_version=tasks[-1]["predictions"][0]["model_version"])
    report.imported = len(tasks)
    return report
