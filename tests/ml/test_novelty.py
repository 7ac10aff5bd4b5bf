"""The unknown-image detector on synthetic embeddings (Gaussian class clusters) and on synthetic renders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ml.novelty import (
    MIN_IMAGES_PER_CLASS,
    NOVELTY_FILE,
    NoveltyError,
    NoveltyModel,
    threshold_for_rate,
)
from ml.params import NoveltyParams, ParamsError, parse_params
from ml.synthetic import PROBE_KINDS, UNKNOWN_BODIES, generate_unknown, probe_images, render_unknown

DIM, N_CLASSES = 24, 6
METHODS = ("relative_mahalanobis", "mahalanobis")


class Clusters:
    """Gaussian classes sharing one correlated covariance, like a penultimate embedding."""

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.means = rng.normal(0, 3.0, (N_CLASSES, DIM))
        mixing = rng.normal(0, 1, (DIM, DIM)) / np.sqrt(DIM)
        self.factor = np.linalg.cholesky(mixing @ mixing.T + 0.3 * np.eye(DIM))

    def sample(self, n_per_class: int, means: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        means = self.means if means is None else means
        labels = np.repeat(np.arange(len(means)), n_per_class)
        noise = self.rng.normal(0, 1, (len(labels), DIM)) @ self.factor.T
        return means[labels] + noise, labels


@pytest.fixture(scope="module")
def clusters() -> Clusters:
    return Clusters()


@pytest.fixture(scope="module")
def data(clusters):
    train, labels = clusters.sample(150)
    val, _ = clusters.sample(300)
    return train, labels, val


def _fit(data, method="relative_mahalanobis", rate=0.01) -> NoveltyModel:
    train, labels, val = data
    return NoveltyModel.fit(train, labels, val, params=NoveltyParams(method=method, false_unknown_rate=rate))


@pytest.mark.parametrize("method", METHODS)
def test_outliers_and_new_classes_are_flagged_known_images_are_not(clusters, data, method):
    model = _fit(data, method)
    known, _ = clusters.sample(500)
    far = clusters.means.mean(axis=0) + clusters.rng.normal(0, 8.0, (500, DIM))
    # A class the model never saw, as far from the known means as they are from each other.
    new_means = clusters.rng.normal(0, 3.0, (3, DIM))
    new_class, _ = clusters.sample(200, new_means)
    assert model.is_unknown(known).mean() <= 0.03
    assert model.is_unknown(far).mean() == 1.0
    assert model.is_unknown(new_class).mean() >= 0.95
    assert np.median(model.score(new_class)) > np.quantile(model.score(known), 0.999)


@pytest.mark.parametrize("method", METHODS)
def test_scores_equal_the_textbook_mahalanobis_distances(data, method):
    """The whitened fast path computes min_k d_M(x, mu_k) (minus d_M(x, mu_all) for the relative variant)
    with Ledoit-Wolf covariances, as sklearn computes them."""
    from sklearn.covariance import LedoitWolf

    train, labels, val = data
    means = np.stack([train[labels == k].mean(axis=0) for k in range(N_CLASSES)])
    shared = LedoitWolf().fit(train - means[labels])
    shared.location_ = np.zeros(DIM)  # residuals are centred by construction
    expected = np.min([shared.mahalanobis(val - m) for m in means], axis=0)
    if method == "relative_mahalanobis":
        expected = expected - LedoitWolf().fit(train).mahalanobis(val)
    np.testing.assert_allclose(_fit(data, method).score(val), expected, rtol=1e-7, atol=1e-7)


def test_the_fitted_threshold_flags_the_chosen_share_of_validation_images(data):
    train, labels, val = data
    for rate in (0.01, 0.05, 0.2):
        model = _fit(data, rate=rate)
        flagged = int(model.is_unknown(val).sum())
        assert flagged == math.floor(rate * len(val)), rate
        assert model.val_flagged_rate == flagged / len(val)


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_the_false_unknown_rate_holds_on_new_known_images(clusters, rate):
    """On fresh known images the flagged share is the rate, within what chance allows: the threshold is the
    order statistic exceeded by k = floor(rate * n) of n validation scores, so the true exceedance
    probability is Beta(k + 1, n - k); a fresh sample of m adds binomial noise. Bounds at 0.05 % each."""
    train, labels = clusters.sample(150)
    val, _ = clusters.sample(400)  # n = 2,400
    fresh, _ = clusters.sample(4000)  # m = 24,000
    model = NoveltyModel.fit(train, labels, val, params=NoveltyParams(false_unknown_rate=rate))
    n, m = len(val), len(fresh)
    k = math.floor(rate * n)
    low = stats.binom.ppf(0.0005, m, stats.beta.ppf(0.0005, k + 1, n - k)) / m
    high = stats.binom.ppf(0.9995, m, stats.beta.ppf(0.9995, k + 1, n - k)) / m
    observed = model.is_unknown(fresh).mean()
    assert low <= observed <= high, (low, observed, high)


def test_threshold_for_rate_with_few_images_flags_none():
    scores = np.arange(50.0)
    assert threshold_for_rate(scores, 0.01) == 49.0  # 0.5 image: none may be flagged
    assert threshold_for_rate(scores, 0.1) == 44.0  # 5 images above: 45..49
    assert (scores > threshold_for_rate(scores, 0.1)).sum() == 5


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_gives_identical_scores(tmp_path, clusters, data, method):
    model = _fit(data, method)
    path = tmp_path / NOVELTY_FILE
    model.save(path)
    loaded = NoveltyModel.load(path)
    probe, _ = clusters.sample(50)
    probe = np.vstack([probe, probe * 10])
    assert np.array_equal(loaded.score(probe), model.score(probe))
    assert loaded.threshold == model.threshold
    assert loaded.describe() == model.describe()
    assert model.describe()["method"] == method and model.describe()["embedding_dim"] == DIM


def test_validation_images_set_the_threshold_only(clusters, data):
    """The Gaussians come from the training split alone: another validation split moves the threshold, not
    the scores."""
    train, labels, val = data
    other_val, _ = clusters.sample(300)
    first = NoveltyModel.fit(train, labels, val, params=NoveltyParams())
    second = NoveltyModel.fit(train, labels, other_val * 1.5, params=NoveltyParams())
    probe, _ = clusters.sample(20)
    assert np.array_equal(first.score(probe), second.score(probe))
    assert second.threshold > first.threshold


def test_describe_is_json_for_the_bundle_meta(data):
    import json

    described = json.loads(json.dumps(_fit(data).describe()))
    assert described["file"] == NOVELTY_FILE and described["n_classes"] == N_CLASSES
    assert described["false_unknown_rate"] == 0.01 and described["n_val"] == len(data[2])


def test_save_keeps_the_name_it_is_given(tmp_path, data):
    _fit(data).save(tmp_path / "detector.bin")
    assert [p.name for p in tmp_path.iterdir()] == ["detector.bin"]
    assert NoveltyModel.load(tmp_path / "detector.bin").embedding_dim == DIM


def test_float32_embeddings_score_like_float64(data):
    model = _fit(data)
    val = data[2]
    np.testing.assert_allclose(model.score(val.astype(np.float32)), model.score(val), rtol=1e-4, atol=1e-3)


def test_bad_embeddings_raise_clear_errors(data):
    model = _fit(data)
    val = data[2][:10].copy()
    with pytest.raises(NoveltyError, match=f"width {DIM + 1} but .* width {DIM}.*refit"):
        model.score(np.zeros((3, DIM + 1)))
    with pytest.raises(NoveltyError, match="2-D"):
        model.score(np.zeros(DIM))
    val[3, 2], val[7, 0] = np.nan, np.inf
    with pytest.raises(NoveltyError, match=r"NaN or infinite values in 2 row\(s\) \(3, 7\)"):
        model.score(val)
    with pytest.raises(NoveltyError, match="real numbers"):
        model.score([["a"] * DIM])
    with pytest.raises(NoveltyError, match=r"probabilities must have shape \(2, 6\)"):
        model.score(data[2][:2], probabilities=np.ones((2, 5)) / 5)
    assert model.score(data[2][:2], probabilities=np.ones((2, 6)) / 6).shape == (2,)


def test_bad_fit_inputs_raise_clear_errors(data):
    train, labels, val = data
    params = NoveltyParams()
    thin = labels != 2
    thin[np.flatnonzero(labels == 2)[: MIN_IMAGES_PER_CLASS - 1]] = True  # class 2 keeps 4 images
    expected = f"class 2: {MIN_IMAGES_PER_CLASS - 1}; at least {MIN_IMAGES_PER_CLASS}"
    with pytest.raises(NoveltyError, match=expected):
        NoveltyModel.fit(train[thin], labels[thin], val, params=params)
    gap = labels != 1
    with pytest.raises(NoveltyError, match="class 1: 0"):
        NoveltyModel.fit(train[gap], labels[gap], val, params=params)
    with pytest.raises(NoveltyError, match="one label per embedding"):
        NoveltyModel.fit(train, labels[:-1], val, params=params)
    with pytest.raises(NoveltyError, match="integer class indices"):
        NoveltyModel.fit(train, labels.astype(float), val, params=params)
    with pytest.raises(NoveltyError, match="val_embeddings have width 3"):
        NoveltyModel.fit(train, labels, val[:, :3], params=params)
    with pytest.raises(NoveltyError, match="val_embeddings is empty"):
        NoveltyModel.fit(train, labels, val[:0], params=params)
    broken = train.copy()
    broken[5, 5] = np.nan
    with pytest.raises(NoveltyError, match=r"train_embeddings hold NaN.*\(5\)"):
        NoveltyModel.fit(broken, labels, val, params=params)


def test_load_refuses_missing_corrupt_and_foreign_files(tmp_path, data):
    with pytest.raises(NoveltyError, match="not found.*dvc repro"):
        NoveltyModel.load(tmp_path / NOVELTY_FILE)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(NoveltyError, match="not a readable novelty model"):
        NoveltyModel.load(tmp_path / "garbage.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(NoveltyError, match="novelty format -1"):
        NoveltyModel.load(tmp_path / "other.npz")
    path = tmp_path / NOVELTY_FILE
    _fit(data).save(path)
    with np.load(path) as saved:
        fields = dict(saved)
    del fields["precision"]
    np.savez(tmp_path / "partial.npz", **fields)
    with pytest.raises(NoveltyError, match="lacks or has unexpected novelty fields"):
        NoveltyModel.load(tmp_path / "partial.npz")


@pytest.mark.parametrize(
    "raw,fragments",
    [
        ({"novelty": {"false_unknown_rate": 0}}, ["novelty.false_unknown_rate", "greater than 0"]),
        ({"novelty": {"false_unknown_rate": 0.7}}, ["novelty.false_unknown_rate", "less than 0.5"]),
        ({"novelty": {"method": "knn"}}, ["novelty.method", "'relative_mahalanobis'", "'mahalanobis'"]),
        ({"novelty": {"threshold": 3}}, ["novelty.threshold", "unknown key"]),
    ],
)
def test_novelty_params_are_validated(raw, fragments):
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert parse_params({}).novelty == NoveltyParams(method="relative_mahalanobis", false_unknown_rate=0.01)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_probe_images_are_rgb_reproducible_and_no_lit_disc_on_black(kind):
    images = probe_images(kind, 6, np.random.default_rng(3), size=40)
    again = probe_images(kind, 6, np.random.default_rng(3), size=40)
    assert len(images) == 6 and all(im.mode == "RGB" for im in images)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True))
    assert len({np.asarray(im).tobytes() for im in images}) == 6
    for image in images:
        pixels = np.asarray(image).astype(int)
        assert min(image.size) >= 32
        # unlike every training image, the frame's border is not black
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (border.sum(axis=1) > 30).mean() > 0.5
    with pytest.raises(ValueError, match="unknown probe kind 'cats'.*photos"):
        probe_images("cats", 1, np.random.default_rng(0))


def test_unknown_bodies_are_lit_bodies_on_black_and_only_unknown_names_are_accepted(tmp_path):
    for body in UNKNOWN_BODIES:
        pixels = np.asarray(render_unknown(body, 48, np.random.default_rng(1))).astype(int)
        assert pixels[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
        assert 0.05 < (pixels.sum(axis=2) > 30).mean() < 0.9
    with pytest.raises(ValueError, match="'Earth' is not an unknown body"):
        render_unknown("Earth", 48, np.random.default_rng(0))
    counts = generate_unknown(tmp_path, per_body=2, size=32, bodies=("Eris", "Haumea"))
    assert counts == {"Eris": 2, "Haumea": 2}
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert files == ["Eris/Eris_0.jpg", "Eris/Eris_1.jpg", "Haumea/Haumea_0.jpg", "Haumea/Haumea_1.jpg"]
    with pytest.raises(ValueError, match=r"\['Pluto'\] are not unknown bodies"):
        generate_unknown(tmp_path, per_body=1, bodies=("Pluto",))


def _colour_features(image) -> np.ndarray:
    """Rotation-invariant colour statistics of the lit pixels: what a tiny network can learn from fast."""
    pixels = np.asarray(image, dtype=np.float32) / 255
    lit_mask = pixels.sum(axis=2) > 0.15
    lit = pixels[lit_mask]
    hist, _ = np.histogramdd(lit, bins=4, range=[(0, 1)] * 3)
    return np.concatenate([hist.ravel() / len(lit), lit.mean(0), lit.std(0), [lit_mask.mean()]])


@pytest.mark.slow
def test_unknown_bodies_rendered_by_synthetic_are_flagged_by_a_tiny_network():
    """End to end on renders: a one-hidden-layer network learns the ten bodies; its hidden layer is the
    embedding. The detector flags most dwarf planets and few new renders of known bodies, and separates
    them better than the network's own max-probability."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier

    from ml.synthetic import BODIES as CLASSES
    from ml.synthetic import render

    def features(draw, bodies, seeds):
        return np.array([_colour_features(draw(b, 32, np.random.default_rng([s, k])))
                         for k, b in enumerate(bodies) for s in seeds])

    x_train, y_train = features(render, CLASSES, range(30)), np.repeat(np.arange(len(CLASSES)), 30)
    x_val, x_known = features(render, CLASSES, range(100, 120)), features(render, CLASSES, range(200, 220))
    x_unknown = features(render_unknown, UNKNOWN_BODIES, range(25))
    network = MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-3, max_iter=2000, random_state=0)
    network.fit(x_train, y_train)

    def embed(x):
        return np.maximum(x @ network.coefs_[0] + network.intercepts_[0], 0)

    model = NoveltyModel.fit(
        embed(x_train), y_train, embed(x_val), params=NoveltyParams(false_unknown_rate=0.05)
    )
    known, unknown = model.score(embed(x_known)), model.score(embed(x_unknown))
    truth = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    auroc = roc_auc_score(truth, np.r_[known, unknown])
    baseline = roc_auc_score(truth, 1 - network.predict_proba(np.vstack([x_known, x_unknown])).max(axis=1))
    assert auroc >= 0.85 and auroc > baseline + 0.05, (auroc, baseline)
    assert (unknown > model.threshold).mean() >= 0.6
    assert (known > model.threshold).mean() <= 0.12
