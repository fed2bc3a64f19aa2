"""Log-densities of a mixture, row chunk by row chunk: the scorer and what is read from it.

One :class:`Scorer` per parameters holds the coefficients ``W`` of the expanded quadratic
form, so that one product ``F @ W`` of a chunk's design ``F`` (:mod:`streamgmm.core.gaussian`)
gives every weighted log-density ``log pi_k + log N(x_i | k)``. From them come the
per-point log-likelihoods, the log-responsibilities and the most likely components
(``score_samples``, ``predict_proba``, ``predict``, the moves' judging), and the fused
E-step of :mod:`streamgmm.core.em` scores its chunks with the same scorer. Pure functions
of numpy arrays: no state, no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm.core.gaussian import (
    _EXP_FLOOR,
    design_columns,
    exp_normalize_columns,
    log_det_cholesky,
    log_prob_coefficients_by_component,
    logsumexp_columns,
)
from streamgmm.core.params import MixtureParams

# Rows per chunk: the chunk's (rows, K) and (rows, features) arrays stay in cache.
_CHUNK_ELEMENTS = 1 << 16


def chunk_rows(n_columns: int) -> int:
    return max(64, _CHUNK_ELEMENTS // max(n_columns, 1))


def default_shift(params: MixtureParams) -> np.ndarray:
    """The mixture's overall mean: centring on it keeps the expanded quadratic form exact."""
    return params.weights @ params.means


# The expanded quadratic form of ``F @ W`` loses about eps * (|z|^2 + |m_k|^2) * lambda_max
# nats for component k; past this budget (far outliers, a shift far from a sharp component)
# that component is scored the direct way, ``|(x - mu_k) U_k|^2``, as scikit-learn does.
_EXPANSION_BUDGET = 1e-7
_EPS = np.finfo(np.float64).eps
# The moments pass scores log-densities relative to the scorer's peak (below). Terms are
# clamped at _PEAK_FLOOR (exp() of less would be subnormal: 40x slower); a point whose total
# stays under _FAR_TOTAL (its best component more than ~600 nats below the peak: an outlier
# ~35 standard deviations from every component) is normalised the exact way, so for every
# other point a clamped term is > 90 nats below its best one and cannot count.
_PEAK_FLOOR = -700.0
_FAR_TOTAL = math.exp(-600.0)


def largest_square(FT: np.ndarray, n_features: int, scratch: np.ndarray | None = None
                   ) -> float:
    """``max_i |z_i|^2`` of a transposed design ``FT`` (what the expansion's rounding grows
    with); 0 for no rows. ``scratch``, if given, is an (n,) work array."""
    if not FT.shape[1]:
        return 0.0
    z = FT[1 : 1 + n_features]
    return float(np.max(np.einsum("ij,ij->j", z, z, out=scratch)))


class Scorer:
    """Weighted log-probabilities of row chunks: one GEMM, with an exact fallback."""

    def __init__(self, params: MixtureParams, shift: np.ndarray) -> None:
        self.params = params
        self.shift = shift
        self.log_weights = np.log(params.weights)
        U, ctype = params.precisions_cholesky, params.covariance_type
        k = params.n_components
        self.log_det = log_det_cholesky(U, ctype, params.n_features)
        m = params.means - shift
        # One row per component: the E-step's product is WT @ F'.
        self.WT = log_prob_coefficients_by_component(m, U, ctype, self.log_weights,
                                                     self.log_det)
        self.W = self.WT.T  # (features, K): the layout of design_matrix(X) @ W
        # An upper bound of the largest eigenvalue of each precision.
        if ctype == "full":
            lam = np.einsum("kij,kij->k", U, U)
        elif ctype == "tied":
            lam = np.full(k, np.sum(U * U))
        elif ctype == "diag":
            lam = np.max(U * U, axis=1)
        else:
            lam = U * U
        self.lam = lam
        self.m2 = np.einsum("ki,ki->k", m, m)
        # The peak: no weighted log-density exceeds log pi_k + log det U_k - d/2 log 2 pi
        # (its value at x = mu_k). Scored relative to it, a point's terms are all <= 0 and
        # exp() needs no per-point maximum first (two passes of the E-step's six).
        peak = float(np.max(self.log_weights + self.log_det))  # (a scalar log_det if tied)
        peak -= 0.5 * params.n_features * math.log(2.0 * math.pi)
        self.peak = peak if math.isfinite(peak) else None
        if self.peak is not None:
            self.WT_peaked = self.WT.copy()
            self.WT_peaked[:, 0] -= peak

    def weighted_log_prob(self, X: np.ndarray, FT: np.ndarray, out: np.ndarray | None = None,
                          scratch: np.ndarray | None = None, peaked: bool = False,
                          z2: float | None = None) -> np.ndarray:
        """``log pi_k + log N(x_i | k)`` as a (K, n) array, from the transposed design
        ``FT`` (features, n) of ``X`` (written into ``out`` if given; ``scratch``, if given,
        is an (n,) work array). ``peaked=True`` (when ``self.peak`` is not None) gives it
        minus ``self.peak``. ``z2``, if given, is :func:`largest_square` of ``FT`` (a batch
        scored many times knows it)."""
        LT = np.matmul(self.WT_peaked if peaked else self.WT, FT, out=out)
        if z2 is None:
            z2 = largest_square(FT, X.shape[1], scratch)
        risky = np.flatnonzero(4.0 * _EPS * (z2 + self.m2) * self.lam > _EXPANSION_BUDGET)
        if len(risky):
            offset = self.log_weights[risky, None] - (self.peak if peaked else 0.0)
            LT[risky] = self._direct(X, risky).T + offset
        return LT

    def _direct(self, X: np.ndarray, components: np.ndarray) -> np.ndarray:
        p, d = self.params, X.shape[1]
        U, ctype = p.precisions_cholesky, p.covariance_type
        out = np.empty((len(X), len(components)))
        log_det = np.broadcast_to(self.log_det, (p.n_components,))
        for col, k in enumerate(components):
            diff = X - p.means[k]
            if ctype == "full":
                y = diff @ U[k]
            elif ctype == "tied":
                y = diff @ U
            else:
                y = diff * U[k]
            out[:, col] = -0.5 * (d * np.log(2 * np.pi) + np.einsum("ij,ij->i", y, y))
            out[:, col] += log_det[k]
        return out


def _log_resp_chunk(
    scorer: Scorer, X: np.ndarray, FT: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point log-likelihoods (n,) and log-responsibilities (n, K) of one chunk."""
    weighted = scorer.weighted_log_prob(X, FT)
    # Subtract each point's maximum first: for a far outlier the log-densities are ~ -1e30,
    # and (top + log(sum)) would round back to top, giving every component log-resp 0.
    top = weighted.max(axis=0)
    weighted -= top
    log_sum = logsumexp_columns(weighted)
    weighted -= log_sum
    return top + log_sum, weighted.T


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
    log_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    for scorer, start, stop, FT in _scored_chunks(X, params):
        log_norm[start:stop], log_resp[start:stop] = _log_resp_chunk(scorer, X[start:stop], FT)
    return log_norm, log_resp


def _scored_chunks(X: np.ndarray, params: MixtureParams):
    """For each fixed row chunk of ``X``: ``(scorer, start, stop, FT)``, one scorer of
    ``params`` for all of them and the chunk's transposed design ``FT``."""
    scorer = Scorer(params, default_shift(params))
    n = X.shape[0]
    step = chunk_rows(max(scorer.W.shape))
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield scorer, start, stop, design_columns(X[start:stop], scorer.shift,
                                                  params.covariance_type)


def log_likelihoods(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log p(x_i)`` of every row, shape (n,): :func:`estimate_log_prob_resp`'s first half
    without the responsibilities, scored relative to the model's peak (one exp pass, no
    per-point maximum; far outliers exactly, as in :func:`exp_normalize_peaked`)."""
    out = np.empty(X.shape[0])
    for scorer, start, stop, FT in _scored_chunks(X, params):
        Xc, chunk = X[start:stop], out[start:stop]
        if scorer.peak is None:
            chunk[:] = logsumexp_columns(scorer.weighted_log_prob(Xc, FT))
            continue
        LT = scorer.weighted_log_prob(Xc, FT, peaked=True)
        far = _peaked_totals(LT, chunk)
        np.log(chunk, out=chunk)
        chunk += scorer.peak
        if len(far):
            chunk[far] = logsumexp_columns(scorer.weighted_log_prob(Xc[far], FT[:, far]))
    return out


def most_likely_components(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """The component of highest responsibility for every row, shape (n,): the argmax of
    the weighted log-densities (a point's normaliser is the same for every component, so no
    exponential is needed; 2x faster than through the responsibilities)."""
    out = np.empty(X.shape[0], dtype=np.intp)
    for scorer, start, stop, FT in _scored_chunks(X, params):
        LT = scorer.weighted_log_prob(X[start:stop], FT)
        # (rows, K): numpy's argmax along the last axis is 2x faster than along the first.
        out[start:stop] = np.ascontiguousarray(LT.T).argmax(axis=1)
    return out


def mean_log_likelihood(X: np.ndarray, params: MixtureParams) -> float:
    """``mean_i log p(x_i)`` (:func:`log_likelihoods`, averaged): what judging a move on a
    sample needs."""
    return float(np.mean(log_likelihoods(X, params))) if X.shape[0] else float("nan")


def paired_gain(X: np.ndarray, params: MixtureParams, baseline: MixtureParams,
                z: float) -> float:
    """How much better ``params`` fits ``X`` than ``baseline``, less ``z`` standard errors.

    The mean over the rows of ``X`` of ``log p(x | params) - log p(x | baseline)`` (nats per
    point) minus ``z`` times its standard error: a lower confidence bound, so that a move
    judged on a sample of a thousand rows is kept for what it gains, not for the sample's
    luck (the per-row differences of two mixtures in different basins spread over several
    nats).
    """
    d = log_likelihoods(X, params) - log_likelihoods(X, baseline)
    if len(d) < 2:
        return float(np.mean(d)) if len(d) else float("nan")
    return float(np.mean(d) - z * np.std(d, ddof=1) / np.sqrt(len(d)))


def e_step(X: np.ndarray, params: MixtureParams) -> tuple[float, np.ndarray]:
    """E-step: mean log-likelihood of ``X`` and its log-responsibilities (n, K)."""
    log_norm, log_resp = estimate_log_prob_resp(X, params)
    return float(np.mean(log_norm)), log_resp


def make_scorer(params: MixtureParams, shift: np.ndarray | None = None) -> Scorer:
    """The per-parameters part of the E-step, to share between batches scored alike."""
    return Scorer(params, default_shift(params) if shift is None else shift)


def exp_normalize_into(LT: np.ndarray, top: np.ndarray, total: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exp_normalize_columns` with its (n,) arrays in given buffers (same bits).

    Returns ``(LT, log_norm)``; ``log_norm`` is written into ``total``.
    """
    np.max(LT, axis=0, out=top)
    LT -= top
    np.maximum(LT, _EXP_FLOOR, out=LT)
    np.exp(LT, out=LT)
    np.sum(LT, axis=0, out=total)
    LT /= total
    np.log(total, out=total)
    total += top
    return LT, total


def _peaked_totals(LT: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Clamp and exponentiate ``LT`` (K, n) in place (log-densities relative to the peak)
    and write each column's sum into ``total``; returns the far columns (sum below
    ``_FAR_TOTAL``), whose total is set to 1 (their caller redoes them the exact way; 1
    keeps 1/0 and log(0) out of the vector passes)."""
    np.maximum(LT, _PEAK_FLOOR, out=LT)
    np.exp(LT, out=LT)
    np.sum(LT, axis=0, out=total)
    far = np.flatnonzero(total < _FAR_TOTAL)
    total[far] = 1.0
    return far


def exp_normalize_peaked(LT: np.ndarray, scorer: Scorer, X: np.ndarray, FT: np.ndarray,
                          inverse: np.ndarray, total: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities and log-normaliser of a chunk scored relative to ``scorer.peak``.

    ``LT`` (K, n) holds ``log pi_k + log N(x_i | k) - peak``, all <= 0: clamp, exp, sum and
    one multiply by the reciprocal, without the per-point maximum of
    :func:`exp_normalize_into`. Columns whose sum is below ``_FAR_TOTAL`` (far outliers)
    are redone the exact way. ``inverse`` and ``total`` are (n,) buffers; returns
    ``(LT, log_norm)`` with ``log_norm`` written into ``total``.
    """
    far = _peaked_totals(LT, total)
    np.reciprocal(total, out=inverse)
    LT *= inverse
    np.log(total, out=total)
    total += scorer.peak
    if len(far):
        resp, log_norm = exp_normalize_columns(scorer.weighted_log_prob(X[far], FT[:, far]))
        LT[:, far] = resp
        total[far] = log_norm
    return LT, total
