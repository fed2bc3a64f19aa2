"""Online EM at a fixed effort per point: incremental (memoized) EM over retained blocks.

Textbook stepwise EM assumes shuffled data. A LiDAR or a moving robot delivers region after
region: components chase the newest region and forget the old ones, and the model ends
1-5 nats per point below batch EM. :class:`OnlineEM` keeps, instead of one running sum, the
statistics of every retained block of the stream (:mod:`streamgmm.core.blocks`) and
re-scores the stalest of them at every step (Neal & Hinton 1998). One update of a batch
``X`` of ``m`` points, with ``n`` points seen so far:

1. **E-step of the batch** under the current parameters ``theta``::

       s_new = (1/m) sum_i r_i(theta) T(x_i)       T(x) = (1, x, x x')

2. **Weights from the step schedule** (``tau = n / m``, the step counted in batches of this
   size, so that coalescing two batches into one step changes nothing)::

       eta = (tau + t0) ** -alpha       (or a constant step)
       w_b <- (1 - eta) w_b  for every retained block b,    w_new = eta

   The default ``alpha = 1, t0 = 0`` gives ``eta = m / n``: every point weighs the same, as
   in batch EM. ``alpha < 1`` or a constant step forgets (textbook stepwise EM's
   ``(t + 2) ** -0.6`` is ``step_decay=0.6, step_offset=2``). A uniform subset that stands
   for a larger batch (``update(X, represented=...)``, the daemon's thinning under overload)
   counts as the batch it stands for: ``m`` is then ``represented``, in ``n`` too.

3. **Re-scoring at a fixed effort.** Each new point pays ``e`` E-step evaluations into a
   credit (:mod:`streamgmm.core.effort`: more for early points and where the stream moved
   where the model has no components); the stalest blocks are re-scored under ``theta``
   while the credit lasts, each on the same share of its rows, at most ``SCORED_ROWS =
   8,192`` rows in all (:meth:`~streamgmm.core.blocks.RetainedBlocks.scored_rows`)::

       e = effort * (1 + W / n_r) * (1 + min(9, novelty / 0.5))

4. **M-step of the memoized sum**::

       S = sum_b w_b s_b / sum_b w_b,      theta = M(S)

5. **Birth and merge moves** (:mod:`streamgmm.core.moves`), one at a time whenever their
   share of the credit pays for one: the cheapest pair is merged, the freed component is
   born on the worst-explained retained points (or inside the component that gains most
   from a split), the move is settled by a few EM iterations on a retained sample, and it
   is kept only if an independent sample fits it better than the model without it, settled
   the same way (the lower confidence bound of :func:`~streamgmm.core.scoring.paired_gain`).
   A kept move is adopted as judged: every block is re-scored under it and the model is the
   M-step of those statistics (:meth:`OnlineEM.adopt`). Candidates (EM run ahead on retained
   samples, from the model or from a fresh k-means start) are judged the same way. A step
   runs at most ``MAX_MOVES_PER_STEP`` rounds, and move credit beyond what they cost lapses
   (a whole sweep in one message buys more than its rounds spend).

6. **Re-seeding**: a component whose weight falls below ``1e-3 / K`` is moved onto the
   worst-explained point of the batch (with the moves on).

The total work on a stream of ``N`` points is thus the ``N`` evaluations of the new batches
plus at most ``effort * (N + W ln(N / n_0)) * 10`` (the novelty factor is at most 10 and is 1
on a stream that stays where the model is), and the model is a function of the batches and
the seed alone. ``effort=0, moves=False`` is textbook stepwise EM. The class is pure state:
no I/O, a seeded ``numpy`` Generator, :meth:`to_state` / :meth:`from_state` exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamgmm.core.blocks import Block, RetainedBlocks
from streamgmm.core.constraints import validate_online_settings
from streamgmm.core.effort import CHANGE_NATS, batch_novelty, effort_per_point, share_credit
from streamgmm.core.em import batch_statistics, robust_m_step, run_em, segment_statistics
from streamgmm.core.online_state import check_format, dump_state, restore_state
from streamgmm.core.parallel import ChunkPool
from streamgmm.core.params import MixtureParams
from streamgmm.core.refit import seed_params
from streamgmm.core.schedule import MoveSchedule
from streamgmm.core.stepwise import step_size
from streamgmm.core.suffstats import SufficientStats

M_STEPS_PER_PASS = 8  # M-steps per pass of re-scoring (8 left the window closer than 4)
INIT_POINTS = 4096  # the first batch EM runs on at most this many buffered points
INIT_ITER = 15


@dataclass(frozen=True)
class OnlineSettings:
    """Hyper-parameters of :class:`OnlineEM` (see the estimator for their documentation)."""

    n_components: int
    covariance_type: str = "full"
    reg_covar: float = 1e-6
    retain: str = "reservoir"
    retain_size: int = 20_000
    effort: float = 1.0
    moves: bool = True
    step_decay: float = 1.0
    step_offset: float = 0.0
    step_constant: float | None = None

    def check(self) -> None:
        validate_online_settings(self)  # the rules: streamgmm.core.constraints

    @property
    def weight_floor(self) -> float:
        return 1e-3 / self.n_components


@dataclass(frozen=True)
class UpdateInfo:
    """What one :meth:`OnlineEM.update` did."""

    avg_log_likelihood: float  # of the new points under the model before the update
    step: float
    evaluations: int  # E-step point-evaluations spent by this update
    reseeded: int = 0
    moved: bool = False  # a move was accepted
    change_point: bool = False


class OnlineEM(MoveSchedule):
    """Incremental EM state of one mixture: retained blocks, parameters, credits, counters.

    Parameters
    ----------
    settings : OnlineSettings
    n_features : int
    seed : int or numpy.random.Generator
        Seeds the reservoir's thinning, the moves' samples and the first k-means++ seeding.
    """

    def __init__(self, settings: OnlineSettings, n_features: int,
                 seed: int | np.random.Generator = 0) -> None:
        settings.check()
        self.settings = settings
        self.n_features = int(n_features)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.retained = RetainedBlocks(settings.retain, settings.retain_size, self.n_features)
        self.params: MixtureParams | None = None
        self.stats: SufficientStats | None = None  # normalised memoized sum
        self.buffered: list[np.ndarray] = []  # the first points, until n_components arrived
        self.n_updates = 0
        self.clock = 0  # scoring clock: every scoring of a block gets the next value
        self.n_seen = 0
        self.rescore_credit = 0.0
        self.move_credit = 0.0
        self.work = 0  # E-step point-evaluations spent, all of them
        self.n_reseeded = 0
        self.n_moves = 0
        self.n_move_trials = 0
        self.n_repaired = 0
        self.n_change_points = 0
        self.last_change_point = -1  # n_seen at the last one
        self.novelty = 0.0  # of the last batch
        self.prior_points = 0.0  # a loaded prior's points (not in n_seen)
        self.n_births = 1  # components the next move moves
        self.n_restarts = 0
        self.n_restart_trials = 0
        # The candidate being fitted (refine or restart): params, n_iter, target iterations.
        self.candidate: dict | None = None
        # Optional ``points -> MixtureParams`` used instead of k-means++ to start the first
        # batch EM (the estimator sets it when some ``*_init`` are given); not saved.
        self.initializer = None
        # Optional threads for the E-steps (streamgmm.parallel); the owner sets it around
        # its calls. It changes the speed, never the result; not saved.
        self.pool: ChunkPool | None = None

    @property
    def initialized(self) -> bool:
        return self.params is not None

    # ------------------------------------------------------------------ starting

    def start(self, params: MixtureParams, fitted_on: np.ndarray | None = None,
              prior_points: float = 0.0, n_seen: int | None = None) -> None:
        """Start the stream from ``params``: the one way an :class:`OnlineEM` gets going.

        Parameters
        ----------
        params : MixtureParams
            From ``*_init``, a ``load``, a batch EM or the first points' EM.
        fitted_on : ndarray of shape (n, d), optional
            Points ``params`` were fitted on (``fit``, the first buffered points): they become
            the first retained blocks and count in ``n_seen``.
        prior_points : float, default=0
            Points the mixture stands for beyond ``fitted_on`` (a site map): it stays in the
            model as a block without rows of that many points, fading as the stream outgrows
            it. Without ``fitted_on`` it is at least one point, so the parameters are used.
        n_seen : int, optional
            Points the model has absorbed, if not ``len(fitted_on)`` (a batch EM on a cluster
            whose sample is ``fitted_on``).
        """
        self.params = params
        if fitted_on is not None and len(fitted_on):
            # About 16 blocks (fewer for few points), each scored on all of its points.
            size = max(1, self.settings.retain_size // 16)
            n_parts = min(16, -(-len(fitted_on) // size))
            for part in np.array_split(fitted_on, n_parts):
                self.n_seen += len(part)
                self._append(part, batch_statistics(part, params), len(part) / self.n_seen)
            self.work += len(fitted_on)
        if prior_points > 0 or not self.retained.blocks:
            # Parameters without data count as one point: the first batch moves them by
            # half, not all the way (a component it does not reach keeps its place).
            prior_points = max(prior_points, 1.0)
            self._add_prior(params, prior_points)
        self._m_step()
        if fitted_on is not None:
            self.params = params  # the EM result itself, one M-step away from the sum
        fitted = 0 if fitted_on is None else len(fitted_on)
        # Points the step schedule counts beyond n_seen: a prior's, unless n_seen has them.
        self.prior_points = float(prior_points)
        if n_seen is not None:
            self.prior_points = max(0.0, fitted + prior_points - n_seen)
            self.n_seen = int(n_seen)

    def _add_prior(self, params: MixtureParams, points: float) -> None:
        represented = self.retained.represented
        total = sum(b.weight for b in self.retained.blocks)
        weight = total * points / represented if represented > 0 and total > 0 else 1.0
        self.retained.add_virtual(SufficientStats.from_params(params), weight, points,
                                  None, self.clock)

    def _initialize(self) -> None:
        """Batch EM on the buffered first points (at most INIT_POINTS of them)."""
        X = np.vstack(self.buffered)
        self.buffered = []
        sample = X if len(X) <= INIT_POINTS else X[np.sort(
            self.rng.choice(len(X), size=INIT_POINTS, replace=False))]
        s = self.settings
        if self.initializer is not None:  # from the given *_init, completed as fit would
            start, repaired = self.initializer(sample), False
            self.initializer = None
        else:
            start, repaired = seed_params(sample, s.n_components, s.covariance_type,
                                          s.reg_covar, self.rng)
        first = run_em(sample, start, reg_covar=s.reg_covar, max_iter=INIT_ITER, robust=True)
        params, work = first.params, len(sample) * first.n_iter
        repaired += first.n_repaired
        self.n_repaired += int(repaired)
        self.work += work
        self.start(params, fitted_on=X)

    # ------------------------------------------------------------------ the update

    def update(self, X: np.ndarray, represented: float | None = None) -> UpdateInfo:
        """Absorb a batch ``X`` of shape (m, d), m >= 1 (module docstring, steps 1-6).

        Parameters
        ----------
        X : ndarray of shape (m, d)
            The batch.
        represented : float, optional
            Stream points the batch stands for, at least ``m`` (default ``m``): a uniform
            subset of a larger batch (the daemon thins under overload) stands for all of it.
            It is what the update counts as points: ``n_seen`` grows by it (rounded to an
            integer), the step is that of a batch of this many points, and the new block
            stands for this many. The effort stays per absorbed row (the ``m`` rows are the
            work done). Before the model is initialised the batch is buffered as it is and
            ``represented`` is not used.

        Returns
        -------
        UpdateInfo
        """
        s = self.settings
        m = X.shape[0]
        if represented is None:
            counted = m  # the default path: bit for bit the update of an unthinned batch
        elif not represented >= m:  # also refuses NaN
            raise ValueError(f"represented must be >= the batch's {m} rows, got {represented}")
        else:
            counted = float(represented)
        if not self.initialized:
            # Too few points to seed every component: keep them until there are enough.
            self.buffered.append(np.array(X, dtype=np.float64))
            if sum(len(b) for b in self.buffered) >= s.n_components:
                before = self.work
                self._initialize()
                return UpdateInfo(float("nan"), 1.0, self.work - before)
            return UpdateInfo(float("nan"), 0.0, 0)

        # 1. E-step of the batch; the history's fit as last scored, for the novelty.
        new = batch_statistics(X, self.params, pool=self.pool)
        novelty = batch_novelty(self.retained.history_log_likelihood(),
                                new.mean_log_likelihood, self.params.n_parameters(),
                                self.retained.represented)
        change_point = novelty > CHANGE_NATS >= self.novelty
        self.novelty = novelty
        self.n_updates += 1
        self.n_seen += round(counted)
        # 2. Weights from the step schedule, counted in the points the batch stands for: a
        # thinned batch of all of its points' share takes the step of the whole batch.
        step = step_size((self.n_seen + self.prior_points) / counted, s.step_decay,
                         s.step_offset, s.step_constant)
        self._append(X, new, step, counted)
        self._m_step()  # the new points' statistics enter the model at once
        # 3. Re-scoring at a fixed effort.
        bought = m * effort_per_point(s.effort, self.retained.represented, novelty)
        self.rescore_credit, self.move_credit = share_credit(
            bought, s.moves, self.rescore_credit, self.move_credit, self.retained.total_scored)
        # 4. ... with the M-step of the memoized sum after every eighth of a pass.
        evaluations = m + self._rescore()
        # 5. Moves, paid from their credit.
        moved = False
        if s.moves and self._movable():
            moved, spent = self._moves()
            evaluations += spent
        # 6. Re-seeding.
        reseeded = 0
        if s.moves:
            reseeded, spent = self._reseed_dead(X)
            evaluations += spent
            # What this step's rounds could not spend lapses (MoveSchedule._credit_cap).
            self.move_credit = min(self.move_credit, self._credit_cap())
        self.work += evaluations
        if change_point:
            self.n_change_points += 1
            self.last_change_point = self.n_seen
        return UpdateInfo(new.mean_log_likelihood, step, evaluations, reseeded, moved,
                          change_point)

    def _tick(self) -> int:
        """The next value of the scoring clock (orders every scoring of a block)."""
        self.clock += 1
        return self.clock

    def _score(self, blocks: list[Block], params: MixtureParams) -> None:
        """Replace each block's statistics by those of its scored rows under ``params``.

        All the blocks are scored in one pass (:func:`segment_statistics`), its row chunks
        on the pool's threads if there is one; each block's statistics are the same either
        way. The caller has set each block's ``scored_at``.
        """
        share = self.retained.scored_share
        rows = [self.retained.scored_rows(block, share) for block in blocks]
        fresh = segment_statistics(rows, params, pool=self.pool)
        for block, result in zip(blocks, fresh):
            block.stats = result.stats.normalized()
            block.log_likelihood = result.mean_log_likelihood

    def _append(self, X: np.ndarray, new, step: float, points: float | None = None) -> None:
        """Step 2: decay every weight by ``1 - step``, add the batch as a block of ``step``
        that stands for ``points`` stream points (default: its rows)."""
        self.retained.decay(1.0 - step)
        points = float(len(X)) if points is None else float(points)
        self.retained.add(Block(X, new.stats.normalized(), step, points,
                                new.mean_log_likelihood, self._tick()), self.rng)

    def _rescore(self) -> int:
        """Steps 3-4: re-score blocks while the credit lasts, newest-scored-once first, then
        the stalest, with an M-step after every eighth of a pass (incremental EM: each M-step
        uses the freshest statistics). Returns the rows re-scored."""
        spent = since = 0
        # The rows retained do not change while blocks are re-scored: nor does the share.
        share = self.retained.scored_share
        rhythm = max(1, self.retained.total_scored // M_STEPS_PER_PASS)
        group: list[Block] = []  # chosen for scoring under the current parameters
        # The blocks' rows do not change here: the order repeats (rescore_order).
        for block in itertools.cycle(self.retained.rescore_order()):
            cost = self.retained.n_scored(block, share)
            if self.rescore_credit < cost:
                break
            group.append(block)
            block.scored_at = self._tick()
            block.times_scored += 1
            self.rescore_credit -= cost
            spent += cost
            since += cost
            if since >= rhythm:
                self._score(group, self.params)
                group = []
                self.retained.drop_expired()
                self._m_step()
                since = 0
        if since:
            self._score(group, self.params)
            self.retained.drop_expired()
            self._m_step()
        return spent

    def _m_step(self) -> None:
        self.stats = self.retained.pooled()
        self.params, repaired = robust_m_step(self.stats, self.settings.reg_covar)
        self.n_repaired += int(repaired)

    # ------------------------------------------------------------------ refits, loads

    def adopt(self, params: MixtureParams, prior_points: float = 0.0,
              m_step: bool = False) -> int:
        """Take parameters fitted elsewhere as the model; returns the evaluations spent.

        Every retained block is re-scored under ``params`` (the memoized sum must describe
        them, or the next M-step would undo them) and blocks without rows are dropped.

        Parameters
        ----------
        params : MixtureParams
            A refit on the retained points, or a mixture fitted elsewhere (a ``load``).
        prior_points : float, default=0
            How many points a mixture fitted elsewhere stands for beyond the retained ones (a
            site map): it stays as a block without rows, fading as the stream outgrows it.
        m_step : bool, default=False
            End with the M-step of the re-scored statistics instead of ``params`` as they
            are: for a move or candidate fitted on a sample of about a thousand rows, whose
            own parameters carry that sample's noise until the next update (measured: a
            stream of whole LiDAR sweeps, one step each, ended 0.14-0.16 nats/point behind
            where the M-step's model ends 0.01).
        """
        self.retained.blocks = [b for b in self.retained.blocks if len(b)]
        for block in self.retained.blocks:
            block.scored_at = self._tick()
        spent = self.retained.total_scored
        self._score(self.retained.blocks, params)
        self.work += spent
        if prior_points > 0 or not self.retained.blocks:
            prior_points = max(prior_points, 1.0)
            self._add_prior(params, prior_points)
        self.prior_points = float(prior_points)
        self._m_step()
        if not m_step:
            self.params = params  # the model until the next update, as adopted
        return spent

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict:
        """Everything needed to resume bit for bit (:mod:`streamgmm.core.online_state`)."""
        return dump_state(self)

    @classmethod
    def from_state(cls, state: Mapping) -> OnlineEM:
        """Rebuild an :class:`OnlineEM` saved by :meth:`to_state`.

        Raises
        ------
        ValueError
            For a state of another format (written by an earlier streamgmm).
        """
        check_format(state)
        obj = cls(OnlineSettings(**state["settings"]), int(state["n_features"]))
        restore_state(obj, state)
        return obj
