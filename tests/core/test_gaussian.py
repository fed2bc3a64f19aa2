"""streamgmm.core.gaussian against slow, obviously correct references built on scipy."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streamgmm.core.gaussian import (
    COVARIANCE_TYPES,
    covariance_shape,
    covariances_from_precision_cholesky,
    exp_normalize_rows,
    log_det_cholesky,
    log_gaussian_prob,
    logsumexp_rows,
    precision_cholesky,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
)
from streamgmm.core.params import MixtureParams


def random_covariances(rng, ctype, k, d, scale=1.0):
    """Well-conditioned random covariances of the given type."""
    if ctype == "full":
        A = rng.normal(size=(k, d, d))
        return scale * (A @ np.swapaxes(A, 1, 2) / d + 0.5 * np.eye(d))
    if ctype == "tied":
        A = rng.normal(size=(d, d))
        return scale * (A @ A.T / d + 0.5 * np.eye(d))
    if ctype == "diag":
        return scale * rng.uniform(0.3, 2.0, (k, d))
    return scale * rng.uniform(0.3, 2.0, k)


def full_covariances(covariances, ctype, k, d):
    return MixtureParams.from_covariances(
        np.full(k, 1.0 / k), np.zeros((k, d)), covariances, ctype
    ).full_covariances()


def reference_log_prob(X, means, covariances, ctype):
    """Per-component log-density with scipy, one component at a time."""
    k, d = means.shape
    covs = full_covariances(covariances, ctype, k, d)
    return np.column_stack(
        [multivariate_normal(means[j], covs[j]).logpdf(X).reshape(len(X)) for j in range(k)]
    )


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_gaussian_prob_matches_scipy(ctype, d):
    rng = np.random.default_rng(d)
    k = 4
    means = rng.normal(0, 3, (k, d))
    covs = random_covariances(rng, ctype, k, d)
    X = rng.normal(0, 3, (200, d))
    chol = precision_cholesky(covs, ctype)
    got = log_gaussian_prob(X, means, chol, ctype)
    ref = reference_log_prob(X, means, covs, ctype)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_log_gaussian_prob_far_from_origin(ctype):
    """The shifted feature expansion stays exact for data 1e6 away from the origin."""
    rng = np.random.default_rng(0)
    k, d = 3, 3
    offset = 1e6
    means = offset + rng.normal(0, 1, (k, d))
    covs = random_covariances(rng, ctype, k, d, scale=1e-2)
    X = offset + rng.normal(0, 1, (100, d))
    chol = precision_cholesky(covs, ctype)
    ref = reference_log_prob(X, means, covs, ctype)
    np.testing.assert_allclose(log_gaussian_prob(X, means, chol, ctype), ref, rtol=1e-8)
    # Any shift near the data gives the same values.
    shifted = log_gaussian_prob(X, means, chol, ctype, shift=X[0])
    np.testing.assert_allclose(shifted, ref, rtol=1e-8)


def upper_cholesky_reference(precision):
    """Upper U with U U^T = P, from scipy-free first principles: flip, lower Cholesky, flip."""
    J = np.eye(len(precision))[::-1]
    L = np.linalg.cholesky(J @ precision @ J)
    return J @ L @ J


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_precision_cholesky_from_covariances(ctype):
    rng = np.random.default_rng(1)
    k, d = 3, 4
    covs = random_covariances(rng, ctype, k, d)
    U = precision_cholesky(covs, ctype)
    assert U.shape == covariance_shape(ctype, k, d)
    full = full_covariances(covs, ctype, k, d)
    P = precisions_from_cholesky(U, ctype)
    if ctype in ("full", "tied"):
        Us = U if ctype == "full" else U[None]
        Ps = P if ctype == "full" else P[None]
        # Upper triangular with U U^T = Sigma^-1.
        assert np.all(np.tril(Us, -1) == 0)
        np.testing.assert_allclose(Ps, np.linalg.inv(full[: len(Ps)]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Us @ np.swapaxes(Us, 1, 2), Ps, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(U, 1.0 / np.sqrt(covs), rtol=1e-14)
    # And back again.
    np.testing.assert_allclose(
        covariances_from_precision_cholesky(U, ctype), covs, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_precision_cholesky_from_precisions(ctype):
    rng = np.random.default_rng(2)
    k, d = 3, 4
    covs = random_covariances(rng, ctype, k, d)
    U = precision_cholesky(covs, ctype)
    P = precisions_from_cholesky(U, ctype)
    U2 = precision_cholesky_from_precisions(P, ctype)
    np.testing.assert_allclose(U2, U, rtol=1e-9, atol=1e-12)
    if ctype == "full":
        for j in range(k):
            np.testing.assert_allclose(U2[j], upper_cholesky_reference(P[j]), rtol=1e-12)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_log_det_cholesky(ctype):
    rng = np.random.default_rng(3)
    k, d = 3, 4
    covs = random_covariances(rng, ctype, k, d)
    U = precision_cholesky(covs, ctype)
    full = full_covariances(covs, ctype, k, d)
    expected = -0.5 * np.linalg.slogdet(full)[1]
    got = np.broadcast_to(log_det_cholesky(U, ctype, d), (k,))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_singular_covariance_raises_helpful_value_error(ctype):
    k, d = 2, 3
    covs = np.zeros(covariance_shape(ctype, k, d))
    with pytest.raises(ValueError, match="increase reg_covar"):
        precision_cholesky(covs, ctype)
    bad = np.full(covariance_shape(ctype, k, d), np.nan)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        precision_cholesky(bad, ctype)


def test_exp_normalize_and_logsumexp_rows_match_scipy():
    rng = np.random.default_rng(4)
    L = rng.normal(0, 50, (100, 6))
    L[0] = [-1e4, -1e4 + 1, -2e4, -1e5, -1e4, -1e4]  # all tiny: no underflow to -inf
    L[1] = [700, 710, 0, -700, 705, 1]  # large: no overflow
    ref = logsumexp(L, axis=1)
    np.testing.assert_allclose(logsumexp_rows(L.copy()), ref, rtol=1e-13)
    P, lse = exp_normalize_rows(L.copy())
    np.testing.assert_allclose(lse, ref, rtol=1e-13)
    # Terms below exp(-300) of the largest are clamped there (documented): harmless.
    np.testing.assert_allclose(P, np.exp(L - ref[:, None]), rtol=1e-12, atol=1e-129)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_coefficients_by_component_are_the_coefficients_transposed(ctype):
    from streamgmm.core.gaussian import (
        log_prob_coefficients,
        log_prob_coefficients_by_component,
    )
    from tests.helpers.mixtures import random_params

    rng = np.random.default_rng(4)
    params = random_params(rng, ctype, 5, 3, offset=40.0)
    shift = rng.normal(40.0, 1.0, 3)
    U = params.precisions_cholesky
    log_det = log_det_cholesky(U, ctype, 3)
    log_w = np.log(params.weights)
    W = log_prob_coefficients(params.means, U, ctype, shift, log_w)
    WT = log_prob_coefficients_by_component(params.means - shift, U, ctype, log_w, log_det)
    assert WT.flags.c_contiguous
    np.testing.assert_array_equal(WT, W.T)
    # The expanded form scores as the direct one.
    X = rng.normal(40.0, 3.0, (200, 3))
    FT = np.vstack([np.ones(200), (X - shift).T, *[(X - shift).T[i] * (X - shift).T[j]
                                                    for i in range(3) for j in range(i, 3)]])
    if ctype in ("full", "tied"):
        np.testing.assert_allclose(WT @ FT, (log_gaussian_prob(X, params.means, U, ctype)
                                             + log_w).T, rtol=1e-9, atol=1e-8)
