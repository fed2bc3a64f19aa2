"""Seeding draws the same points as scikit-learn for the same RandomState."""

import numpy as np
import pytest
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from streamgmm import GaussianMixture
from streamgmm.core.gaussian import COVARIANCE_TYPES
from streamgmm.core.initialize import (
    initial_responsibilities,
    initial_statistics,
    kmeans_labels,
    kmeans_plusplus,
)
from streamgmm.core.suffstats import SufficientStats


def _wine():
    X = load_wine().data
    return (X - X.mean(0)) / X.std(0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 8])
def test_kmeans_plusplus_picks_sklearns_indices(seed, k):
    rng = np.random.default_rng(seed)
    for X in (load_iris().data, _wine(), rng.normal(size=(500, 3)) * [1.0, 5.0, 0.1]):
        centers, idx = kmeans_plusplus(X, k, np.random.RandomState(seed))
        sk_centers, sk_idx = sk_kmeans_plusplus(X, k, random_state=np.random.RandomState(seed))
        np.testing.assert_array_equal(idx, sk_idx)
        np.testing.assert_array_equal(centers, sk_centers)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initial_responsibilities_shape_and_rows(init):
    X = load_iris().data
    resp = initial_responsibilities(X, 3, init, np.random.RandomState(0))
    assert resp.shape == (150, 3)
    assert np.all(resp >= 0)
    if init in ("kmeans", "random"):
        np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    else:  # one point per component
        np.testing.assert_array_equal(resp.sum(axis=0), 1.0)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_initial_statistics_are_those_of_the_initial_responsibilities(init):
    X = _wine()
    got = initial_statistics(X, 3, init, np.random.RandomState(0), "full")
    resp = initial_responsibilities(X, 3, init, np.random.RandomState(0))
    ref = SufficientStats.from_responsibilities(X, resp, "full")
    np.testing.assert_allclose(got.counts, ref.counts, rtol=1e-14)
    np.testing.assert_allclose(got.means, ref.means, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.scatter, ref.scatter, rtol=1e-10, atol=1e-14)


def test_kmeans_labels_match_sklearns_far_from_the_origin():
    # Lloyd's iterations run centred on the data's mean: 5 km from the origin, blobs 30 cm
    # apart are still told apart, and the labels are scikit-learn's from the same seeding.
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(2)
    centres = rng.normal(0.0, 0.3, (4, 3))
    X = 5e3 + centres[rng.integers(0, 4, 4000)] + rng.normal(0.0, 0.02, (4000, 3))
    labels = kmeans_labels(X, 4, np.random.RandomState(1))
    sk = KMeans(4, init="k-means++", n_init=1, random_state=np.random.RandomState(1),
                algorithm="lloyd").fit(X)
    # Same partition, whatever the numbering.
    pairs = set(zip(labels.tolist(), sk.labels_.tolist()))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4


def test_initial_responsibilities_rejects_unknown_init():
    with pytest.raises(ValueError, match="init_params must be one of"):
        initial_responsibilities(np.zeros((5, 2)), 2, "banana", np.random.RandomState(0))


def _sk_fit_from(params, X, **kw):
    """scikit-learn's fit from the given starting parameters."""
    # (One-point inits leave the initial weights unnormalised, n_k / n, in both libraries;
    # a common factor changes no responsibility.)
    weights = params.weights_ / params.weights_.sum()
    return SkGaussianMixture(
        len(weights), weights_init=weights, means_init=params.means_,
        precisions_init=params.precisions_, **kw,
    ).fit(X)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", ["k-means++", "random", "random_from_data", "kmeans"])
@pytest.mark.parametrize("data", ["iris", "wine"])
def test_init_params_give_sklearns_fit(init, ctype, data):
    X = load_iris().data if data == "iris" else _wine()
    kw = dict(covariance_type=ctype, init_params=init, random_state=7, tol=1e-6, max_iter=300)
    sk = SkGaussianMixture(3, **kw).fit(X)
    ours = GaussianMixture(3, **kw).fit(X)
    kw0 = dict(kw, max_iter=0)  # max_iter=0 keeps the initial parameters
    sk0 = SkGaussianMixture(3, **kw0).fit(X)
    ours0 = GaussianMixture(3, **kw0).fit(X)
    # Same points drawn, same means and weights to start from.
    np.testing.assert_allclose(ours0.means_, sk0.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours0.weights_, sk0.weights_, rtol=1e-12)
    if ctype == "tied" and init in ("k-means++", "random_from_data"):
        # Known, deliberate difference. These inits give each component one point and
        # every other row a zero responsibility. scikit-learn's tied M-step,
        # (X'X - sum_k n_k mu_k mu_k') / sum_k n_k, assumes responsibility rows that sum to
        # one, so here it returns the *uncentred* second moment of all unchosen points over
        # K: a huge, origin-dependent covariance from which its EM typically collapses
        # onto one cluster in 3 iterations (iris: -2.53 vs -1.71 nats). We keep the
        # count-weighted average of the component scatters (zero for one point, plus
        # reg_covar), as for the full type. From our start scikit-learn reproduces our fit.
        np.testing.assert_allclose(ours0.covariances_, 1e-6 * np.eye(X.shape[1]), atol=1e-15)
        from_ours = _sk_fit_from(ours0, X, covariance_type=ctype, tol=1e-6, max_iter=300)
        assert ours.n_iter_ == from_ours.n_iter_
        assert ours.lower_bound_ == pytest.approx(from_ours.lower_bound_, abs=1e-6)
        np.testing.assert_allclose(ours.means_, from_ours.means_, atol=1e-5)
        assert ours.lower_bound_ > sk.lower_bound_
        return
    np.testing.assert_allclose(ours0.covariances_, sk0.covariances_, rtol=1e-9, atol=1e-12)
    assert ours.n_iter_ == sk.n_iter_
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, abs=1e-6)
    np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-5)
    np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-6)
