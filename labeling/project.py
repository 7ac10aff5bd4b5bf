"""The labelling project: one per Label Studio, its choices taken from the model's own class list.

The names below are the contract with the export (docs/architecture.md, INTERFACES.md): choices
`body` on the image `image`, one choice per known class plus "none of these", and a text area
`new_body` where a person names a body the model does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

from labeling.client import LabelStudio

PROJECT_TITLE = "orbit: planets and moons"
CHOICES_NAME = "body"
IMAGE_NAME = "image"
NEW_BODY_NAME = "new_body"
NONE_OF_THESE = "none of these"
STORAGE_TITLE = "orbit media (content-hash names)"
MODEL_DIR = Path("model")


class ClassListError(RuntimeError):
    """The model's class list cannot be read; the message says which command produces it."""


def model_classes(model_dir: Path = MODEL_DIR) -> list[str]:
    """The class list of the trained model, read through the bundle contract (`ml.bundle`)."""
    from ml.bundle import BundleError, read_bundle

    try:
        return list(read_bundle(model_dir).classes)
    except BundleError as exc:
        raise ClassListError(str(exc)) from None


def label_config(classes: Sequence[str]) -> str:
    """Label Studio's labelling config: the image, one choice per class, "none of these", a new name."""
    if NONE_OF_THESE in classes:
        raise ValueError(f"a class may not be called {NONE_OF_THESE!r}: that choice means 'a new body'")
    if len(set(classes)) != len(classes):
        raise ValueError(f"the class list repeats a name: {list(classes)}")
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in [*classes, NONE_OF_THESE])
    return f"""<View>
  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" maxWidth="480px"/>
  <Header value="Which body is this?"/>
  <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true" required="true">
{choices}
  </Choices>
  <Header value="If none of these: which body is it?"/>
  <TextArea name="{NEW_BODY_NAME}" toName="{IMAGE_NAME}" maxSubmissions="1" editable="true"
            placeholder="e.g. Ceres"/>
</View>
"""


def ensure_project(
    ls: LabelStudio, classes: Sequence[str], *, title: str = PROJECT_TITLE
) -> tuple[dict, str]:
    """The project titled `title`, created or brought up to date; returns it and what was done.

    Matching by title makes a re-run find the project instead of creating a second one; a changed class
    list (a retrained model that knows a new body) updates the choices in place, keeping every task.
    """
    config = label_config(classes)
    found = [p for p in ls.projects() if p.get("title") == title]
    if len(found) > 1:
        ids = ", ".join(str(p["id"]) for p in found)
        raise RuntimeError(
            f"Label Studio holds {len(found)} projects titled {title!r} (ids {ids}); delete extras"
        )
    if not found:
        project, action = (
            ls.create_project(title=title, label_config=config, description=_description()),
            "created",
        )
    elif found[0].get("label_config", "").strip() != config.strip():
        project, action = ls.update_project(found[0]["id"], label_config=config), "choices updated"
    else:
        project, action = found[0], "unchanged"
    ensure_media_storage(ls, project["id"])
    return project, action


def ensure_media_storage(ls: LabelStudio, project_id: int) -> None:
    """A local-files storage on the media folder: Label Studio serves a local file only under one."""
    if ls.files_root is None:
        return
    media = ls.files_root / "media"
    media.mkdir(parents=True, exist_ok=True)
    if not any(Path(s.get("path", "")) == media for s in ls.local_storages(project_id)):
        ls.create_local_storage(project_id, media, STORAGE_TITLE)


def _description() -> str:
    return (
        "Images the model served or that a folder held. Sort by prediction score ascending to label the "
        "least certain first (uncertainty sampling). Confirm the pre-annotation with a click, or pick "
        "'none of these' and name the body."
    )
