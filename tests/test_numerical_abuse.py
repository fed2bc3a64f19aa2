"""Degenerate and hostile data: parameters stay finite, covariances positive definite."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm import GaussianMixture

RNG = np.random.default_rng(0)


def _line(n):
    t = RNG.normal(size=(n, 1))
    return np.hstack([t, 2 * t, -t]) + [1.0, 2.0, 3.0]


def _plane(n):
    uv = RNG.normal(size=(n, 2))
    return np.column_stack([uv[:, 0], uv[:, 1], uv[:, 0] + uv[:, 1]])


def _two_clusters(n):
    return np.vstack([RNG.normal(0, 1, (n // 2, 3)), RNG.normal(20, 1, (n - n // 2, 3))])


def _outliers(n):
    X = RNG.normal(size=(n, 3))
    X[:: max(1, n // 20)] = 1e12 * RNG.choice([-1.0, 1.0], size=(len(X[:: max(1, n // 20)]), 3))
    return X


CASES = {
    "identical": lambda n: np.tile([[1.5, -2.0, 0.25]], (n, 1)),
    "line": _line,
    "plane": _plane,
    "offset_1e6_spread_1e-6": lambda n: 1e6 + 1e-6 * RNG.normal(size=(n, 3)),
    "tiny_spread": lambda n: 1e-9 * RNG.normal(size=(n, 3)),
    "far_outliers": _outliers,
    "more_components_than_clusters": _two_clusters,
}


def _assert_valid(gm: GaussianMixture) -> None:
    assert np.all(np.isfinite(gm.weights_)) and np.all(gm.weights_ >= 0)
    assert abs(gm.weights_.sum() - 1.0) < 1e-9
    assert np.all(np.isfinite(gm.means_))
    covs = gm.params_.full_covariances()
    assert np.all(np.isfinite(covs))
    np.testing.assert_allclose(covs, np.swapaxes(covs, 1, 2), rtol=1e-10, atol=1e-300)
    assert np.all(np.linalg.eigvalsh(covs).min(axis=1) > 0)
    assert np.all(np.isfinite(gm.precisions_cholesky_))


@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_online_parameters_stay_valid_after_every_update(case, ctype):
    X = CASES[case](20_000)
    gm = GaussianMixture(8, covariance_type=ctype, random_state=0, retain_size=4000)
    for start in range(0, len(X), 1000):
        gm.partial_fit(X[start : start + 1000])
        if hasattr(gm, "means_"):
            _assert_valid(gm)
            ll = gm.score_samples(X[start : start + 1000])
            assert np.all(np.isfinite(ll))
            proba = gm.predict_proba(X[start : start + 100])
            np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert gm.n_seen_ == len(X)


def test_starved_components_are_reseeded_and_counted():
    # Eight components, two clusters, and a stream that moves between them: components
    # that lose their share are moved, and each move is counted.
    gm = GaussianMixture(8, random_state=0, effort=0.0, step_constant=0.2)
    for i in range(200):
        center = 0.0 if (i // 50) % 2 == 0 else 50.0
        gm.partial_fit(RNG.normal(center, 1.0, (500, 3)))
        _assert_valid(gm)
    assert gm.n_reseeded_ > 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_fit_is_valid_or_says_what_to_do(case):
    X = CASES[case](5000)
    gm = GaussianMixture(8, random_state=0, reg_covar=1e-6)
    try:
        gm.fit(X)
    except ValueError as err:  # scikit-learn's behaviour: a clear message, never a crash
        assert "reg_covar" in str(err)
        return
    _assert_valid(gm)
