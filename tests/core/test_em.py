"""Fused E-step statistics pass and the batch EM loop against scipy and scikit-learn."""

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from streamgmm.core.em import (
    _well_conditioned,
    batch_statistics,
    m_step,
    run_em,
    segment_statistics,
)
from streamgmm.core.gaussian import COVARIANCE_TYPES
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import (
    estimate_log_prob_resp,
    log_likelihoods,
    mean_log_likelihood,
    most_likely_components,
)
from streamgmm.core.suffstats import SufficientStats
from tests.helpers.mixtures import random_params, reference_log_resp


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_batch_statistics_is_e_step_then_statistics(ctype):
    rng = np.random.default_rng(1)
    params = random_params(rng, ctype, 3, 2)
    X = rng.normal(0, 3, (10_000, 2))
    w = rng.uniform(0.0, 3.0, len(X))
    ref_norm, ref_resp = reference_log_resp(X, params)
    for weights in (None, w):
        got = batch_statistics(X, params, sample_weight=weights)
        ref = SufficientStats.from_responsibilities(X, np.exp(ref_resp), ctype, weights)
        np.testing.assert_allclose(got.stats.counts, ref.counts, rtol=1e-10)
        np.testing.assert_allclose(got.stats.means, ref.means, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(got.stats.scatter, ref.scatter, rtol=1e-8, atol=1e-10)
        total = ref_norm.sum() if weights is None else ref_norm @ weights
        assert got.log_likelihood == pytest.approx(total, rel=1e-11)
        assert got.n_points == pytest.approx(len(X) if weights is None else w.sum())
        assert got.mean_log_likelihood == pytest.approx(total / got.n_points, rel=1e-11)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_far_outliers_beside_a_sharp_component_get_exact_statistics(ctype):
    # The moments pass scores relative to the model's peak density, not each point's best
    # component: points hundreds of standard deviations from everything (whose every term
    # underflows there) must be normalised exactly, and a component sharper than the rest
    # (which sets the peak) must not starve the broad ones of their points.
    rng = np.random.default_rng(4)
    params = random_params(rng, ctype, 4, 3, offset=50.0)
    if ctype != "tied":
        covariances = params.covariances.copy()
        covariances[0] *= 1e-6
        params = MixtureParams.from_covariances(params.weights, params.means, covariances,
                                                ctype)
    covs = params.full_covariances()
    labels = rng.integers(0, 4, 6000)
    bulk = np.vstack([rng.multivariate_normal(params.means[k], covs[k], np.sum(labels == k))
                      for k in range(4)])
    far = 50.0 + rng.normal(0, 1.0, (40, 3)) + np.array([3e3, -2e3, 1e3])
    X = rng.permutation(np.vstack([bulk, far]))
    ref_norm, ref_resp = reference_log_resp(X, params)
    got = batch_statistics(X, params)
    ref = SufficientStats.from_responsibilities(X, np.exp(ref_resp), ctype)
    np.testing.assert_allclose(got.stats.counts, ref.counts, rtol=1e-9)
    np.testing.assert_allclose(got.stats.means, ref.means, rtol=1e-9)
    np.testing.assert_allclose(got.stats.scatter, ref.scatter, rtol=1e-7, atol=1e-9)
    assert got.log_likelihood == pytest.approx(ref_norm.sum(), rel=1e-11)
    # Every point counts once, the far ones included.
    assert got.stats.counts.sum() == pytest.approx(len(X), rel=1e-12)
    # The log-likelihoods alone (score_samples, the moves' judging) take the same path.
    np.testing.assert_allclose(log_likelihoods(X, params), ref_norm, rtol=1e-12)
    assert mean_log_likelihood(X, params) == pytest.approx(ref_norm.mean(), rel=1e-12)
    # predict's labels: the responsibilities' argmax, far points and the sharp component too.
    np.testing.assert_array_equal(most_likely_components(X, params), ref_resp.argmax(axis=1))


def _sklearn_em_step(X, params, reg_covar):
    """One EM iteration by scikit-learn from ``params``: (lower bound, new parameters)."""
    sk = SkGaussianMixture(
        params.n_components, covariance_type=params.covariance_type, max_iter=1, tol=0,
        reg_covar=reg_covar, weights_init=params.weights, means_init=params.means,
        precisions_init=params.precisions,
    )
    with pytest.warns(Warning, match="did not converge"):
        sk.fit(X)
    return sk.lower_bound_, sk


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_one_em_iteration_matches_sklearn(ctype):
    rng = np.random.default_rng(2)
    params = random_params(rng, ctype, 3, 3)
    X = rng.normal(0, 3, (500, 3))
    lower, sk = _sklearn_em_step(X, params, 1e-4)
    result = run_em(X, params, reg_covar=1e-4, tol=0.0, max_iter=1)
    assert result.n_iter == 1 and not result.converged
    assert result.lower_bound == pytest.approx(lower, abs=1e-9)
    np.testing.assert_allclose(result.params.weights, sk.weights_, rtol=1e-9)
    np.testing.assert_allclose(result.params.means, sk.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.params.covariances, sk.covariances_, rtol=1e-8)
    np.testing.assert_allclose(
        result.params.precisions_cholesky, sk.precisions_cholesky_, rtol=1e-7
    )
    # m_step is the M-step of the fused statistics.
    again = m_step(batch_statistics(X, params).stats, 1e-4)
    np.testing.assert_allclose(again.covariances, result.params.covariances, rtol=1e-12)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_run_em_lower_bound_is_monotone(ctype):
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, 1.0, (300, 2)) for c in (0.0, 4.0, 9.0)])
    start = random_params(rng, ctype, 3, 2, offset=4.0)
    result = run_em(X, start, reg_covar=1e-6, tol=1e-10, max_iter=200)
    bounds = np.array(result.lower_bounds)
    assert len(bounds) == result.n_iter
    assert np.all(np.diff(bounds) >= -1e-10), "EM must never decrease the likelihood"
    assert result.converged and result.lower_bound == bounds[-1]


def test_run_em_callback_and_weighted_equals_repeated():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 2))
    w = rng.integers(1, 4, size=200).astype(float)
    start = random_params(rng, "full", 2, 2)
    calls = []
    weighted = run_em(X, start, reg_covar=1e-6, tol=0.0, max_iter=5, sample_weight=w,
                      callback=lambda n, change: calls.append(n))
    repeated = run_em(np.repeat(X, w.astype(int), axis=0), start, reg_covar=1e-6, tol=0.0,
                      max_iter=5)
    assert calls == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(weighted.params.means, repeated.params.means, rtol=1e-9)
    np.testing.assert_allclose(weighted.params.covariances, repeated.params.covariances,
                               rtol=1e-8)
    assert weighted.lower_bound == pytest.approx(repeated.lower_bound, rel=1e-10)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_segment_statistics_are_each_segments_batch_statistics(ctype):
    """Segments scored in one pass over their concatenation (chunk boundaries fall inside
    them): each one's statistics are those of batch_statistics on it alone."""
    rng = np.random.default_rng(12)
    params = random_params(rng, ctype, 4, 3, offset=30.0)
    X = 30.0 + rng.normal(0, 3, (12_000, 3))
    cuts = [0, 1, 7, 7000, 7003, 12_000]
    segments = [X[a:b] for a, b in zip(cuts, cuts[1:])]
    for segment, got in zip(segments, segment_statistics(segments, params), strict=True):
        want = batch_statistics(segment, params)
        np.testing.assert_allclose(got.stats.counts, want.stats.counts, rtol=1e-10)
        np.testing.assert_allclose(got.stats.means, want.stats.means, rtol=1e-10)
        np.testing.assert_allclose(got.stats.scatter, want.stats.scatter, rtol=1e-8,
                                   atol=1e-12)
        assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-12)
        assert got.n_points == len(segment)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_a_scatter_that_lost_its_digits_is_recomputed_exactly(ctype):
    """A thin component far from the scoring shift (a 1 mm thick cluster 1 km away): the
    one-pass scatter cancels, and the exact second pass restores it, alone and in a segment
    among others, as the two-pass statistics of its responsibilities give it."""
    rng = np.random.default_rng(5)
    near = rng.normal(0, 1, (3000, 3))
    far = 1000.0 + 1e-3 * rng.normal(0, 1, (600, 3))
    X = np.vstack([near, far])
    means = np.array([[0.0, 0.0, 0.0], [1000.0, 1000.0, 1000.0]])
    covariances = {"full": np.stack([np.eye(3), 1e-6 * np.eye(3)]),
                   "tied": np.eye(3), "diag": np.array([[1.0] * 3, [1e-6] * 3]),
                   "spherical": np.array([1.0, 1e-6])}[ctype]
    params = MixtureParams.from_covariances(np.array([0.8, 0.2]), means, covariances, ctype)
    _, log_resp = estimate_log_prob_resp(X, params)
    want = SufficientStats.from_responsibilities(X, np.exp(log_resp), ctype)
    alone = batch_statistics(X, params).stats
    in_segments = segment_statistics([near[:5], X, far[:7]], params)[1].stats
    for got in (alone, in_segments):
        np.testing.assert_allclose(got.counts, want.counts, rtol=1e-9)
        np.testing.assert_allclose(got.scatter[1], want.scatter[1], rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("ctype", ["full", "tied"])
def test_conditioning_check_agrees_with_the_eigenvalues(ctype):
    """robust_m_step's check skips the eigenvalues only where a bound vouches for them: on
    covariances from well to barely conditioned (condition 1e2 to 1e15) it decides as the
    eigenvalue rule does."""
    rng = np.random.default_rng(0)
    rcond = 1e-12
    decisions = set()
    for exponent in np.linspace(2, 15, 27):
        for _ in range(4):
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            scale = 10.0 ** rng.uniform(-4, 4)
            vals = scale * np.array([1.0, 10.0 ** (-exponent / 2), 10.0 ** -exponent])
            cov = (q * vals) @ q.T
            cov = 0.5 * (cov + cov.T)
            covariances = cov if ctype == "tied" else np.stack([np.eye(3) * scale, cov])
            try:
                params = MixtureParams.from_covariances(
                    np.full(2, 0.5), np.zeros((2, 3)), covariances, ctype)
            except ValueError:
                continue  # not positive definite to Cholesky: never checked
            eig = np.linalg.eigvalsh(covariances)
            expected = bool(np.all(eig.min(axis=-1) > rcond * np.abs(eig).max(axis=-1)))
            assert _well_conditioned(params, rcond) == expected, exponent
            decisions.add(expected)
    assert decisions == {True, False}  # both sides of the rule were exercised


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_run_em_with_kept_designs_is_run_em_without_them_bit_for_bit(ctype, monkeypatch):
    from streamgmm.core import em as em_module
    from streamgmm.parallel import ThreadPool

    rng = np.random.default_rng(7)
    params = random_params(rng, ctype, 3, 3, offset=25.0)
    X = rng.normal(25.0, 4.0, (20_000, 3))  # several row chunks
    w = rng.uniform(0.5, 2.0, len(X))
    pool = ThreadPool(2)
    try:
        for weights in (None, w):
            for threads in (None, pool):
                kept = run_em(X, params, reg_covar=1e-6, max_iter=4, tol=0.0,
                              sample_weight=weights, pool=threads)
                monkeypatch.setattr(em_module, "KEPT_DESIGN_ELEMENTS", 0)
                built = run_em(X, params, reg_covar=1e-6, max_iter=4, tol=0.0,
                               sample_weight=weights, pool=threads)
                monkeypatch.undo()
                assert kept.lower_bounds == built.lower_bounds
                for name in ("weights", "means", "covariances", "precisions_cholesky"):
                    np.testing.assert_array_equal(getattr(kept.params, name),
                                                  getattr(built.params, name))
    finally:
        pool.close()
