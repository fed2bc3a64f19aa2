"""Expectation-maximisation for Gaussian mixtures: E-step, M-step and the batch loop.

The E-step and the statistics pass are fused and run over row chunks: for each chunk, one
product ``F @ W`` gives the weighted log-probabilities, a log-sum-exp turns them into
responsibilities ``R``, and one product ``R^T F`` gives that chunk's moments. No (n, K)
array of the whole batch is ever held, and nothing loops over points in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamgmm.core.gaussian import (
    design_matrix,
    exp_normalize_rows,
    log_prob_coefficients,
    logsumexp_rows,
)
from streamgmm.core.params import MixtureParams
from streamgmm.core.suffstats import SufficientStats

# Rows per chunk: the chunk's (rows, K) and (rows, features) arrays stay in cache.
_CHUNK_ELEMENTS = 1 << 16


def _chunk_rows(n_columns: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(n_columns, 1))


def default_shift(params: MixtureParams) -> np.ndarray:
    """The mixture's overall mean: centring on it keeps the expanded quadratic form exact."""
    return params.weights @ params.means


def _log_resp_chunk(F: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised log-responsibilities and per-row log-likelihoods of one chunk."""
    weighted = F @ W
    log_norm = logsumexp_rows(weighted)
    weighted -= log_norm[:, None]
    return log_norm, weighted


def estimate_log_prob_resp(
    X: np.ndarray, params: MixtureParams
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point log-likelihood and log-responsibilities.

    Returns
    -------
    log_prob_norm : ndarray of shape (n,)
        ``log p(x_i) = logsumexp_k [log pi_k + log N(x_i | k)]``.
    log_resp : ndarray of shape (n, K)
        ``log p(k | x_i)``.
    """
    shift = default_shift(params)
    W = log_prob_coefficients(
        params.means, params.precisions_cholesky, params.covariance_type, shift,
        np.log(params.weights),
    )
    n = X.shape[0]
    log_norm = np.empty(n)
    log_resp = np.empty((n, params.n_components))
    step = _chunk_rows(max(W.shape))
    for start in range(0, n, step):
        stop = min(start + step, n)
        F = design_matrix(X[start:stop], shift, params.covariance_type)
        log_norm[start:stop], log_resp[start:stop] = _log_resp_chunk(F, W)
    return log_norm, log_resp


def e_step(X: np.ndarray, params: MixtureParams) -> tuple[float, np.ndarray]:
    """E-step: mean log-likelihood of ``X`` and its log-responsibilities (n, K)."""
    log_norm, log_resp = estimate_log_prob_resp(X, params)
    return float(np.mean(log_norm)), log_resp


@dataclass(frozen=True)
class BatchStatistics:
    """What one fused E-step pass over a batch yields."""

    stats: SufficientStats
    log_likelihood: float  # summed (weighted) log p(x_i) under the parameters used
    n_points: float  # summed sample weight (the number of points when unweighted)

    @property
    def mean_log_likelihood(self) -> float:
        return self.log_likelihood / self.n_points if self.n_points else float("nan")


def batch_statistics(
    X: np.ndarray,
    params: MixtureParams,
    sample_weight: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> BatchStatistics:
    """Fused E-step and sufficient statistics of a batch under ``params``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    params : MixtureParams
    sample_weight : ndarray of shape (n,), optional
        Per-point weights (e.g. voxel counts); the statistics are weighted sums.
    shift : ndarray of shape (d,), optional
        Centre for the feature expansion; defaults to the mixture's mean.
    """
    if shift is None:
        shift = default_shift(params)
    ctype = params.covariance_type
    W = log_prob_coefficients(
        params.means, params.precisions_cholesky, ctype, shift, np.log(params.weights)
    )
    moments = np.zeros((params.n_components, W.shape[0]))
    total_ll = 0.0
    n = X.shape[0]
    step = _chunk_rows(max(W.shape))
    for start in range(0, n, step):
        stop = min(start + step, n)
        F = design_matrix(X[start:stop], shift, ctype)
        resp, log_norm = exp_normalize_rows(F @ W)
        if sample_weight is None:
            total_ll += float(log_norm.sum())
        else:
            w = sample_weight[start:stop]
            total_ll += float(log_norm @ w)
            resp *= w[:, None]
        moments += resp.T @ F
    n_points = float(n if sample_weight is None else np.sum(sample_weight))
    return BatchStatistics(SufficientStats.from_moments(moments, shift, ctype), total_ll, n_points)


def m_step(stats: SufficientStats, reg_covar: float) -> MixtureParams:
    """M-step: the maximum-likelihood parameters of the statistics."""
    return stats.to_params(reg_covar)


@dataclass
class EMResult:
    """Outcome of :func:`run_em`."""

    params: MixtureParams
    lower_bound: float
    n_iter: int
    converged: bool
    lower_bounds: list[float] = field(default_factory=list)


def run_em(
    X: np.ndarray,
    params: MixtureParams,
    *,
    reg_covar: float,
    tol: float = 1e-3,
    max_iter: int = 100,
    sample_weight: np.ndarray | None = None,
    lower_bound: float = -np.inf,
    callback=None,
) -> EMResult:
    """Batch EM from ``params`` until the mean log-likelihood gains less than ``tol``.

    The loop is scikit-learn's: each iteration is an E-step under the current parameters
    (whose mean log-likelihood is the iteration's lower bound) followed by an M-step, and it
    stops when the lower bound changes by less than ``tol``. ``callback(n_iter, change)`` is
    called after every iteration (used for verbose output).
    """
    shift = X.mean(axis=0) if sample_weight is None else np.average(X, axis=0, weights=sample_weight)
    lower_bounds: list[float] = []
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        batch = batch_statistics(X, params, sample_weight, shift)
        params = m_step(batch.stats, reg_covar)
        lower_bound = batch.mean_log_likelihood
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        if callback is not None:
            callback(n_iter, change)
        if abs(change) < tol:
            converged = True
            break
    return EMResult(params, lower_bound, n_iter, converged, lower_bounds)
