"""Decode, colour, resize and scale one image: the single definition shared by training and serving.

Training (`ml.prepare`) and the BentoML service (`serving.service`) both call :func:`preprocess`, so the
model sees exactly the same pixels in production as in evaluation. This module needs only numpy and
Pillow, which is why the serving image can import it without the training stack.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ColorMode = Literal["rgb", "grayscale"]
COLOR_MODES: tuple[str, ...] = ("rgb", "grayscale")

#: Refuse images with more pixels than this before decoding them (decompression bombs).
DEFAULT_MAX_PIXELS = 25_000_000

#: Raster formats Pillow decodes by itself. Anything else (EPS, PDF, ...) would reach external programs
#: such as Ghostscript, so it is refused as "not a recognised image format".
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO")

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Image.Image


class InvalidImageError(ValueError):
    """The input is not an image this pipeline can use; the message says why and what to send instead."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How pixels are prepared; stored with the model so serving reproduces it exactly."""

    image_size: int = 64
    color_mode: ColorMode = "rgb"

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {', '.join(COLOR_MODES)}; got {self.color_mode!r}")
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 512:
            raise ValueError(f"image_size must be an integer from 8 to 512; got {self.image_size!r}")

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "rgb" else 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, self.channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        return cls(image_size=int(data["image_size"]), color_mode=data["color_mode"])


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `source` fully, or raise :class:`InvalidImageError` naming the problem.

    The pixel count is checked from the header before any pixel is decoded, and the image is decoded
    eagerly so that a truncated file fails here rather than later inside a batch.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        name = ""
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise InvalidImageError("the upload is empty (0 bytes); send a JPEG or PNG file")
            stream: BinaryIO = io.BytesIO(bytes(source))
        elif isinstance(source, str | os.PathLike):
            name = f"{os.fspath(source)}: "
            path = Path(source)
            if not path.is_file():
                raise InvalidImageError(f"{name}no such file")
            if path.stat().st_size == 0:
                raise InvalidImageError(f"{name}the file is empty (0 bytes)")
            stream = path.open("rb")
        else:
            stream = source
        try:
            with warnings.catch_warnings():
                # Pillow warns (and raises past 2x) on its own global limit; ours is checked explicitly.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream, formats=FORMATS)
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidImageError(
                        f"{name}the image is {width}x{height} = {width * height:,} pixels, more than the "
                        f"limit of {max_pixels:,}; resize it before sending"
                    )
                image.load()
        except InvalidImageError:
            raise
        except UnidentifiedImageError as exc:
            raise InvalidImageError(f"{name}not a recognised image format; send a JPEG or PNG file") from exc
        except Image.DecompressionBombError as exc:
            raise InvalidImageError(f"{name}the image has too many pixels ({exc})") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImageError(f"{name}the image is corrupt or truncated ({exc})") from exc
        finally:
            if isinstance(source, str | os.PathLike):
                stream.close()
    if image.width == 0 or image.height == 0:
        raise InvalidImageError("the image has no pixels")
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit greyscale to 8 bits; Pillow's own convert("L") clips them at 255 instead."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64) / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0  # [0, 1] floats or [0, 255]
        return Image.fromarray(np.clip(np.nan_to_num(values * scale), 0, 255).astype(np.uint8), "L")
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparency onto black, the background of every training image."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _fit_to_square(image: Image.Image, side: int) -> Image.Image:
    """Scale the longest side to `side`, then letterbox on black, so a round planet stays round whatever the
    aspect ratio. Scaling first keeps the work proportional to the output: padding a 1x100000 strip to a
    square first would allocate a 100000x100000 canvas."""
    if image.size != (side, side):
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    if image.width == image.height:
        return image
    fill = 0 if image.mode == "L" else (0, 0, 0)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def preprocess(
    source: ImageSource,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Return a float32 array of shape ``config.input_shape`` with values in [0, 1]."""
    image = load_image(source, max_pixels=max_pixels)
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception as exc:  # Pillow raises struct.error and others on a corrupt EXIF block
        raise InvalidImageError(f"the image's EXIF data is corrupt ({type(exc).__name__}: {exc})") from exc
    image = _flatten_alpha(_to_8bit(image))
    image = image.convert("RGB" if config.color_mode == "rgb" else "L")
    image = _fit_to_square(image, config.image_size)
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    return array


def preprocess_batch(
    sources: Iterable[ImageSource],
    config: PreprocessConfig = PreprocessConfig(),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Stack :func:`preprocess` over many inputs into one (N, H, W, C) float32 batch."""
    arrays = [preprocess(s, config, max_pixels=max_pixels) for s in sources]
    if not arrays:
        return np.zeros((0, *config.input_shape), dtype=np.float32)
    return np.stack(arrays)
