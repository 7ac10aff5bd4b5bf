"""Fixtures shared by every test folder: small synthetic images, so the suite runs without ../shared."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("ORBIT_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "planets" / "raw"))


def make_image(mode: str = "RGB", size: tuple[int, int] = (48, 48), seed: int = 0) -> Image.Image:
    """A disc on black, like the dataset, in any Pillow mode."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    r = min(w, h) * 0.4
    disc = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) <= r * r
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[disc] = rng.integers(40, 255, size=3, dtype=np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        alpha = np.where(disc, 255, 0).astype(np.uint8)
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def image_bytes(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def jpeg_bytes() -> bytes:
    return image_bytes(make_image())


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA.is_dir() and any(REAL_DATA.iterdir())):
        pytest.skip(f"real data not found at {REAL_DATA} (set ORBIT_REAL_DATA to run these tests)")
    return REAL_DATA


def linux_only_skip(system: str = sys.platform) -> pytest.MarkDecorator | None:
    """The skip for `@pytest.mark.linux_only` tests (apt, root, /proc) off Linux; None on Linux."""
    if system.startswith("linux"):
        return None
    return pytest.mark.skip(reason=f"needs Linux-only tools (marked linux_only); this is {system}")


def pytest_collection_modifyitems(config, items):
    skip = linux_only_skip()
    for item in items:
        if skip and "linux_only" in item.keywords:
            item.add_marker(skip)
