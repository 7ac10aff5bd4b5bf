"""The synthetic generator: deterministic, any size, and classes that differ visibly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ml.synthetic import BODIES as CLASSES
from ml.synthetic import JPEG_QUALITY, generate_dataset, render


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_the_generator_draws_the_ten_bodies_of_the_guide():
    assert CLASSES == (
        "Earth",
        "Jupiter",
        "Mars",
        "Mercury",
        "Moon",
        "Neptune",
        "Pluto",
        "Saturn",
        "Uranus",
        "Venus",
    )


@pytest.mark.parametrize("body", CLASSES)
@pytest.mark.parametrize("size", [24, 128])
def test_render_is_a_lit_body_on_black(body, size):
    image = render(body, size, np.random.default_rng(1))
    assert image.mode == "RGB" and image.size == (size, size)
    pixels = np.asarray(image).astype(int)
    corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() == 0, "background must be black like the real data"
    lit = pixels.sum(axis=2) > 30
    assert 0.1 < lit.mean() < 0.9, "the body should cover a good part of the frame, not all of it"


def test_render_rejects_unknown_body_and_tiny_size():
    with pytest.raises(ValueError, match="unknown body 'Ceres'.*Earth"):
        render("Ceres", 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 8"):
        render("Moon", 4, np.random.default_rng(0))


def test_saturn_has_rings_that_make_it_wider_than_tall():
    for seed in range(5):
        lit = np.asarray(render("Saturn", 96, np.random.default_rng(seed))).sum(axis=2) > 30
        rows, cols = np.nonzero(lit)
        assert (np.ptp(cols) + 1) / (np.ptp(rows) + 1) > 1.4
    for body in ("Jupiter", "Moon"):
        lit = np.asarray(render(body, 96, np.random.default_rng(0))).sum(axis=2) > 30
        rows, cols = np.nonzero(lit)
        assert 0.85 < (np.ptp(cols) + 1) / (np.ptp(rows) + 1) < 1.15


def test_generate_dataset_layout_counts_and_jpeg(tmp_path):
    counts = generate_dataset(tmp_path, per_class=3, size=40, seed=5, classes=("Mars", "Venus"))
    assert counts == {"Mars": 3, "Venus": 3}
    assert sorted(_files(tmp_path)) == [f"{c}/{c}_{i}.jpg" for c in ("Mars", "Venus") for i in range(3)]
    with Image.open(tmp_path / "Mars" / "Mars_0.jpg") as image:
        assert image.format == "JPEG" and image.size == (40, 40) and image.mode == "RGB"
    assert JPEG_QUALITY == 95


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_dataset(a, per_class=2, size=32, seed=7)
    generate_dataset(b, per_class=2, size=32, seed=7)
    generate_dataset(c, per_class=2, size=32, seed=8)
    files_a, files_c = _files(a), _files(c)
    assert files_a == _files(b)
    assert files_a.keys() == files_c.keys()
    assert all(files_a[name] != files_c[name] for name in files_a)


def test_an_image_does_not_depend_on_how_many_others_are_generated(tmp_path):
    generate_dataset(tmp_path / "small", per_class=1, size=32, seed=3, classes=("Moon",))
    generate_dataset(tmp_path / "large", per_class=3, size=32, seed=3)
    assert (tmp_path / "small/Moon/Moon_0.jpg").read_bytes() == (
        tmp_path / "large/Moon/Moon_0.jpg"
    ).read_bytes()


def test_generate_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="per_class"):
        generate_dataset(tmp_path, per_class=0)
    with pytest.raises(ValueError, match="Titan"):
        generate_dataset(tmp_path, per_class=1, classes=("Earth", "Titan"))


def _features(image: Image.Image) -> np.ndarray:
    """Colour and texture statistics that ignore where the body is and how it is turned."""
    pixels = np.asarray(image, dtype=np.float32) / 255
    lit = pixels[pixels.sum(axis=2) > 0.15]
    hist, _ = np.histogramdd(lit, bins=4, range=[(0, 1)] * 3)
    rows, cols = np.nonzero(pixels.sum(axis=2) > 0.15)
    aspect = (np.ptp(cols) + 1) / (np.ptp(rows) + 1)
    return np.concatenate([hist.ravel() / len(lit), lit.mean(0), lit.std(0), [aspect]])


def test_classes_are_separable_by_simple_statistics():
    """A linear model on colour statistics tells the bodies apart, so a CNN has signal to learn."""
    from sklearn.linear_model import LogisticRegression

    def dataset(seeds):
        x = [
            _features(render(body, 64, np.random.default_rng([s, k])))
            for k, body in enumerate(CLASSES)
            for s in seeds
        ]
        y = [body for body in CLASSES for _ in seeds]
        return np.array(x), np.array(y)

    x_train, y_train = dataset(range(0, 20))
    x_test, y_test = dataset(range(100, 110))
    model = LogisticRegression(max_iter=3000, C=10.0).fit(x_train, y_train)
    assert (model.predict(x_test) == y_test).mean() >= 0.9
