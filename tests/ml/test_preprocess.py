from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.preprocess import InvalidImageError, PreprocessConfig, load_image, preprocess, preprocess_batch
from tests.conftest import image_bytes, make_image


@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1)])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA", "CMYK", "I;16"])
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
