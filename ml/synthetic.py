"""Procedural renders of the ten bodies (and of four dwarf planets that are none of them), for tests and
offline use.

Each image is a lit sphere on black, like the real dataset: per-body colours, bands (gas giants), rings
(Saturn), craters (Moon, Mercury, Pluto), oceans and clouds (Earth), under a random orientation, light
and position. The classes differ in colour and structure, so a small CNN learns them, but nobody should
mistake them for photographs: quality numbers on synthetic data say nothing about the real model.

Everything is numpy over the pixels of one image (no Python loop per pixel), and each image draws from
its own seed derived from (seed, class, index), so adding classes or images never changes the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: The ten bodies this generator can draw (the guide's classes). Only the generator's own list: the classes
#: of a dataset are its folders (ml/prepare.py).
BODIES: tuple[str, ...] = (
    "Earth", "Jupiter", "Mars", "Mercury", "Moon", "Neptune", "Pluto", "Saturn", "Uranus", "Venus"
)
JPEG_QUALITY = 95

_F = np.float32


# --- geometry -------------------------------------------------------------------------------------


def _rotation(roll: float, tilt: float, spin: float) -> np.ndarray:
    """View-from-body rotation: spin about the pole, tilt the pole toward the camera, roll in the image."""
    cz, sz = np.cos(roll), np.sin(roll)
    cx, sx = np.cos(tilt), np.sin(tilt)
    cy, sy = np.cos(spin), np.sin(spin)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return (rz @ rx @ ry).astype(_F)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(_F)


def _noise(
    p: np.ndarray,
    rng: np.random.Generator,
    freq: float = 3.0,
    octaves: int = 3,
    waves: int = 4,
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Smooth random field on the sphere in about [-1, 1]: a sum of random plane waves per octave."""
    k = waves * octaves
    directions = _unit(rng, k) * np.asarray(stretch, dtype=_F)
    scales = np.repeat(freq * 2.0 ** np.arange(octaves), waves).astype(_F)
    amplitudes = np.repeat(0.5 ** np.arange(octaves), waves).astype(_F)
    phases = rng.uniform(0, 2 * np.pi, k).astype(_F)
    field = np.sin(p @ (directions * scales[:, None]).T + phases) @ amplitudes
    return field / _F(np.sqrt((amplitudes**2).sum() / 2) * 2.2)


def _mix(a: Sequence[float], b: Sequence[float], t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0, 1)[:, None]
    return np.asarray(a, _F) * (1 - t) + np.asarray(b, _F) * t


def _palette(stops: Sequence[Sequence[float]], t: np.ndarray) -> np.ndarray:
    """Interpolate colours `stops` evenly spaced over t in [0, 1]."""
    stops_arr = np.asarray(stops, dtype=_F)
    x = np.linspace(0, 1, len(stops_arr))
    t = np.clip(t, 0, 1)
    return np.stack([np.interp(t, x, stops_arr[:, c]) for c in range(3)], axis=1).astype(_F)


def _craters(p: np.ndarray, rng: np.random.Generator, count: int, size: tuple[float, float]) -> np.ndarray:
    """Brightness factor per point: dark floor, bright rim of the nearest of `count` random craters."""
    centres = _unit(rng, count)
    radii = rng.uniform(*size, count).astype(_F)
    # (1 - cos d) / (1 - cos r) is (d / r)^2 for small angles, without an arccos per pixel and crater.
    t = ((1 - p @ centres.T) / (1 - np.cos(radii))).min(axis=1)
    return np.where(t < 0.6, _F(0.72), np.where(t < 1.0, _F(1.18), _F(1.0)))


def _latitude(p: np.ndarray) -> np.ndarray:
    return np.arcsin(np.clip(p[:, 1], -1, 1))


# --- surfaces: body-frame unit vectors (N, 3) -> RGB in [0, 1] (N, 3) -------------------------------


def _earth(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    land = _noise(p, rng, freq=1.6, octaves=4)
    ocean = _mix((0.05, 0.13, 0.38), (0.12, 0.28, 0.58), 0.5 + land)
    ground = _mix((0.22, 0.38, 0.14), (0.55, 0.46, 0.30), 0.5 + _noise(p, rng, freq=3.0))
    colour = np.where((land > 0.12)[:, None], ground, ocean)
    ice = np.abs(_latitude(p)) > np.deg2rad(72)
    colour[ice] = (0.92, 0.94, 0.96)
    clouds = np.clip((_noise(p, rng, freq=3.5, octaves=3, stretch=(1.0, 0.5, 1.0)) - 0.05) * 2.5, 0, 0.9)
    return _mix((0, 0, 0), (1, 1, 1), clouds) + colour * (1 - clouds[:, None])


def _bands(p: np.ndarray, rng: np.random.Generator, stops, count: float, wobble: float) -> np.ndarray:
    lat = _latitude(p)
    swirl = _noise(p, rng, freq=4.0, octaves=2, stretch=(1.0, 0.3, 1.0))
    t = 0.5 + 0.5 * np.sin(lat * count + rng.uniform(0, 2 * np.pi) + wobble * swirl)
    return _palette(stops, t)


def _jupiter(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stops = [(0.96, 0.92, 0.82), (0.86, 0.70, 0.48), (0.62, 0.42, 0.26)]
    colour = _bands(p, rng, stops, count=rng.uniform(9, 12), wobble=1.2)
    spot_lon = rng.uniform(-np.pi, np.pi)
    lon = np.arctan2(p[:, 0], p[:, 2])
    d_lon = np.angle(np.exp(1j * (lon - spot_lon)))
    spot = (d_lon / 0.30) ** 2 + ((_latitude(p) + 0.38) / 0.10) ** 2 < 1
    colour[spot] = (0.78, 0.38, 0.22)
    return colour


def _saturn(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stops = [(0.93, 0.85, 0.62), (0.84, 0.72, 0.48), (0.96, 0.90, 0.72)]
    return _bands(p, rng, stops, count=rng.uniform(6, 9), wobble=0.3)


def _uranus(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stops = [(0.62, 0.86, 0.90), (0.70, 0.90, 0.92)]
    return _bands(p, rng, stops, count=4, wobble=0.2)


def _neptune(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    stops = [(0.13, 0.25, 0.72), (0.22, 0.40, 0.90), (0.16, 0.30, 0.80)]
    colour = _bands(p, rng, stops, count=rng.uniform(5, 8), wobble=0.8)
    streaks = np.clip((_noise(p, rng, freq=5.0, octaves=1, stretch=(1.0, 0.2, 1.0)) - 0.55) * 3, 0, 0.8)
    return colour * (1 - streaks[:, None]) + streaks[:, None] * _F(0.92)


def _mars(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.80, 0.42, 0.22), (0.42, 0.20, 0.12), (_noise(p, rng, freq=2.0, octaves=4) - 0.05) * 3)
    if rng.random() < 0.6:
        colour[_latitude(p) > np.deg2rad(rng.uniform(70, 80))] = (0.95, 0.93, 0.92)
    return colour


def _mercury(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.50, 0.48, 0.46), (0.64, 0.61, 0.57), 0.5 + _noise(p, rng, freq=4.0, octaves=3))
    return colour * _craters(p, rng, count=45, size=(0.03, 0.12))[:, None]


def _moon(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    maria = np.clip((_noise(p, rng, freq=1.4, octaves=3) - 0.05) * 4, 0, 1)
    colour = _mix((0.78, 0.78, 0.77), (0.36, 0.36, 0.38), maria)
    return colour * _craters(p, rng, count=25, size=(0.04, 0.18))[:, None]


def _pluto(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.86, 0.80, 0.74), (0.34, 0.21, 0.15), (-_noise(p, rng, freq=1.8, octaves=3) - 0.05) * 3)
    heart = p @ _unit(rng, 1)[0] > np.cos(rng.uniform(0.45, 0.7))
    colour[heart] = colour[heart] * 0.3 + _F(0.66)
    return colour * _craters(p, rng, count=8, size=(0.05, 0.12))[:, None]


def _venus(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    swirl = _noise(p, rng, freq=2.5, octaves=3, stretch=(1.0, 0.5, 1.0))
    return _mix((0.82, 0.66, 0.40), (0.97, 0.88, 0.66), 0.55 + 0.6 * swirl)


_SURFACES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "Earth": _earth,
    "Jupiter": _jupiter,
    "Mars": _mars,
    "Mercury": _mercury,
    "Moon": _moon,
    "Neptune": _neptune,
    "Pluto": _pluto,
    "Saturn": _saturn,
    "Uranus": _uranus,
    "Venus": _venus,
}

# --- unknown bodies: dwarf planets the classifier never sees, for testing the unknown-image detector ---


def _ceres(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.64, 0.58, 0.50), (0.40, 0.37, 0.33), 0.5 + _noise(p, rng, freq=2.5, octaves=4))
    colour = colour * _craters(p, rng, count=30, size=(0.04, 0.15))[:, None]
    bright = (p @ _unit(rng, 2).T > np.cos(0.07)).any(axis=1)  # salt deposits, like Occator's
    colour[bright] = (0.95, 0.95, 0.92)
    return colour


def _eris(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.82, 0.86, 0.92), (0.56, 0.61, 0.70), 0.5 + _noise(p, rng, freq=3.0, octaves=4))
    return colour * _craters(p, rng, count=6, size=(0.03, 0.08))[:, None]


def _haumea(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = _mix((0.80, 0.80, 0.80), (0.38, 0.38, 0.38), 0.5 + _noise(p, rng, freq=3.0, octaves=4))
    colour = colour * _craters(p, rng, count=15, size=(0.05, 0.15))[:, None]
    spot = p @ _unit(rng, 1)[0] > np.cos(0.35)
    colour[spot] = colour[spot] * np.array([0.6, 0.36, 0.3], dtype=_F)  # the dark red spot
    return colour


def _makemake(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _mix((0.90, 0.64, 0.54), (0.55, 0.30, 0.24), 0.5 + _noise(p, rng, freq=2.2, octaves=4))


_UNKNOWN_SURFACES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "Ceres": _ceres,
    "Eris": _eris,
    "Haumea": _haumea,
    "Makemake": _makemake,
}
#: The guide's extra-classes: bodies that are none of the ten classes.
UNKNOWN_BODIES = tuple(_UNKNOWN_SURFACES)

#: Rings (inner, outer radius in planet radii) and their colours from inside out.
_RING_RADII = (1.25, 2.25)
_RING_STOPS = [
    (0.45, 0.40, 0.34),
    (0.80, 0.72, 0.58),
    (0.88, 0.80, 0.64),
    (0.20, 0.18, 0.16),
    (0.74, 0.66, 0.54),
    (0.60, 0.54, 0.45),
]


# --- rendering ------------------------------------------------------------------------------------


def render(body: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of `body`, `size` x `size` pixels, drawn entirely from `rng`."""
    if body not in _SURFACES:
        raise ValueError(f"unknown body {body!r}; known bodies: {', '.join(_SURFACES)}")
    return _render(_SURFACES[body], size, rng, ringed=body == "Saturn")


def render_unknown(body: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of a dwarf planet that is none of the classes (UNKNOWN_BODIES), lit and framed like
    :func:`render`'s, so only what the body looks like tells it apart. Haumea is an elongated ellipsoid."""
    if body not in _UNKNOWN_SURFACES:
        raise ValueError(f"{body!r} is not an unknown body; unknown bodies: {', '.join(UNKNOWN_BODIES)}")
    stretch, angle = (rng.uniform(1.6, 2.0), rng.uniform(0, np.pi)) if body == "Haumea" else (1.0, 0.0)
    return _render(_UNKNOWN_SURFACES[body], size, rng, ringed=False, stretch=stretch, angle=angle)


def _render(
    surface: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    size: int,
    rng: np.random.Generator,
    *,
    ringed: bool,
    stretch: float = 1.0,
    angle: float = 0.0,
) -> Image.Image:
    """A lit body on black; `stretch` > 1 draws an ellipsoid whose long axis is turned by `angle`."""
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size}")
    radius = size * (0.21 if ringed else 0.44 / stretch) * rng.uniform(0.9, 1.05)
    centre = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    # Camera angles like the real renders: the pole near the top, up to 45 degrees of tilt, any spin.
    tilt = rng.uniform(0.2, 0.6) * rng.choice([-1, 1]) if ringed else rng.uniform(-np.pi / 4, np.pi / 4)
    view_from_body = _rotation(rng.uniform(-0.35, 0.35), tilt, rng.uniform(0, 2 * np.pi))
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0], dtype=_F)
    light /= np.linalg.norm(light)

    ys, xs = np.mgrid[0:size, 0:size].astype(_F) + _F(0.5)
    x = (xs - centre[0]) / _F(radius)
    y = (centre[1] - ys) / _F(radius)
    if stretch != 1.0:
        cos, sin = _F(np.cos(angle)), _F(np.sin(angle))
        x, y = (cos * x + sin * y) / _F(stretch), cos * y - sin * x
    dist = np.sqrt(x * x + y * y)
    coverage = np.clip((1 - dist) * radius + 0.5, 0, 1)  # anti-aliased rim, one pixel wide
    on_disc = coverage > 0

    scale = np.minimum(1, 1 / np.maximum(dist[on_disc], 1e-6))
    normal = np.stack([x[on_disc] * scale, y[on_disc] * scale, np.zeros(on_disc.sum(), _F)], axis=1)
    normal[:, 2] = np.sqrt(np.clip(1 - (normal[:, :2] ** 2).sum(axis=1), 0, 1))
    colour = surface(normal @ view_from_body, rng)
    colour = colour * _F(rng.uniform(0.9, 1.1) * rng.uniform(0.97, 1.03, 3))  # brightness and tint jitter
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0, 1)
    image = np.zeros((size, size, 3), dtype=_F)
    image[on_disc] = colour * (shade * coverage[on_disc])[:, None]

    if ringed:
        pole = view_from_body[:, 1]
        depth = -(pole[0] * x + pole[1] * y) / pole[2]  # where the view ray meets the ring plane
        ring_r = np.sqrt(x * x + y * y + depth * depth)
        sphere_z = np.sqrt(np.clip(1 - dist * dist, 0, 1))
        inner, outer = _RING_RADII
        visible = (ring_r > inner) & (ring_r < outer) & ((dist >= 1) | (depth > sphere_z))
        t = (ring_r[visible] - inner) / (outer - inner)
        image[visible] = _palette(_RING_STOPS, t) * _F(0.3 + 0.7 * abs(pole[2]) ** 0.3)

    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


# --- probes: images that are no body at all (photos, noise, gradients), for the unknown-image detector ---

PROBE_KINDS = ("photos", "noise", "gradients")


def probe_images(kind: str, n: int, rng: np.random.Generator, size: int = 128) -> list[Image.Image]:
    """`n` RGB images of one kind that no planet classifier should recognise: random crops (square or
    oblong, at least 32 pixels a side) of the two photos scikit-learn ships, uniform or Gaussian pixel
    noise (half each), or flat linear gradients between two random colours. Noise and gradients are
    `size` x `size` like the dataset; crops keep their own size and go through preprocess like uploads."""
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; kinds: {', '.join(PROBE_KINDS)}")
    if kind == "photos":
        from sklearn.datasets import load_sample_images  # two JPEGs inside the package: no download

        photos = load_sample_images().images
        crops = []
        for i in range(n):
            photo = photos[i % len(photos)]
            h, w, _ = photo.shape
            ch, cw = int(rng.integers(32, h)), int(rng.integers(32, w))
            y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
            crops.append(Image.fromarray(photo[y : y + ch, x : x + cw]))
        return crops
    if kind == "noise":
        uniform = rng.uniform(0, 255, (n // 2, size, size, 3))
        gaussian = np.clip(rng.normal(128, 50, (n - n // 2, size, size, 3)), 0, 255)
        return [Image.fromarray(a.astype(np.uint8), "RGB") for a in [*uniform, *gaussian]]
    ys, xs = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    gradients = []
    for _ in range(n):
        start, end, angle = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xs + np.sin(angle) * ys
        t = ((t - t.min()) / np.ptp(t))[..., None]
        gradients.append(Image.fromarray((start * (1 - t) + end * t).astype(np.uint8), "RGB"))
    return gradients


def image_seed(seed: int, body: str, index: int) -> np.random.SeedSequence:
    """The seed of one image: independent of how many images or which other classes are generated."""
    return np.random.SeedSequence([seed, zlib.crc32(body.encode()), index])


def generate_dataset(
    out_dir: Path,
    *,
    per_class: int,
    size: int = 128,
    seed: int = 0,
    classes: Sequence[str] = BODIES,
) -> dict[str, int]:
    """Write `out_dir/<Class>/<Class>_<i>.jpg` (JPEG quality 95) and return the count per class."""
    unknown = [c for c in classes if c not in _SURFACES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; known bodies: {', '.join(_SURFACES)}")
    return _write(out_dir, render, classes, per_class, size, seed)


def generate_unknown(
    out_dir: Path,
    *,
    per_body: int,
    size: int = 128,
    seed: int = 0,
    bodies: Sequence[str] = UNKNOWN_BODIES,
) -> dict[str, int]:
    """Write `out_dir/<Body>/<Body>_<i>.jpg` of dwarf planets that are none of the classes (a stand-in for
    the guide's extra-classes where ../shared is absent) and return the count per body."""
    wrong = [b for b in bodies if b not in _UNKNOWN_SURFACES]
    if wrong:
        raise ValueError(f"{wrong} are not unknown bodies; unknown bodies: {', '.join(UNKNOWN_BODIES)}")
    return _write(out_dir, render_unknown, bodies, per_body, size, seed)


def _write(out_dir, draw, bodies: Sequence[str], count: int, size: int, seed: int) -> dict[str, int]:
    if count < 1:
        raise ValueError(f"per_class must be at least 1; got {count}")
    out_dir = Path(out_dir)
    counts: dict[str, int] = {}
    for body in bodies:
        folder = out_dir / body
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = draw(body, size, np.random.default_rng(image_seed(seed, body, i)))
            image.save(folder / f"{body}_{i}.jpg", format="JPEG", quality=JPEG_QUALITY)
        counts[body] = count
    return counts


__all__ = [
    "BODIES",
    "JPEG_QUALITY",
    "PROBE_KINDS",
    "UNKNOWN_BODIES",
    "generate_dataset",
    "generate_unknown",
    "image_seed",
    "probe_images",
    "render",
    "render_unknown",
]
