"""Gaussian densities in the log domain, one small function per job.

Every function takes and returns numpy arrays; the covariance type picks the shape of
``covariances`` and ``precisions_cholesky``:

=========  ==================  =========================================
type       covariances         precisions_cholesky (upper triangular U)
=========  ==================  =========================================
full       (K, d, d)           (K, d, d), precision_k = U_k U_k^T
tied       (d, d)              (d, d)
diag       (K, d)              (K, d), 1 / sqrt(variance)
spherical  (K,)                (K,),   1 / sqrt(variance)
=========  ==================  =========================================

The log-densities of a batch are computed as one matrix product ``F @ W``: ``F`` holds, per
point, the features ``[1, x - c, q(x - c)]`` (``q`` = the products of coordinates the
covariance type needs) and ``W`` the matching coefficients of the quadratic form, so one
BLAS call scores every point against every component and, transposed, the same ``F``
accumulates the sufficient statistics (see :mod:`streamgmm.core.suffstats`). The shift ``c``
(the model's mean) keeps the expanded quadratic form free of cancellation for data far from
the origin.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data."
)

# The covariance vocabulary lives in streamgmm.core.params; these names stay importable from
# here (loaded on first use: params imports this module).
_FROM_PARAMS = ("COVARIANCE_TYPES", "check_covariance_type", "covariance_shape")


def __getattr__(name: str):
    if name in _FROM_PARAMS:
        from streamgmm.core import params

        return getattr(params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- Cholesky factors


def _upper_inverse_cholesky(covariances: np.ndarray) -> np.ndarray:
    """Batched over leading axes: ``U = L^-T`` where ``Sigma = L L^T``.

    Then ``Sigma^-1 = L^-T L^-1 = U U^T`` with ``U`` upper triangular. numpy's batched
    Cholesky and triangular inverse cost microseconds for a whole (K, d, d) stack.
    """
    if not np.all(np.isfinite(covariances)):
        raise ValueError(_ILL_DEFINED)
    try:
        cov_chol = np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        raise ValueError(_ILL_DEFINED) from None
    # inv() is LAPACK's gesv against the identity, as solve(L, I) is: the same bits, without
    # broadcasting an identity per component.
    return np.swapaxes(np.linalg.inv(cov_chol), -1, -2)


def _precision_cholesky_full(covariances: np.ndarray) -> np.ndarray:
    return _upper_inverse_cholesky(covariances)


def _precision_cholesky_tied(covariance: np.ndarray) -> np.ndarray:
    return _upper_inverse_cholesky(covariance)


def _precision_cholesky_variances(variances: np.ndarray) -> np.ndarray:
    if np.any(variances <= 0.0) or not np.all(np.isfinite(variances)):
        raise ValueError(_ILL_DEFINED)
    return 1.0 / np.sqrt(variances)


_PRECISION_CHOLESKY = {
    "full": _precision_cholesky_full,
    "tied": _precision_cholesky_tied,
    "diag": _precision_cholesky_variances,
    "spherical": _precision_cholesky_variances,
}


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper Cholesky factors of the precisions, from covariances.

    Raises
    ------
    ValueError
        If a covariance is not positive definite; the message says what to try.
    """
    return _PRECISION_CHOLESKY[covariance_type](np.asarray(covariances, dtype=np.float64))


def _flip(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1, ::-1]


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper Cholesky factors ``U`` with ``precision = U U^T``, from precisions.

    Reversing rows and columns turns the lower Cholesky factor of the flipped matrix into the
    upper factor of the original (scikit-learn #26415), so no inverse is ever formed.
    """
    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        return _flip(np.linalg.cholesky(_flip(precisions)))
    return np.sqrt(precisions)


def covariances_from_precision_cholesky(
    precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Covariances ``(U U^T)^-1`` from the precision Cholesky factors."""
    if covariance_type == "full":
        inv = np.linalg.inv(precisions_chol)  # U^-1, triangular and well conditioned
        return np.einsum("kji,kjl->kil", inv, inv)
    if covariance_type == "tied":
        inv = np.linalg.inv(precisions_chol)
        return inv.T @ inv
    return 1.0 / precisions_chol**2


def precisions_from_cholesky(precisions_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precisions ``U U^T`` (full, tied) or ``U**2`` (diag, spherical)."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", precisions_chol, precisions_chol)
    if covariance_type == "tied":
        return precisions_chol @ precisions_chol.T
    return precisions_chol**2


def log_det_cholesky(precisions_chol: np.ndarray, covariance_type: str, n_features: int):
    """Log-determinant of each precision Cholesky factor, shape (K,) (a scalar for tied).

    ``log det U = -1/2 log det Sigma``: this is the ``+log det`` term of the log-density.
    """
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(precisions_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_chol), axis=1)
    return n_features * np.log(precisions_chol)


# --------------------------------------------------------------------------- feature form


def n_quadratic_features(covariance_type: str, n_features: int) -> int:
    """Number of second-order features ``q(x)`` the covariance type needs."""
    if covariance_type in ("full", "tied"):
        return n_features * (n_features + 1) // 2
    if covariance_type == "diag":
        return n_features
    return 1


def n_design_columns(covariance_type: str, n_features: int) -> int:
    """Features per point of the design ``[1, z, q(z)]``: ``1 + d + n_quadratic_features``."""
    return 1 + n_features + n_quadratic_features(covariance_type, n_features)


@functools.lru_cache(maxsize=64)
def triu(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached ``np.triu_indices(n_features)`` (read-only): it is needed on every pass."""
    rows, cols = np.triu_indices(n_features)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def design_matrix(X: np.ndarray, shift: np.ndarray, covariance_type: str) -> np.ndarray:
    """Features ``F = [1, z, q(z)]`` of each row, with ``z = x - shift``, in float64.

    ``q(z)`` is the upper triangle of ``z z^T`` (full, tied), ``z**2`` (diag) or
    ``|z|^2`` (spherical). Shape (n, 1 + d + n_quadratic_features).
    """
    return design_columns(X, shift, covariance_type).T


def design_columns(X: np.ndarray, shift: np.ndarray, covariance_type: str) -> np.ndarray:
    """:func:`design_matrix` transposed, ``(1 + d + n_quadratic_features, n)``: the layout the
    E-step computes with (one contiguous row per feature)."""
    n, d = X.shape
    FT = np.empty((n_design_columns(covariance_type, d), n), dtype=np.float64)
    return _fill_design_columns(FT, X, shift, covariance_type)


def _fill_design_columns(FT: np.ndarray, X: np.ndarray, shift: np.ndarray,
                         covariance_type: str) -> np.ndarray:
    """Write :func:`design_matrix` of ``X``, transposed, into ``FT`` (features, n).

    Features by points: every feature is one contiguous row, so each product below is one
    contiguous vector operation (the (n, features) layout strided every write and cost 8x
    as much as the whole log-density product). The E-step reuses one buffer.
    """
    d = X.shape[1]
    FT[0] = 1.0
    z = FT[1 : 1 + d]
    np.subtract(X.T, shift[:, None], out=z)
    if covariance_type in ("full", "tied"):
        row = 1 + d  # the upper triangle of z z', in triu order
        for r in range(d):
            np.multiply(z[r], z[r:], out=FT[row : row + d - r])
            row += d - r
    elif covariance_type == "diag":
        np.square(z, out=FT[1 + d :])
    else:
        np.einsum("ij,ij->j", z, z, out=FT[1 + d])
    return FT


def log_prob_coefficients(
    means: np.ndarray,
    precisions_chol: np.ndarray,
    covariance_type: str,
    shift: np.ndarray,
    log_weights: np.ndarray | None = None,
    log_det: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients ``W`` such that ``design_matrix(X) @ W`` is the log-density matrix.

    With ``z = x - c``, ``m_k = mu_k - c`` and precision ``P_k``::

        log N(x | mu_k, Sigma_k) = -1/2 z'P z + m'P z - 1/2 m'P m - d/2 log(2 pi) + log det U_k

    so the constant, linear and quadratic rows of ``W`` are the three groups of terms. Off-
    diagonal quadratic features appear once in ``F`` but twice in ``z'P z``, hence ``-P_ij``
    for ``i < j`` and ``-P_ii / 2`` on the diagonal. ``log_weights`` (if given) are added to
    the constant row, giving the weighted log-probabilities of the E-step. ``log_det``, if
    given, is :func:`log_det_cholesky` of ``precisions_chol`` (the caller has it already).
    Returned as a view of :func:`log_prob_coefficients_by_component`'s array.
    """
    if log_det is None:
        log_det = log_det_cholesky(precisions_chol, covariance_type, means.shape[1])
    return log_prob_coefficients_by_component(means - shift, precisions_chol,
                                              covariance_type, log_weights, log_det).T


@functools.lru_cache(maxsize=64)
def _quadratic_layout(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each quadratic feature's coefficient sits in a flattened d x d precision, and
    its factor: ``-1/2`` on the diagonal, ``-1`` off it (a power of two: exact)."""
    rows, cols = triu(n_features)
    flat = rows * n_features + cols
    factor = np.where(rows == cols, -0.5, -1.0)
    flat.flags.writeable = False
    factor.flags.writeable = False
    return flat, factor


def log_prob_coefficients_by_component(
    offsets: np.ndarray,
    precisions_chol: np.ndarray,
    covariance_type: str,
    log_weights: np.ndarray | None,
    log_det: np.ndarray,
) -> np.ndarray:
    """:func:`log_prob_coefficients` transposed, (K, 1 + d + n_quadratic), C-ordered: one
    row per component, the layout of the E-step's product ``W' F'``. ``offsets`` are the
    means less the shift, ``log_det`` is :func:`log_det_cholesky` of ``precisions_chol``."""
    n_components, d = offsets.shape
    m = offsets  # m_k = mu_k - c, as in log_prob_coefficients' formula
    WT = np.empty((n_components, n_design_columns(covariance_type, d)), dtype=np.float64)
    if covariance_type in ("full", "tied"):
        P = precisions_from_cholesky(precisions_chol, covariance_type)
        if covariance_type == "tied":
            P = np.broadcast_to(P, (n_components, d, d))
        Pm = np.einsum("kij,kj->ki", P, m)
        flat, factor = _quadratic_layout(d)
        np.multiply(P.reshape(n_components, d * d)[:, flat], factor, out=WT[:, 1 + d :])
        mPm = np.einsum("ki,ki->k", Pm, m)
    elif covariance_type == "diag":
        P = precisions_chol**2
        Pm = P * m
        np.multiply(P, -0.5, out=WT[:, 1 + d :])
        mPm = np.einsum("ki,ki->k", Pm, m)
    else:
        p = precisions_chol**2
        Pm = p[:, None] * m
        np.multiply(p, -0.5, out=WT[:, 1 + d])
        mPm = p * np.einsum("ki,ki->k", m, m)
    WT[:, 1 : 1 + d] = Pm
    constant = WT[:, 0]
    np.add(mPm, d * math.log(2.0 * math.pi), out=constant)
    constant *= -0.5
    constant += log_det
    if log_weights is not None:
        constant += log_weights
    return WT


def log_gaussian_prob(
    X: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    covariance_type: str,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Log-density of every point under every component, shape (n, K)."""
    if shift is None:
        shift = means.mean(axis=0)
    FT = design_columns(X, shift, covariance_type)
    return (log_prob_coefficients(means, precisions_chol, covariance_type, shift).T @ FT).T


# exp() of arguments below this is < 1e-130 of the largest term: it cannot change a sum in
# float64, and clamping avoids the slow subnormal path of exp().
_EXP_FLOOR = -300.0


def exp_normalize_rows(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise softmax of ``L`` and its log-normaliser, in one exp pass.

    Returns ``(P, lse)`` with ``P = exp(L - lse[:, None])`` and
    ``lse = log(sum(exp(L), axis=1))``. ``L`` is overwritten by ``P``.
    """
    top = L.max(axis=1)
    L -= top[:, None]
    np.maximum(L, _EXP_FLOOR, out=L)
    np.exp(L, out=L)
    total = L.sum(axis=1)
    L /= total[:, None]
    return L, top + np.log(total)


def logsumexp_rows(L: np.ndarray) -> np.ndarray:
    """``log(sum(exp(L), axis=1))`` without overflow."""
    top = L.max(axis=1)
    E = np.maximum(L - top[:, None], _EXP_FLOOR)
    return top + np.log(np.exp(E, out=E).sum(axis=1))


# Column versions: the E-step keeps its chunks as (K, n), components by points, because
# numpy reduces over the leading axis of a C-ordered array ~20x faster than over a short
# trailing one (measured: max over 16 components of 4,096 points, 7 us vs 170 us).


def exp_normalize_columns(LT: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise softmax of ``LT`` (K, n) and its log-normaliser (n,); overwrites ``LT``."""
    top = LT.max(axis=0)
    LT -= top
    np.maximum(LT, _EXP_FLOOR, out=LT)
    np.exp(LT, out=LT)
    total = LT.sum(axis=0)
    LT /= total
    return LT, top + np.log(total)


def logsumexp_columns(LT: np.ndarray) -> np.ndarray:
    """``log(sum(exp(LT), axis=0))`` without overflow, for ``LT`` of shape (K, n)."""
    top = LT.max(axis=0)
    E = np.maximum(LT - top, _EXP_FLOOR)
    return top + np.log(np.exp(E, out=E).sum(axis=0))
