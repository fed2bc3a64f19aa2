"""Online EM for streams that arrive in sensor order, not shuffled.

Textbook stepwise EM assumes every batch is a fresh i.i.d. sample of one distribution. A
LiDAR or a moving robot delivers region after region instead: components drift to the
newest region and forget the old ones, or one component stretches over every new region
while the others stay where the stream began. On such streams textbook stepwise EM ends
1-5 nats per point below batch EM. :class:`OnlineEM` keeps stepwise EM's update and adds
these, each bounded in memory and in work per point:

1. **Replay.** A bounded uniform reservoir (or a window of the latest points, for drifting
   streams) stands for the history. Each update also scores a replay sample from it, so the
   statistics estimate the EM map of *all* data seen so far rather than of the newest batch
   alone; old regions keep their components. The running statistics are read as the
   history's part (``n_hist`` points) plus the new batch's part (``m`` points)::

       rho = min(eta, n_replay / n_hist)
       H = (1 - rho) S + rho S_replay           # history, re-scored under the current model
       S = (n_hist H + m S_new) / (n_hist + m)

   The new batch enters with its true share ``m / (n_hist + m)``, as in batch EM, whatever
   the step; the step only sets how fast the history's responsibilities are refreshed.
   (Moving the whole statistics by ``eta`` towards the target
   ``(m S_new + n_hist S_replay) / (m + n_hist)`` would give the new batch only ``eta`` times
   its share, which leaves newly reached regions under-weighted between relocations.) The
   refresh noise is what the final statistics keep (about ``rho / n_replay`` of relative
   variance), hence two bounds. The replay sample has at least ``replay_min`` points: a
   replay of a quarter of a 32-point batch would cost more likelihood than it saves time.
   And the refresh never moves the history further than the share of it the replay sample
   stands for, ``n_replay / n_hist``: beyond that it would swap exact (if slightly stale)
   statistics of many points for the noise of a few. Without this bound one
   ``partial_fit`` of 32 points after ``fit`` on 9,000 costs 0.02 nats/point of held-out
   likelihood; with it, nothing measurable (and sorted and i.i.d. streams end as before).
2. **Change points and relocation.** The gap between how well the model explains the history
   (replay log-likelihood) and the newest batch is accumulated in a CUSUM. When the stream
   keeps arriving where the model has no components, the sum passes its threshold (a
   *change point*, counted) and :func:`refit` runs a short batch EM on a retained sample
   twice, from the current parameters and from a fresh k-means++ seeding, keeping the
   better. The history is in-sample for the model and the new batch is not, so even on
   i.i.d. data the history fits better by about ``n_parameters / n_hist`` nats per point
   (AIC's optimism); the CUSUM's allowance includes that term so small i.i.d. streams do
   not trigger relocations on this bias alone. A quiet stream still gets a fresh start each
   time it doubles, so a bad initial seeding does not last (what ``n_init`` does in batch).
3. **Split-merge moves.** When a relocation is not affordable, the two most redundant
   components (cheapest merge, from their statistics alone) are merged exactly and the freed
   one is born on the worst-explained retained points; the move is kept only if an
   independent retained sample fits better (:func:`split_merge_candidate`).
4. **A budget.** Relocations spend at most ``relocate_budget`` and moves ``move_budget`` EM
   point-iterations per absorbed point (after ``budget_head_start``): the cost per point is
   bounded whatever the stream. With ``retain="window"`` they are spaced per window instead,
   and the statistics are the exact statistics of the window's blocks (points that leave
   the window leave the model: :class:`WindowBlock`).
5. **Re-seeding.** A component whose weight falls below ``min_weight`` is moved onto a
   worst-explained point of the batch (or of the retained sample, when the batch has fewer
   points than there are dead components) and counted.

With ``replay=False, relocate=False`` this is textbook stepwise EM. The class is the pure
numerical state of the estimator's ``partial_fit``: no I/O, a seeded ``numpy`` Generator,
and a :meth:`to_state` / :meth:`from_state` pair that round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamgmm.core.constraints import validate_online_settings
from streamgmm.core.em import (
    batch_statistics,
    estimate_log_prob_resp,
    make_scorer,
    robust_m_step,
    run_em,
)
from streamgmm.core.initialize import initial_responsibilities
from streamgmm.core.params import MixtureParams
from streamgmm.core.retain import Retained, make_retained
from streamgmm.core.stepwise import step_size
from streamgmm.core.suffstats import SufficientStats


@dataclass(frozen=True)
class OnlineSettings:
    """Hyper-parameters of :class:`OnlineEM` (see the estimator for their documentation)."""

    n_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    step_decay: float = 0.6
    step_offset: float = 2.0
    step_constant: float | None = None
    averaging: bool = False
    retain: str = "reservoir"
    retain_size: int = 20_000
    replay: bool = True
    replay_fraction: float = 0.25
    replay_min: int = 256
    relocate: bool | str = True  # True, False, or "defer" (flag it; the caller relocates)
    relocate_threshold: float = 0.02
    relocate_growth: float = 1.1
    relocate_max_iter: int = 15
    # Relocation fits a uniform subsample of at most this many retained points: its cost,
    # and the pause it puts into the stream, stays bounded whatever retain_size is.
    relocate_max_points: int = 4096
    # Relocations may spend at most ``relocate_budget`` EM point-iterations per absorbed
    # point, split-merge moves ``move_budget``, each after a head start of
    # ``budget_head_start`` (so short streams are not starved): the cost per point of
    # keeping up with a sensor-ordered stream is bounded by construction.
    relocate_budget: float = 1.5
    move_budget: float = 0.5
    budget_head_start: float = 1_000_000
    # Split-merge moves: a birth on the worst-explained retained points paid for by the
    # exact merge of the two most redundant components, tried on a retained sample of
    # ``move_points`` with ``move_iter`` EM iterations and kept only if it fits better.
    moves: bool = True
    move_points: int = 2048
    move_iter: int = 3
    min_weight: float | None = None
    tol: float = 1e-3

    def check(self) -> None:
        validate_online_settings(self)  # the rules: streamgmm.core.constraints

    @property
    def weight_floor(self) -> float:
        return self.min_weight if self.min_weight is not None else 1e-3 / self.n_components


@dataclass(frozen=True)
class UpdateInfo:
    """What one :meth:`OnlineEM.update` did."""

    avg_log_likelihood: float  # of the new points under the model before the update
    step: float
    reseeded: int
    relocated: bool
    moved: bool = False  # a split-merge move was accepted
    change_point: bool = False  # the CUSUM crossed its threshold with this batch


@dataclass
class WindowBlock:
    """Consecutive points of the window with their statistics and mean log-likelihood.

    The statistics (counts in points) are those of the responsibilities under the
    parameters of the last time the block was scored.
    """

    rows: np.ndarray
    stats: SufficientStats
    log_likelihood: float  # mean, per point, when last scored

    def __len__(self) -> int:
        return len(self.rows)


# The window's statistics are kept in about this many blocks: eviction is exact to one
# block in this many, and pooling them costs one vectorised pass per update.
WINDOW_BLOCKS = 16


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

    The one refit routine of streamgmm: the online model's relocations (a short run on a
    subsample of the retained points) and the daemon's refits (a long run on all of them)
    both call it, with different ``max_iter`` and sample sizes.

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


def run_relocation(X: np.ndarray, current: MixtureParams, seed: int,
                   settings: OnlineSettings) -> RefitResult:
    """A relocation: :func:`refit` with the online settings' short EM (pure; any thread)."""
    return refit(X, current, reg_covar=settings.reg_covar, rng=np.random.default_rng(seed),
                 tol=settings.tol, max_iter=settings.relocate_max_iter)


def seed_params(
    X: np.ndarray, n_components: int, covariance_type: str, reg_covar: float,
    rng: np.random.Generator,
) -> tuple[MixtureParams, bool]:
    """A k-means++ seeding of ``X`` turned into parameters (and whether it was repaired)."""
    resp = initial_responsibilities(X, n_components, "k-means++", _random_state(rng))
    return robust_m_step(
        SufficientStats.from_responsibilities(X, resp, covariance_type), reg_covar
    )


def _full_scatter(stats: SufficientStats) -> np.ndarray:
    """Per-component scatter as (K, d, d) matrices, whatever the covariance type."""
    k, d = stats.means.shape
    if stats.covariance_type == "full":
        return stats.scatter
    if stats.covariance_type == "tied":
        return np.broadcast_to(stats.scatter, (k, d, d))
    if stats.covariance_type == "diag":
        return stats.scatter[:, :, None] * np.eye(d)
    return stats.scatter[:, None, None] * np.eye(d)


def merge_costs(stats: SufficientStats, reg_covar: float) -> np.ndarray:
    """Loss of log-likelihood (nats, per unit of count) of merging each pair of components.

    With hard assignments, a Gaussian fitted to ``n`` points of covariance ``C`` explains
    them with ``-n/2 (log|C| + d log 2 pi e)``; the merged pair's covariance is the exact
    Chan merge of the two. So the cost of merging ``i`` and ``j`` (``n = n_i + n_j``) is::

        n/2 log|C_ij| - n_i/2 log|C_i| - n_j/2 log|C_j| - n_i log(n/n_i) - n_j log(n/n_j)

    (the last two terms: one weight instead of two). Returns a (K, K) array with ``inf`` on
    the diagonal.
    """
    counts = np.maximum(stats.counts, 1e-300)
    means = stats.means
    scatter = _full_scatter(stats)
    k, d = means.shape
    eye = reg_covar * np.eye(d)
    n = counts[:, None] + counts[None, :]
    fa = counts[:, None] / n
    fb = 1.0 - fa
    delta = means[None, :, :] - means[:, None, :]
    merged = (fa[..., None, None] * scatter[:, None] + fb[..., None, None] * scatter[None, :]
              + (fa * fb)[..., None, None] * delta[..., :, None] * delta[..., None, :])
    _, logdet_pair = np.linalg.slogdet(merged + eye)
    _, logdet = np.linalg.slogdet(scatter + eye)
    cost = (0.5 * n * logdet_pair - 0.5 * counts[:, None] * logdet[:, None]
            - 0.5 * counts[None, :] * logdet[None, :]
            - counts[:, None] * np.log(1.0 / fa) - counts[None, :] * np.log(1.0 / fb))
    cost[np.arange(k), np.arange(k)] = np.inf
    return cost


def split_merge_candidate(
    stats: SufficientStats, Y: np.ndarray, log_norm: np.ndarray, reg_covar: float,
    rng: np.random.Generator,
) -> tuple[SufficientStats, int, int]:
    """Statistics with the cheapest pair merged and the freed component born on misfits.

    Returns the new statistics and the pair ``(i, j)``: component ``i`` holds the exact
    Chan merge of the two, ``j`` is the newborn, centred on a point drawn among the
    worst-explained 5% of ``Y`` (in a region no component covers, when the stream has moved
    there), with the mean and covariance of its nearest worst-explained neighbours and the
    weight of the points they stand for. Every other component is left as it was.
    """
    cost = merge_costs(stats, reg_covar)
    i, j = (int(v) for v in np.unravel_index(np.argmin(cost), cost.shape))
    ctype = stats.covariance_type
    joined = stats.select([i]).merge(stats.select([j]))
    n_bad = max(int(0.05 * len(Y)), min(len(Y), 2 * Y.shape[1] + 2))
    bad = np.argpartition(log_norm, n_bad - 1)[:n_bad]
    centre = Y[bad[rng.integers(len(bad))]]
    n_near = max(n_bad // 4, Y.shape[1] + 1)
    near = bad[np.argsort(((Y[bad] - centre) ** 2).sum(axis=1))[:n_near]]
    local = SufficientStats.from_responsibilities(Y[near], np.ones((len(near), 1)), ctype)
    born = local.scale(stats.total / len(Y))  # the share of the points it stands for
    return stats.replace({i: joined, j: born}), i, j


class OnlineEM:
    """Stepwise EM state of one mixture: statistics, step counter, retained sample.

    Parameters
    ----------
    settings : OnlineSettings
    n_features : int
    seed : int or numpy.random.Generator
        Seeds the reservoir, the replay draws and the k-means++ seedings.
    """

    def __init__(
        self, settings: OnlineSettings, n_features: int, seed: int | np.random.Generator = 0
    ) -> None:
        settings.check()
        self.settings = settings
        self.n_features = int(n_features)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.retained: Retained = make_retained(
            settings.retain, settings.retain_size, self.n_features
        )
        self.stats: SufficientStats | None = None
        self.average: SufficientStats | None = None
        self.params: MixtureParams | None = None
        self.n_updates = 0  # stepwise moves since initialisation
        self.n_averaged = 0
        self.n_seen = 0  # points absorbed into the model
        self.n_reseeded = 0
        self.n_relocations = 0
        self.n_repaired = 0  # M-steps whose covariances had to be repaired
        self.relocation_due = False  # with relocate="defer": the owner should relocate
        self.surprise = 0.0  # CUSUM of (history fit - new-batch fit), in nats
        self.seen_at_relocation = 0
        self.work = 0  # EM point-iterations spent on relocations
        self.move_work = 0  # ... and on split-merge moves
        self.n_moves = 0  # split-merge moves accepted
        # retain="window" with replay: the exact statistics of the window, block by block
        # (incremental EM over the window, Neal & Hinton 1998): points that leave the
        # window leave the statistics, so the model forgets a place it no longer sees.
        self.blocks: list[WindowBlock] | None = (
            [] if settings.retain == "window" and settings.replay else None)
        self.block_cursor = 0  # the next block to re-score
        self.refresh_credit = 0.0  # rows of re-scoring owed to the blocks
        self.n_move_trials = 0
        self.n_change_points = 0  # CUSUM crossings: the stream left what the model describes
        self.seen_at_move_trial = 0
        self.prior_points = 0.0  # weight of a loaded prior beyond the retained points
        self.last_change_point = -1  # n_seen at the last one
        # Optional ``points -> MixtureParams`` used instead of k-means++ to start the batch EM
        # that initialises the model once enough points are buffered (the estimator sets it
        # when some of ``weights_init``/``means_init``/``precisions_init`` are given). It is
        # a start-up hook only, so it is not part of :meth:`to_state`.
        self.initializer = None

    # ------------------------------------------------------------------ set-up

    @property
    def initialized(self) -> bool:
        return self.params is not None

    def set_params(self, params: MixtureParams, stats: SufficientStats | None = None) -> None:
        """Adopt ``params`` (from ``*_init`` or a refit) as the current model."""
        if stats is None:
            stats = SufficientStats.from_params(params)
        self.stats = stats.normalized()
        self.params = params
        self.average = None
        self.n_averaged = 0
        self.surprise = 0.0
        if self.blocks:
            # The window's statistics are its own points' under the new parameters.
            self._rescore_window()

    def start(self, params: MixtureParams, stats: SufficientStats | None = None,
              fitted_on: np.ndarray | None = None) -> None:
        """Start the stream from ``params``: the one way an :class:`OnlineEM` gets going.

        Parameters
        ----------
        params : MixtureParams
            From ``*_init``, a ``load``, or a batch EM.
        stats : SufficientStats, optional
            Their statistics; by default those of ``fitted_on`` under ``params`` when given,
            else :meth:`SufficientStats.from_params`.
        fitted_on : ndarray of shape (n, d), optional
            The points ``params`` were fitted on (``fit``): they are retained and counted in
            ``n_seen``, as if streamed, and relocations are spaced from there.
        """
        if fitted_on is not None:
            self.retained.add(fitted_on, self.rng)
            self.n_seen = self.retained.n_offered
            if stats is None:
                stats = batch_statistics(fitted_on, params).stats
        self.seen_at_relocation = self.n_seen
        self.n_updates = 1
        self.set_params(params, stats)
        if self.blocks is not None and not self.blocks and len(self.retained):
            # The points it started from open the window.
            rows = self.retained.points.copy()
            self.blocks.append(WindowBlock(rows, batch_statistics(rows, params).stats, 0.0))
            self._rescore_window()

    def _fit_sample(self, X: np.ndarray, start: MixtureParams | None) -> tuple:
        """Batch EM on ``X`` from ``start`` (or a k-means++ seeding); returns (result, stats)."""
        s = self.settings
        if start is None:
            start, repaired = seed_params(X, s.n_components, s.covariance_type, s.reg_covar,
                                          self.rng)
            self.n_repaired += repaired
        result = run_em(X, start, reg_covar=s.reg_covar, tol=s.tol,
                        max_iter=s.relocate_max_iter, robust=True)
        self.n_repaired += result.n_repaired
        return result, batch_statistics(X, result.params).stats

    def _initialize_from_retained(self) -> None:
        X = self._relocation_sample()
        start = None if self.initializer is None else self.initializer(X)
        self.initializer = None  # used once
        result, stats = self._fit_sample(X, start)
        self.n_seen = self.retained.n_offered  # the buffered points, already retained
        self.start(result.params, stats)

    # ------------------------------------------------------------------ the update

    def update(self, X: np.ndarray, remember: bool = True) -> UpdateInfo:
        """Absorb a batch ``X`` of shape (m, d), m >= 1.

        ``remember=False`` re-applies points that were already counted and retained (after a
        refit replaced the statistics): the statistics move, the sample and ``n_seen`` don't.
        """
        s = self.settings
        m = X.shape[0]
        if not self.initialized:
            # Too few points to seed every component: keep them until there are enough.
            self.retained.add(X, self.rng)
            if len(self.retained) >= s.n_components:
                self._initialize_from_retained()
                return UpdateInfo(float("nan"), 1.0, 0, False)
            return UpdateInfo(float("nan"), 0.0, 0, False)

        params = self.params
        scorer = make_scorer(params)  # shared by the new batch and the replay sample
        new = batch_statistics(X, params, scorer=scorer)
        self.n_updates += 1
        step = step_size(self.n_updates, s.step_decay, s.step_offset, s.step_constant)
        history_ll = float("nan")
        n_hist = self.retained.represented
        if self.blocks is not None:
            if not remember:
                # Re-applied after a refit: the batch is in a block already, re-scored
                # under the adopted parameters by adopt(); nothing moves.
                return UpdateInfo(new.mean_log_likelihood, step, 0, False)
            history_ll = self._window_update(X, new, params, scorer)
        elif s.replay and len(self.retained) and n_hist:
            n_replay = max(s.replay_min, int(np.ceil(s.replay_fraction * m)))
            replay = batch_statistics(
                self.retained.sample(n_replay, self.rng), params, scorer=scorer
            )
            history_ll = replay.mean_log_likelihood
            # The history's statistics move towards their re-scored replay estimate by the
            # step, at most by the share of the history the replay stands for; the new batch
            # then joins with its share m / (n_hist + m) (see the module docstring).
            # ``new.stats`` carries the batch's m points as its counts.
            # A loaded prior (``adopt(..., prior_points=w)``) counts as w more history points.
            n_hist = n_hist + self.prior_points
            refresh = min(step, replay.n_points / n_hist)
            history = self.stats.interpolate(replay.stats, refresh)
            self.stats = history.scale(n_hist).merge(new.stats).normalized()
        else:
            # Textbook stepwise EM (Cappe & Moulines 2009): S = (1 - eta) S + eta S_new.
            self.stats = self.stats.interpolate(new.stats, step)
        reseeded = self._reseed_dead(X, params)
        self._refresh_params()
        if remember:
            self.retained.add(X, self.rng)
            self.n_seen += m

        relocated = moved = change_point = False
        if s.relocate and np.isfinite(history_ll):
            gap = history_ll - new.mean_log_likelihood
            # One-sided CUSUM with an allowance so that i.i.d. noise drifts it back to zero;
            # the allowance includes the history's in-sample optimism (module docstring).
            n_fit = max(self.retained.represented, 1)  # points the model is fitted to
            allowance = s.relocate_threshold + params.n_parameters() / n_fit
            was_quiet = self.surprise <= s.relocate_threshold * n_fit
            self.surprise = max(0.0, self.surprise + m * (gap - allowance))
            # The evidence needed grows with the points the model stands for (the whole
            # stream for a reservoir, the window for a window).
            if self.surprise > s.relocate_threshold * n_fit:
                if was_quiet:
                    # The stream left what the model describes: a change point.
                    change_point = True
                    self.n_change_points += 1
                    self.last_change_point = self.n_seen
                if self._relocation_affordable():
                    relocated = self._relocate_or_defer()
                elif s.moves and self._move_affordable():
                    moved = self.try_move()
            elif (self.blocks is None and self.n_seen >= 2 * self.seen_at_relocation
                  and self._relocation_affordable()):
                # A quiet stream may still sit in a local optimum from its start (i.i.d.
                # data seeded badly). Each time the stream has doubled since the last
                # relocation, one more fresh k-means++ start competes with the model: over
                # the stream they add up to what n_init does for batch EM, at a cost that
                # grows with the logarithm of the stream.
                relocated = self._relocate_or_defer()
        return UpdateInfo(new.mean_log_likelihood, step, reseeded, relocated, moved,
                          change_point)

    # ------------------------------------------------------------------ budgets


    def _relocation_cost(self) -> float:
        s = self.settings
        n = min(len(self.retained), s.relocate_max_points)
        return 2.0 * n * (s.relocate_max_iter + 1)

    def _relocation_affordable(self) -> bool:
        s = self.settings
        if self.blocks is not None:
            # A window forgets: a change of place must be answered within about a window,
            # whatever the stream's length. At most one relocation per quarter window of
            # new points: at most 8 (relocate_max_iter + 1) point-iterations per point
            # while the stream keeps changing, none while it does not (the CUSUM is quiet).
            return self.n_seen - self.seen_at_relocation >= s.retain_size / 4
        spaced = self.n_seen >= s.relocate_growth * self.seen_at_relocation
        allowance = s.relocate_budget * self.n_seen + s.budget_head_start
        return spaced and self.work + self._relocation_cost() <= allowance

    def _move_affordable(self) -> bool:
        s = self.settings
        if self.blocks is not None:
            # As for relocations, per window: at most one trial per 1/16 window of points.
            return self.n_seen - self.seen_at_move_trial >= s.retain_size / 16
        cost = 2.0 * min(len(self.retained), s.move_points) * (s.move_iter + 1)
        enough = len(self.retained) > 4 * s.n_components
        return enough and self.move_work + cost <= s.move_budget * self.n_seen + (
            s.budget_head_start)

    # ------------------------------------------------------------------ the window

    def _window_update(self, X: np.ndarray, new, params: MixtureParams, scorer) -> float:
        """Push the batch as (part of) a block, evict what left the window, re-score.

        Returns the mean log-likelihood of the window before the batch (for the CUSUM).
        """
        s = self.settings
        blocks = self.blocks
        history = [(len(b), b.log_likelihood) for b in blocks]
        capacity = s.retain_size
        target = max(1, capacity // WINDOW_BLOCKS)
        if blocks and len(blocks[-1]) + len(X) <= target:
            last = blocks[-1]
            n = len(last) + len(X)
            blocks[-1] = WindowBlock(
                np.vstack([last.rows, X]), last.stats.merge(new.stats),
                (len(last) * last.log_likelihood + len(X) * new.mean_log_likelihood) / n)
        else:
            blocks.append(WindowBlock(X[-capacity:].copy(), new.stats.scale(
                min(1.0, capacity / len(X))), new.mean_log_likelihood))
        excess = sum(len(b) for b in blocks) - capacity
        while excess > 0:
            oldest = blocks[0]
            if len(oldest) <= excess:
                blocks.pop(0)
                self.block_cursor = max(0, self.block_cursor - 1)
                excess -= len(oldest)
            else:
                keep = len(oldest) - excess
                blocks[0] = WindowBlock(oldest.rows[-keep:], oldest.stats.scale(
                    keep / len(oldest)), oldest.log_likelihood)
                excess = 0
        # Re-score the stalest blocks, about replay_fraction rows per new row.
        self.refresh_credit = min(self.refresh_credit + s.replay_fraction * len(X), capacity)
        while len(blocks) > 1:
            self.block_cursor %= len(blocks) - 1  # never the newest: scored just now
            block = blocks[self.block_cursor]
            if self.refresh_credit < len(block):
                break
            self.refresh_credit -= len(block)
            fresh = batch_statistics(block.rows, params, scorer=scorer)
            blocks[self.block_cursor] = WindowBlock(block.rows, fresh.stats,
                                                    fresh.mean_log_likelihood)
            self.block_cursor += 1
        self.stats = SufficientStats.pool([b.stats for b in blocks]).normalized()
        if not history:
            return float("nan")
        n = sum(h[0] for h in history)
        return float(sum(c * ll for c, ll in history) / n)

    def _rescore_window(self) -> None:
        """Score every block under the current parameters (after they were replaced)."""
        if not self.blocks:
            return
        scorer = make_scorer(self.params)
        for i, block in enumerate(self.blocks):
            fresh = batch_statistics(block.rows, self.params, scorer=scorer)
            self.blocks[i] = WindowBlock(block.rows, fresh.stats, fresh.mean_log_likelihood)
        self.stats = SufficientStats.pool([b.stats for b in self.blocks]).normalized()

    def _relocation_sample(self) -> np.ndarray:
        X = self.retained.points
        cap = self.settings.relocate_max_points
        if len(X) <= cap:
            return X.copy()
        return X[np.sort(self.rng.choice(len(X), size=cap, replace=False))]

    def _relocate_or_defer(self) -> bool:
        if self.settings.relocate == "defer":
            # The owner runs it off its loop: relocation_job() -> refit() -> finish_relocation.
            self.relocation_due = True
            return False
        self.relocate()
        return True

    def relocate(self) -> None:
        """Batch EM on the retained sample, from the current model and from a fresh seeding."""
        self.finish_relocation(run_relocation(*self.relocation_job(), self.settings))

    def relocation_job(self) -> tuple[np.ndarray, MixtureParams, int]:
        """What a relocation needs, to run now or on another thread: a copy of a retained
        sample, the current parameters and a seed for the k-means++ start.

        Run them with :func:`run_relocation`, then give the result to
        :meth:`finish_relocation`; :meth:`relocate` does both at once.
        """
        self.relocation_due = False
        X = self._relocation_sample()
        return X, self.params, int(self.rng.integers(0, 2**63 - 1))

    def finish_relocation(self, result: RefitResult) -> None:
        """Adopt a relocation's result and charge its work to the budget."""
        self.work += result.work
        self.n_repaired += result.n_repaired
        self.adopt(result.params, result.stats, relocation=True)

    def try_move(self) -> bool:
        """One split-merge move judged on a retained sample; kept only if it fits better.

        A few EM iterations on the sample let the newborn settle on its region; then the
        model keeps the exact statistics of every component the move did not touch, the
        merged pair's exact merge, and the newborn's statistics from the sample. The move
        is kept if a second, independent sample's mean log-likelihood under the resulting
        parameters beats the current model's by ``relocate_threshold`` (judged on the
        sample it was fitted to, a move would often win on that sample's noise alone).
        """
        s = self.settings
        n = min(len(self.retained), s.move_points)
        Y = self.retained.sample(n, self.rng)
        V = self.retained.sample(n, self.rng)
        log_norm, _ = estimate_log_prob_resp(Y, self.params)
        stats, i, j = split_merge_candidate(self.stats, Y, log_norm, s.reg_covar, self.rng)
        candidate, repaired = robust_m_step(stats, s.reg_covar)
        settled = run_em(Y, candidate, reg_covar=s.reg_covar, tol=0.0, max_iter=s.move_iter,
                         robust=True)
        newborn = batch_statistics(Y, settled.params).stats
        stats = stats.replace({j: newborn.select([j]).scale(stats.total / len(Y))})
        params, repaired_final = robust_m_step(stats, s.reg_covar)
        current_ll = float(np.mean(estimate_log_prob_resp(V, self.params)[0]))
        moved_ll = float(np.mean(estimate_log_prob_resp(V, params)[0]))
        self.move_work += n * (settled.n_iter + 4)
        self.n_move_trials += 1
        self.seen_at_move_trial = self.n_seen
        if not moved_ll > current_ll + s.relocate_threshold:
            self.surprise *= 0.5  # tried: wait for more evidence before the next trial
            return False
        self.n_repaired += repaired + settled.n_repaired + repaired_final
        self.n_moves += 1
        surprise = self.surprise
        self.set_params(params, stats)
        self.surprise = 0.5 * surprise  # a relocation may still be due
        return True

    def adopt(self, params: MixtureParams, stats: SufficientStats, relocation: bool,
              prior_points: float = 0.0) -> None:
        """Take parameters fitted elsewhere as the current model.

        Parameters
        ----------
        params, stats : MixtureParams, SufficientStats
            A relocation's or a refit's result (fitted on the retained points), or a mixture
            fitted elsewhere (a ``load``).
        relocation : bool
            Count it as a relocation.
        prior_points : float, default=0
            How many points the adopted mixture stands for beyond the retained ones (a site
            map loaded from a batch fit): the online updates then give each new batch the
            share ``m / (n_hist + prior_points + m)``, so the prior fades as the stream
            outgrows it. A refit on the retained points (``prior_points=0``) replaces it.
        """
        self.set_params(params, stats)
        self.prior_points = float(prior_points)
        if relocation:
            self.n_relocations += 1
            self.seen_at_relocation = self.n_seen
        self.relocation_due = False

    def _reseed_dead(self, X: np.ndarray, params: MixtureParams) -> int:
        """Move components whose weight fell below the floor onto badly explained points."""
        floor = self.s_floor
        weights = self.stats.counts / self.stats.total
        dead = np.flatnonzero(weights < floor)
        if len(dead) == 0:
            return 0
        candidates = X
        if len(candidates) < len(dead):
            # A batch smaller than the number of dead components (down to one point): take
            # the other candidates from the retained sample, so that every dead component is
            # re-seeded (zip() below would otherwise skip some yet count them).
            extra = self.retained.sample(len(dead) - len(candidates), self.rng)
            candidates = np.vstack([candidates, extra])
        log_norm, _ = estimate_log_prob_resp(candidates, params)
        worst = np.argsort(log_norm, kind="stable")[: len(dead)]
        dead = dead[: len(worst)]  # fewer only while nothing is retained yet
        counts = self.stats.counts.copy()
        means = self.stats.means.copy()
        scatter = self.stats.scatter.copy()
        alive = np.setdiff1d(np.arange(len(counts)), dead)
        # New components start with the average shape of the living ones.
        shape = np.average(scatter[alive], axis=0, weights=counts[alive]) if len(alive) else (
            scatter.mean(axis=0))
        for k, row in zip(dead, worst):
            means[k] = candidates[row]
            scatter[k] = shape
            counts[k] = 2.0 * floor * self.stats.total
        self.stats = SufficientStats(self.stats.covariance_type, counts, means, scatter)
        self.average = None
        self.n_averaged = 0
        self.n_reseeded += len(dead)
        return len(dead)

    @property
    def s_floor(self) -> float:
        return self.settings.weight_floor

    def _refresh_params(self) -> None:
        s = self.settings
        current = self.stats
        if s.averaging:
            # Polyak-Ruppert averaging of the statistics (Cappe & Moulines 2009, sec. 2.3).
            self.n_averaged += 1
            if self.average is None or self.n_averaged == 1:
                self.average = current
            else:
                keep = (self.n_averaged - 1) / self.n_averaged
                self.average = self.average.scale(keep).merge(
                    current.scale(1.0 / self.n_averaged))
            current = self.average
        self.params, repaired = robust_m_step(current, s.reg_covar)
        if repaired:
            # Rounding left a scatter indefinite: keep the projected one and count it.
            self.stats = self.stats.repaired(s.reg_covar)
            self.n_repaired += 1

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict:
        """Everything needed to resume bit for bit: statistics, counters, sample, RNG."""
        return {
            "settings": asdict(self.settings),
            "n_features": self.n_features,
            "stats": None if self.stats is None else self.stats.to_state(),
            # The parameters are saved as they are, not recomputed from the statistics on
            # restore: after an initialisation, a relocation or ``fit`` they are the EM
            # result, one M-step away from ``stats.to_params``, and a resumed model must
            # score its next batch with exactly the same parameters.
            "params": None if self.params is None else {
                "weights": self.params.weights.copy(),
                "means": self.params.means.copy(),
                "covariances": self.params.covariances.copy(),
                "precisions_cholesky": self.params.precisions_cholesky.copy(),
                "covariance_type": self.params.covariance_type,
            },
            "average": None if self.average is None else self.average.to_state(),
            "n_updates": self.n_updates,
            "n_averaged": self.n_averaged,
            "n_seen": self.n_seen,
            "n_reseeded": self.n_reseeded,
            "n_relocations": self.n_relocations,
            "n_repaired": self.n_repaired,
            "surprise": self.surprise,
            "seen_at_relocation": self.seen_at_relocation,
            "work": self.work,
            "move_work": self.move_work,
            "n_moves": self.n_moves,
            "n_move_trials": self.n_move_trials,
            "n_change_points": self.n_change_points,
            "last_change_point": self.last_change_point,
            "seen_at_move_trial": self.seen_at_move_trial,
            "prior_points": self.prior_points,
            "retained": self.retained.to_state(),
            "blocks": None if self.blocks is None else [
                {"rows": b.rows.copy(), "stats": b.stats.to_state(),
                 "log_likelihood": b.log_likelihood} for b in self.blocks],
            "block_cursor": self.block_cursor,
            "refresh_credit": self.refresh_credit,
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_state(cls, state: Mapping) -> OnlineEM:
        """Rebuild an :class:`OnlineEM` saved by :meth:`to_state`."""
        settings = OnlineSettings(**state["settings"])
        obj = cls(settings, int(state["n_features"]))
        obj.rng.bit_generator.state = state["rng"]
        obj.retained = Retained.from_state(state["retained"])
        for key in ("n_updates", "n_averaged", "n_seen", "n_reseeded", "n_relocations",
                    "seen_at_relocation"):
            setattr(obj, key, int(state[key]))
        # Counters added later default to zero for older states.
        for key in ("n_repaired", "work", "move_work", "n_moves", "n_move_trials",
                    "n_change_points"):
            setattr(obj, key, int(state.get(key, 0)))
        obj.surprise = float(state["surprise"])
        obj.last_change_point = int(state.get("last_change_point", -1))
        obj.seen_at_move_trial = int(state.get("seen_at_move_trial", 0))
        obj.prior_points = float(state.get("prior_points", 0.0))
        if obj.blocks is not None and state.get("blocks") is not None:
            obj.blocks = [WindowBlock(np.array(b["rows"], dtype=np.float64),
                                      SufficientStats.from_state(b["stats"]),
                                      float(b["log_likelihood"])) for b in state["blocks"]]
            obj.block_cursor = int(state.get("block_cursor", 0))
            obj.refresh_credit = float(state.get("refresh_credit", 0.0))
        if state["stats"] is not None:
            obj.stats = SufficientStats.from_state(state["stats"])
            if state["average"] is not None:
                obj.average = SufficientStats.from_state(state["average"])
            saved = state.get("params")
            if saved is not None:
                obj.params = MixtureParams(
                    np.array(saved["weights"], dtype=np.float64),
                    np.array(saved["means"], dtype=np.float64),
                    np.array(saved["covariances"], dtype=np.float64),
                    np.array(saved["precisions_cholesky"], dtype=np.float64),
                    str(saved["covariance_type"]),
                )
            else:  # states written before the parameters were saved
                source = (obj.average if settings.averaging and obj.average is not None
                          else obj.stats)
                obj.params = robust_m_step(source, settings.reg_covar)[0]
            if obj.blocks is not None and state.get("blocks") is None and len(obj.retained):
                # A window saved before it kept blocks: its retained points open the window,
                # scored under the saved parameters (as start() does).
                rows = obj.retained.points.copy()
                obj.blocks = [WindowBlock(rows, batch_statistics(rows, obj.params).stats, 0.0)]
                obj.stats = SufficientStats.pool([b.stats for b in obj.blocks]).normalized()
        return obj


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
