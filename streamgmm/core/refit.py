"""Batch EM refits of an online model: warm from its parameters and from a fresh seeding.

:func:`refit` is the daemon's refit (every retained point, on its worker thread) and the
initialisation of :class:`~streamgmm.core.online.OnlineEM`: batch EM from the current
parameters and from a k-means++ seeding, the better one kept, renumbered to continue the
current components (:func:`align_components`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamgmm.core.em import batch_statistics, robust_m_step, run_em
from streamgmm.core.initialize import initial_statistics
from streamgmm.core.params import MixtureParams
from streamgmm.core.suffstats import SufficientStats


def _random_state(rng: np.random.Generator) -> np.random.RandomState:
    return np.random.RandomState(int(rng.integers(0, 2**31 - 1)))


@dataclass(frozen=True)
class RefitResult:
    """Outcome of :func:`refit`: the better of a warm and a fresh batch EM on ``X``."""

    params: MixtureParams
    stats: SufficientStats  # of ``X`` under ``params``, counts in points
    lower_bound: float  # mean log-likelihood of ``X`` at the last E-step
    n_points: int
    work: int  # EM point-iterations spent (both starts, seeding excluded)
    n_repaired: int
    fresh: bool  # the fresh k-means++ seeding won


def refit(
    X: np.ndarray,
    current: MixtureParams,
    *,
    reg_covar: float,
    rng: np.random.Generator,
    tol: float = 1e-3,
    max_iter: int = 100,
    fresh: bool = True,
) -> RefitResult:
    """Batch EM on ``X`` from ``current`` and from a fresh k-means++ seeding; the better wins.

    The one refit routine of streamgmm: the daemon's refits (every retained point, to
    convergence) and the online model's initialisation (its first points, a short run).

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The points to fit (a copy the caller does not mutate meanwhile).
    current : MixtureParams
        The warm start.
    reg_covar : float
    rng : numpy.random.Generator
        Draws the k-means++ seeding.
    tol, max_iter : float, int
        Stopping rule of each EM run (as :func:`streamgmm.core.em.run_em`).
    fresh : bool, default=True
        Also run from a fresh seeding (when ``len(X) >= n_components``).

    Returns
    -------
    RefitResult
        A fresh winner has its components renumbered to continue ``current``'s
        (:func:`align_components`).
    """
    runs = [run_em(X, current, reg_covar=reg_covar, tol=tol, max_iter=max_iter, robust=True)]
    repaired = 0
    if fresh and len(X) >= current.n_components:
        start, repaired = seed_params(X, current.n_components, current.covariance_type,
                                      reg_covar, rng)
        runs.append(run_em(X, start, reg_covar=reg_covar, tol=tol, max_iter=max_iter,
                           robust=True))
    repaired += sum(r.n_repaired for r in runs)
    best = int(np.argmax([r.lower_bound for r in runs]))
    params = runs[best].params
    stats = batch_statistics(X, params).stats
    if best == 1:
        params, stats = align_components(current, params, stats)
    # Work in EM point-iterations: every E-step of both runs plus the final statistics.
    work = len(X) * (1 + sum(r.n_iter for r in runs))
    return RefitResult(params, stats, runs[best].lower_bound, len(X), work, repaired,
                       best == 1)


def seed_params(
    X: np.ndarray, n_components: int, covariance_type: str, reg_covar: float,
    rng: np.random.Generator, method: str = "k-means++",
) -> tuple[MixtureParams, bool]:
    """A seeding of ``X`` turned into parameters (and whether it was repaired).

    ``method`` is ``"k-means++"`` (a seeding) or ``"kmeans"`` (Lloyd's k-means from it).
    """
    return robust_m_step(
        initial_statistics(X, n_components, method, _random_state(rng), covariance_type),
        reg_covar,
    )


def align_components(
    reference: MixtureParams, params: MixtureParams, stats: SufficientStats
) -> tuple[MixtureParams, SufficientStats]:
    """``params`` and ``stats`` with their components renumbered to match ``reference``.

    Component ``k`` of the result is the one whose mean is nearest to ``reference``'s
    component ``k`` (an optimal one-to-one assignment on squared distances), so a refit from
    a fresh seeding does not shuffle the numbering of an otherwise unchanged mixture.
    """
    cost = ((reference.means[:, None, :] - params.means[None, :, :]) ** 2).sum(axis=-1)
    _, order = linear_sum_assignment(cost)
    if np.array_equal(order, np.arange(len(order))):
        return params, stats
    tied = params.covariance_type == "tied"  # one shared covariance: nothing to reorder
    params = MixtureParams(
        params.weights[order], params.means[order],
        params.covariances if tied else params.covariances[order],
        params.precisions_cholesky if tied else params.precisions_cholesky[order],
        params.covariance_type,
    )
    stats = SufficientStats(stats.covariance_type, stats.counts[order], stats.means[order],
                            stats.scatter[order])
    return params, stats
