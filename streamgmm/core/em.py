"""Expectation-maximisation for Gaussian mixtures: E-step, M-step and the batch loop.

The E-step and the statistics pass are fused and run over row chunks: for each chunk, one
product ``F @ W`` gives the weighted log-probabilities, a log-sum-exp turns them into
responsibilities ``R``, and one product ``R^T F`` gives that chunk's moments. No (n, K)
array of the whole batch is ever held, and nothing loops over points in Python. The
log-densities of a chunk come from the parameters' :class:`~streamgmm.core.scoring.Scorer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamgmm.core.gaussian import (
    _fill_design_columns,
    design_columns,
    exp_normalize_columns,
    n_design_columns,
)
from streamgmm.core.parallel import ChunkPool
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import (
    Scorer,
    chunk_rows,
    exp_normalize_into,
    exp_normalize_peaked,
    largest_square,
    make_scorer,
)
from streamgmm.core.suffstats import SufficientStats, centered_scatter, moments_to_arrays

# A scatter computed as E[z z'] - E[z] E[z]' has lost its digits when its trace is below
# this fraction of E[|z|^2]; those components are recomputed about their own means.
_SCATTER_DIGITS = 1e-7


@dataclass(frozen=True)
class BatchStatistics:
    """What one fused E-step pass over a batch yields."""

    stats: SufficientStats
    log_likelihood: float  # summed (weighted) log p(x_i) under the parameters used
    n_points: float  # summed sample weight (the number of points when unweighted)

    @property
    def mean_log_likelihood(self) -> float:
        return self.log_likelihood / self.n_points if self.n_points else float("nan")


# The designs of a batch that run_em scores at every iteration are kept when they take at
# most this many float64 elements (128 MiB; 1.6 M points of d = 3, full covariances):
# every iteration then skips building them (a tenth of an E-step chunk's time).
KEPT_DESIGN_ELEMENTS = 1 << 24


class Designs:
    """The transposed designs of a batch's row chunks about a fixed shift, and each chunk's
    largest ``|z|^2``: what every iteration of :func:`run_em` would build again. Scoring with
    them gives the same bits.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    shift : ndarray of shape (d,)
    covariance_type : str
    n_components : int
        The chunks' rows depend on the number of components (:func:`chunk_rows`).
    """

    def __init__(self, X: np.ndarray, shift: np.ndarray, covariance_type: str,
                 n_components: int) -> None:
        n, d = X.shape
        self.step = chunk_rows(max(n_design_columns(covariance_type, d), n_components))
        self.designs = [design_columns(X[start : start + self.step], shift, covariance_type)
                        for start in range(0, n, self.step)]
        self.largest_squares = [largest_square(FT, d) for FT in self.designs]

    @staticmethod
    def worth_keeping(X: np.ndarray, covariance_type: str) -> bool:
        """Whether the designs of ``X`` fit in :data:`KEPT_DESIGN_ELEMENTS`."""
        n, d = X.shape
        return n * n_design_columns(covariance_type, d) <= KEPT_DESIGN_ELEMENTS


def batch_statistics(
    X: np.ndarray,
    params: MixtureParams,
    sample_weight: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    scorer: Scorer | None = None,
    pool: ChunkPool | None = None,
    designs: Designs | None = None,
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
    scorer : optional
        From :func:`make_scorer` for the same ``params``: saves rebuilding it when several
        batches are scored under the same parameters (``shift`` is then the scorer's).
    pool : ChunkPool, optional
        Threads for the row chunks (:func:`moments_pass`); the result does not depend on it.
    designs : Designs, optional
        ``X``'s chunk designs for ``shift``, made once for the iterations of :func:`run_em`
        (the same result).
    """
    if scorer is None:
        scorer = make_scorer(params, shift)
    moments, total_ll = moments_pass(X, scorer, sample_weight, pool, designs)
    n_points = float(X.shape[0] if sample_weight is None else np.sum(sample_weight))
    return finish_statistics(
        moments, total_ll, n_points, scorer,
        lambda means, components: scatter_pass(X, scorer, means, components, sample_weight),
    )


def moments_pass(
    X: np.ndarray, scorer: Scorer, sample_weight: np.ndarray | None = None,
    pool: ChunkPool | None = None, designs: Designs | None = None,
) -> tuple[np.ndarray, float]:
    """Raw weighted moments ``R^T F`` (K, 1 + d + n_quad) and summed log-likelihood of ``X``.

    The map half of a batch E-step: moments of disjoint batches scored by the same
    ``scorer`` add up to those of their union (see :func:`finish_statistics`).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    scorer : from :func:`make_scorer`
    sample_weight : ndarray of shape (n,), optional
    pool : ChunkPool, optional
        Threads that score the row chunks (see :mod:`streamgmm.parallel`). The chunks and the
        order in which their moments are added do not depend on it: the result is the same
        bit for bit with any number of threads.
    designs : Designs, optional
        The chunk designs of ``X`` for ``scorer.shift``, made beforehand.

    Returns
    -------
    moments : ndarray of shape (n_components, 1 + d + n_quadratic)
    log_likelihood : float
        ``sum_i w_i log p(x_i)``.
    """
    n_cols, k = scorer.W.shape
    parts = _chunked(X, scorer, sample_weight, pool, designs=designs)
    # The reduce, in chunk order whatever thread scored each chunk.
    moments = np.zeros((k, n_cols))
    total_ll = 0.0
    for part in parts:
        for chunk_moments, chunk_ll in part:
            moments += chunk_moments
            total_ll += chunk_ll
    return moments, total_ll


def _chunked(X: np.ndarray, scorer: Scorer, sample_weight: np.ndarray | None,
             pool: ChunkPool | None, bounds: np.ndarray | None = None,
             designs: Designs | None = None) -> list:
    """:func:`_score_chunks` over fixed row chunks of ``X``, split into contiguous spans of
    chunks, one per thread of ``pool``; the spans' results in chunk order."""
    n_cols, k = scorer.W.shape
    step = chunk_rows(max(n_cols, k))
    if designs is not None and designs.step != step:
        designs = None  # made for another number of components
    starts = range(0, X.shape[0], step)
    threads = 1 if pool is None else min(pool.threads, len(starts))
    if threads < 2:
        return [_score_chunks(X, scorer, sample_weight, starts, step, bounds, designs)]
    spans = np.array_split(np.arange(len(starts)), threads)
    return pool.map(lambda span: _score_chunks(
        X, scorer, sample_weight, starts[span[0] : span[-1] + 1], step, bounds, designs),
        spans)


def _score_chunks(X: np.ndarray, scorer: Scorer, sample_weight: np.ndarray | None,
                  starts: range, step: int, bounds: np.ndarray | None = None,
                  designs: Designs | None = None) -> list:
    """Moments and summed log-likelihood of each chunk ``X[start : start + step]``.

    With ``bounds`` (segment boundaries, as :func:`segment_statistics` gives them), each
    chunk yields a list of ``(segment, moments, log_likelihood)``, one per segment it meets.
    With ``designs`` (of these chunks), the chunks' designs are not built again.
    """
    ctype = scorer.params.covariance_type
    n_cols, k = scorer.W.shape
    n = X.shape[0]
    # One design buffer and one (K, rows) buffer for all the chunks: a fresh ~0.5 MB array
    # per chunk is an mmap/munmap pair whenever glibc's mmap threshold is fixed (as
    # MALLOC_TRIM_THRESHOLD_ does in dask workers), which cost 3x in throughput.
    # The (rows,) temporaries too: freed at the top of the heap they make glibc trim and
    # re-grow it at every chunk under a low MALLOC_TRIM_THRESHOLD_.
    rows = min(step, n)
    if designs is None:
        F_buf = np.empty(rows * n_cols)
    LT_buf = np.empty(rows * k)
    vec = np.empty((3, rows))
    peaked = scorer.peak is not None  # else the per-point maximum (a degenerate model)
    out = []
    for start in starts:
        stop = min(start + step, n)
        m = stop - start
        if designs is None:
            FT = _fill_design_columns(F_buf[: m * n_cols].reshape(n_cols, m), X[start:stop],
                                      scorer.shift, ctype)
            z2 = None
        else:
            FT = designs.designs[start // step]
            z2 = designs.largest_squares[start // step]
        LT = scorer.weighted_log_prob(X[start:stop], FT, out=LT_buf[: m * k].reshape(k, m),
                                      scratch=vec[0, :m], peaked=peaked, z2=z2)
        if peaked:
            resp, log_norm = exp_normalize_peaked(LT, scorer, X[start:stop], FT,
                                                   vec[1, :m], vec[2, :m])
        else:
            resp, log_norm = exp_normalize_into(LT, vec[1, :m], vec[2, :m])
        if sample_weight is None:
            ll = float(log_norm.sum())
        else:
            w = sample_weight[start:stop]
            ll = float(log_norm @ w)
            resp *= w
        if bounds is None:
            # np.dot releases the GIL around this product where np.matmul did not (the
            # same bits; bench_sensor_rate figure 5).
            out.append((np.dot(resp, FT.T), ll))
            continue
        pieces = []
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        for seg in range(first, len(bounds) - 1):
            a, b = max(bounds[seg], start) - start, min(bounds[seg + 1], stop) - start
            if a >= m:
                break
            if b > a:
                pieces.append((seg, resp[:, a:b] @ FT[:, a:b].T, float(log_norm[a:b].sum())))
        out.append(pieces)
    return out


def segment_statistics(
    segments: list[np.ndarray], params: MixtureParams, scorer: Scorer | None = None,
    pool: ChunkPool | None = None,
) -> list[BatchStatistics]:
    """:func:`batch_statistics` of each of several batches, in one pass over all of them.

    Scoring many small batches (the re-scored blocks of the online model) one call each
    costs more in per-call overhead than in arithmetic; here they are scored in the fixed
    row chunks of their concatenation, and each chunk's moments are split at the batches'
    boundaries. The chunks, and the order in which each batch's moments are added, do not
    depend on ``pool``: the result is the same bit for bit with any number of threads.
    """
    if scorer is None:
        scorer = make_scorer(params)
    sizes = [len(seg) for seg in segments]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    X = np.concatenate(segments) if len(segments) > 1 else segments[0]
    n_cols, k = scorer.W.shape
    parts = _chunked(X, scorer, None, pool, bounds)
    moments = np.zeros((len(segments), k, n_cols))
    totals = np.zeros(len(segments))
    for part in parts:  # in chunk order whatever thread scored each chunk
        for pieces in part:
            for seg, chunk_moments, chunk_ll in pieces:
                moments[seg] += chunk_moments
                totals[seg] += chunk_ll
    return _finish_stack(moments, totals, sizes, scorer, [
        lambda means, components, seg=seg: scatter_pass(seg, scorer, means, components)
        for seg in segments])


def finish_statistics(
    moments: np.ndarray,
    log_likelihood: float,
    n_points: float,
    scorer: Scorer,
    exact_scatter,
) -> BatchStatistics:
    """The reduce half: statistics from summed moments, with the exact-scatter fallback.

    Parameters
    ----------
    moments, log_likelihood : summed :func:`moments_pass` results of the whole data
    n_points : float
        Summed sample weight of the whole data.
    scorer : the scorer the moments were computed with
    exact_scatter : callable ``(means, components) -> ndarray``
        Summed :func:`scatter_pass` of the whole data; called only when a one-pass
        scatter lost its digits (a second pass over the data).
    """
    return _finish_stack(moments[None], [log_likelihood], [n_points], scorer,
                         [exact_scatter])[0]


def _finish_stack(moments: np.ndarray, log_likelihoods, n_points, scorer: Scorer,
                  exact_scatters) -> list[BatchStatistics]:
    """:func:`finish_statistics` of several batches at once: ``moments`` (B, K, columns),
    one log-likelihood, point count and exact-scatter callable per batch. The arrays of all
    of them are computed in one pass (re-scoring scores a few blocks per M-step)."""
    ctype = scorer.params.covariance_type
    counts, means, scatter = moments_to_arrays(moments, scorer.shift, ctype)
    lost = _lost_digits(means, scatter, scorer.shift, ctype)
    out = []
    for i, any_lost in enumerate(lost.any(axis=-1)):
        batch_scatter = scatter[i]
        if any_lost:
            components = np.flatnonzero(lost[i])
            total = exact_scatters[i](means[i], components)
            batch_scatter = batch_scatter.copy()
            lost_counts = counts[i][components].reshape(
                (-1,) + (1,) * (batch_scatter.ndim - 1))
            batch_scatter[components] = total[components] / lost_counts
        out.append(BatchStatistics(SufficientStats(ctype, counts[i], means[i], batch_scatter),
                                   float(log_likelihoods[i]), float(n_points[i])))
    return out


def _lost_digits(means: np.ndarray, scatter: np.ndarray, shift: np.ndarray,
                 covariance_type: str) -> np.ndarray:
    """Which components' one-pass scatter cancelled away most of its digits (a boolean
    array over the components, with any leading axes of ``means``)."""
    if covariance_type in ("full", "tied"):
        var = np.trace(scatter, axis1=-2, axis2=-1)
    elif covariance_type == "diag":
        var = scatter.sum(axis=-1)
    else:
        var = scatter * means.shape[-1]
    m = means - shift
    raw = np.maximum(var, 0.0) + np.einsum("...i,...i->...", m, m)
    return var <= _SCATTER_DIGITS * raw


def scatter_pass(X: np.ndarray, scorer: Scorer, means: np.ndarray, components: np.ndarray,
                 sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Summed scatter of some components about ``means``, the direct way (a second pass).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    scorer : the scorer of the first pass (its responsibilities are recomputed)
    means : ndarray of shape (n_components, d)
    components : ndarray of int
        The components to compute; the others are left zero.
    sample_weight : ndarray of shape (n,), optional

    Returns
    -------
    ndarray
        Shaped as :class:`SufficientStats` scatter, not divided by the counts.
    """
    ctype = scorer.params.covariance_type
    step = chunk_rows(max(scorer.W.shape))
    total = np.zeros(_scatter_like(means, ctype))
    for start in range(0, X.shape[0], step):
        Xc = X[start : start + step]
        FT = design_columns(Xc, scorer.shift, ctype)
        resp, _ = exp_normalize_columns(scorer.weighted_log_prob(Xc, FT))
        if sample_weight is not None:
            resp *= sample_weight[start : start + step]
        total += centered_scatter(Xc, resp.T, means, ctype, components)
    return total


def _scatter_like(means: np.ndarray, covariance_type: str) -> tuple:
    k, d = means.shape
    if covariance_type in ("full", "tied"):
        return (k, d, d)
    return (k, d) if covariance_type == "diag" else (k,)


def m_step(stats: SufficientStats, reg_covar: float) -> MixtureParams:
    """M-step: the maximum-likelihood parameters of the statistics."""
    return stats.to_params(reg_covar)


def robust_m_step(stats: SufficientStats, reg_covar: float) -> tuple[MixtureParams, bool]:
    """M-step that repairs indefinite covariances instead of raising.

    Returns the parameters and whether a repair was needed (callers count them).
    """
    try:
        params = stats.to_params(reg_covar)
        if _well_conditioned(params):
            return params, False
    except ValueError:
        pass
    return stats.repaired(reg_covar).to_params(reg_covar), True


def _well_conditioned(params: MixtureParams, rcond: float = 1e-12) -> bool:
    """Cholesky can succeed on a matrix that rounding made indefinite: check eigenvalues.

    The eigenvalues are needed only where a cheap bound cannot vouch for the covariance:
    ``trace(Sigma) * |U|_F^2`` bounds the condition number of ``L L'`` (the matrix the
    Cholesky factor ``L = U^-T`` stands for), and ``Sigma`` differs from it by rounding, about
    ``eps * |Sigma|``. Below ``1e-3 / rcond`` the smallest eigenvalue of ``Sigma`` is then
    far above ``rcond`` times the largest: the eigenvalue test would pass, so the result is
    the same (the M-steps of a LiDAR sweep and the rooms stream bounded at most 3e6; the
    eigenvalues were a quarter of an M-step's cost).
    """
    covariances, ctype = params.covariances, params.covariance_type
    if ctype in ("full", "tied"):
        U = params.precisions_cholesky
        bound = (np.trace(covariances, axis1=-2, axis2=-1)
                 * np.einsum("...ij,...ij->...", U, U))
        if np.all(bound < 1e-3 / rcond):
            return True
        vals = np.linalg.eigvalsh(covariances)
        return bool(np.all(vals.min(axis=-1) > rcond * np.abs(vals).max(axis=-1)))
    return bool(np.all(covariances > rcond * np.max(covariances)))


@dataclass
class EMResult:
    """Outcome of :func:`run_em`."""

    params: MixtureParams
    lower_bound: float
    n_iter: int
    converged: bool
    lower_bounds: list[float] = field(default_factory=list)
    n_repaired: int = 0  # M-steps whose covariances had to be repaired (robust=True)
    stats: SufficientStats | None = None  # the statistics of the last M-step


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
    robust: bool = False,
    pool: ChunkPool | None = None,
) -> EMResult:
    """Batch EM from ``params`` until the mean log-likelihood gains less than ``tol``.

    The loop is scikit-learn's: each iteration is an E-step under the current parameters
    (whose mean log-likelihood is the iteration's lower bound) followed by an M-step, and it
    stops when the lower bound changes by less than ``tol``. ``callback(n_iter, change)`` is
    called after every iteration (used for verbose output). ``robust=True`` repairs
    ill-defined covariances instead of raising (see :func:`robust_m_step`). ``pool`` scores
    the row chunks on threads, with the same result (:func:`moments_pass`). The chunks'
    designs are built once for all the iterations when they fit in
    :data:`KEPT_DESIGN_ELEMENTS` (:class:`Designs`).
    """
    if sample_weight is None:
        shift = X.mean(axis=0)
    else:
        shift = np.average(X, axis=0, weights=sample_weight)
    designs = None
    if Designs.worth_keeping(X, params.covariance_type):
        # The same at every iteration: built once.
        designs = Designs(X, shift, params.covariance_type, params.n_components)
    return em_loop(
        lambda p: batch_statistics(X, p, sample_weight, shift, pool=pool, designs=designs),
        params,
        reg_covar=reg_covar, tol=tol, max_iter=max_iter, lower_bound=lower_bound,
        callback=callback, robust=robust,
    )


def em_loop(
    statistics: Callable[[MixtureParams], BatchStatistics],
    params: MixtureParams,
    *,
    reg_covar: float,
    tol: float = 1e-3,
    max_iter: int = 100,
    lower_bound: float = -np.inf,
    callback=None,
    robust: bool = False,
) -> EMResult:
    """The EM loop of :func:`run_em` over any source of statistics.

    Parameters
    ----------
    statistics : callable
        ``statistics(params)`` returns the :class:`BatchStatistics` of the whole data under
        ``params``: :func:`batch_statistics` in memory, a map and reduce over a cluster in
        :mod:`streamgmm.dask_em`.
    params, reg_covar, tol, max_iter, lower_bound, callback, robust
        As in :func:`run_em`.

    Returns
    -------
    EMResult
        ``stats`` holds the statistics whose M-step gave ``params``.
    """
    lower_bounds: list[float] = []
    converged = False
    n_iter = n_repaired = 0
    stats = None
    for n_iter in range(1, max_iter + 1):
        previous = lower_bound
        batch = statistics(params)
        stats = batch.stats
        if robust:
            params, repaired = robust_m_step(batch.stats, reg_covar)
            n_repaired += repaired
        else:
            params = m_step(batch.stats, reg_covar)
        lower_bound = batch.mean_log_likelihood
        lower_bounds.append(lower_bound)
        change = lower_bound - previous
        if callback is not None:
            callback(n_iter, change)
        if abs(change) < tol:
            converged = True
            break
    return EMResult(params, lower_bound, n_iter, converged, lower_bounds, n_repaired, stats)
