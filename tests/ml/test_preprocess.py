from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.preprocess import InvalidImageError, PreprocessConfig, load_image, preprocess, preprocess_batch
from tests.conftest import image_bytes, make_image


@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA", "CMYK"])
def test_any_pillow_mode_gives_the_configured_shape_dtype_and_range(mode, color_mode, channels):
    array = preprocess(make_image(mode, (40, 40)), PreprocessConfig(32, color_mode))
    assert array.shape == (32, 32, channels)
    assert array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    assert array.max() > 0.1, "the disc must survive conversion"


def test_bytes_path_and_image_give_identical_arrays(tmp_path: Path):
    data = image_bytes(make_image(seed=3), "JPEG")
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    config = PreprocessConfig(24, "rgb")
    from_bytes = preprocess(data, config)
    from_path = preprocess(path, config)
    from_str = preprocess(str(path), config)
    with path.open("rb") as handle:
        from_stream = preprocess(handle, config)
    np.testing.assert_array_equal(from_bytes, from_path)
    np.testing.assert_array_equal(from_bytes, from_str)
    np.testing.assert_array_equal(from_bytes, from_stream)


def test_transparency_becomes_black_background():
    rgba = make_image("RGBA", (32, 32))
    array = preprocess(rgba, PreprocessConfig(32, "rgb"))
    assert array[0, 0].tolist() == [0.0, 0.0, 0.0]
    png = preprocess(image_bytes(rgba, "PNG"), PreprocessConfig(32, "rgb"))
    np.testing.assert_allclose(png, array, atol=1 / 255)


def test_non_square_images_are_letterboxed_not_stretched():
    wide = Image.new("RGB", (64, 32), (255, 255, 255))
    array = preprocess(wide, PreprocessConfig(16, "grayscale"))
    assert array.shape == (16, 16, 1)
    assert array[0, 8, 0] == 0.0 and array[15, 8, 0] == 0.0, "top and bottom rows are padding"
    assert array[8, 8, 0] == pytest.approx(1.0)


def test_same_size_input_is_not_resampled():
    image = make_image("RGB", (32, 32), seed=5)
    array = preprocess(image, PreprocessConfig(32, "rgb"))
    np.testing.assert_array_equal(array, np.asarray(image, dtype=np.float32) / 255.0)


@pytest.mark.parametrize(
    "payload,fragment",
    [
        (b"", "empty"),
        (b"this is not an image", "not a recognised image"),
        (b'{"image": "x"}', "not a recognised image"),
    ],
)
def test_bad_bytes_raise_a_clear_error(payload, fragment):
    with pytest.raises(InvalidImageError, match=fragment):
        preprocess(payload)


def test_truncated_jpeg_is_reported_as_corrupt():
    data = image_bytes(make_image(size=(64, 64)))
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_pixel_limit_is_checked_before_decoding():
    data = image_bytes(Image.new("L", (200, 200)), "PNG")
    with pytest.raises(InvalidImageError, match="40,000 pixels"):
        load_image(data, max_pixels=10_000)


def test_missing_and_empty_files_name_the_path(tmp_path: Path):
    with pytest.raises(InvalidImageError, match="no such file"):
        preprocess(tmp_path / "nope.jpg")
    empty = tmp_path / "empty.jpg"
    empty.touch()
    with pytest.raises(InvalidImageError, match="empty.jpg: the file is empty"):
        preprocess(empty)


def test_batch_stacks_and_handles_empty():
    config = PreprocessConfig(16, "rgb")
    batch = preprocess_batch([make_image(seed=i) for i in range(3)], config)
    assert batch.shape == (3, 16, 16, 3)
    assert preprocess_batch([], config).shape == (0, 16, 16, 3)


@pytest.mark.parametrize("kwargs", [{"color_mode": "hsv"}, {"image_size": 4}, {"image_size": 1000}])
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)


@pytest.mark.parametrize("dtype,mode", [(np.uint16, "I;16"), (np.int32, "I")])
def test_16_bit_greyscale_is_scaled_not_clipped(dtype, mode):
    image = Image.fromarray(np.array([[0, 16384, 32768, 65535]], dtype=dtype))
    assert image.mode == mode
    as_png = [image_bytes(image, "PNG")] if mode == "I;16" else []  # Pillow writes no 32-bit PNG
    for source in [image, *as_png]:
        # a 4x1 strip becomes 8x2, letterboxed into rows 3 and 4 of the 8x8 output
        row = preprocess(source, PreprocessConfig(8, "grayscale"))[3, :, 0]
        assert np.all(np.diff(row) >= 0)
        assert row[0] == pytest.approx(0.0, abs=0.01) and row[-1] == pytest.approx(1.0, abs=0.01)
        assert 0.35 < row[4] < 0.65, "mid grey must stay mid grey, not clip to white"


def test_float_images_in_unit_range_are_scaled():
    image = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F")
    assert preprocess(image, PreprocessConfig(8, "grayscale")).mean() == pytest.approx(0.5, abs=0.01)


def test_a_long_thin_image_is_scaled_before_padding():
    strip = Image.new("L", (1, 100_000), 255)  # padding first would need a 100000x100000 canvas
    array = preprocess(strip, PreprocessConfig(16, "grayscale"))
    assert array.shape == (16, 16, 1)
    assert array.max() == pytest.approx(1.0), "the strip survives as one bright column"
    assert array[:, 0, 0].max() == 0.0 and array[:, -1, 0].max() == 0.0, "the sides are padding"


def test_formats_that_need_external_programs_are_refused():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(InvalidImageError, match="not a recognised image format"):
        preprocess(eps)


def test_corrupt_exif_is_an_invalid_image_not_a_crash(monkeypatch):
    import struct

    from ml import preprocess as module

    def corrupt(image):
        raise struct.error("unpack requires a buffer of 12 bytes")

    monkeypatch.setattr(module.ImageOps, "exif_transpose", corrupt)
    with pytest.raises(InvalidImageError, match="EXIF data is corrupt"):
        preprocess(image_bytes(make_image()))
