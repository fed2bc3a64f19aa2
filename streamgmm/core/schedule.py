"""Moves at a fixed cost: births, splits and candidates, paid from the online model's credit.

Step 5 of :class:`~streamgmm.core.online.OnlineEM`'s update (and the re-seeding of step 6).
The online model pays a share of every point's effort into a move credit; this mixin spends
it, never more than it holds (but for a finished candidate's judgement and adoption, which
may overdraw it once: nothing else is spent until that is repaid), so the work per point
stays what the settings say:

- **birth trials** (:func:`~streamgmm.core.moves.propose_move`): merge the cheapest pairs
  (judged exactly on a retained sample) and give birth on the worst-explained points or inside
  the component that gains most from a split (``BIRTH_CYCLE`` alternates the two), settle
  the result by ``MOVE_ITER`` EM iterations on a sample, and keep it only if an independent
  sample fits it better than the model without the move, settled on the same sample by the
  same iterations (a fair match: both carry that sample's noise; the gain counted is the
  lower confidence bound of :func:`~streamgmm.core.scoring.paired_gain`). A kept move is
  adopted as judged: every block is re-scored under it (:meth:`OnlineEM.adopt`), so no
  point counts twice, and the model is the M-step of those statistics. After an accepted
  one the next moves twice as many components (up to ``MAX_BIRTHS``).
- **the candidate**: EM run ahead on fresh retained samples, ``RESTART_STEP_ITER`` iterations
  at a time (the candidate follows the stream while it is fitted), judged like a birth
  (against the model after one EM iteration on a sample of the candidate's size) and
  adopted if better. ``CANDIDATE_CYCLE`` alternates a *refine*, started from the model itself
  and judged after ``REFINE_ITER`` (the escape from a plateau that the memoized EM, one pass
  at a time, climbs too slowly while the stream moves on), and a *restart*, a fresh k-means
  start judged after ``RESTART_ITER`` (the escape from a poor start that births, a few
  components at a time, cannot make).

Births are paid first while the stream arrives where the model has no components (its
novelty is high); otherwise the candidate is. Both use samples of a fixed fraction of the
rows the online EM scores, so that a short stream affords as many moves per point as a long
one.
"""

from __future__ import annotations

import numpy as np

from streamgmm.core import moves
from streamgmm.core.em import run_em
from streamgmm.core.moves import empty, one_component, propose_move
from streamgmm.core.refit import align_components, seed_params
from streamgmm.core.scoring import log_likelihoods, paired_gain
from streamgmm.core.suffstats import SufficientStats

MOVE_POINTS = 2048  # rows of each of the two samples a move is fitted and judged on
MOVE_ITER = 3  # EM iterations that settle a newborn
MOVE_GAIN = 0.002  # nats/point a move must gain on the independent sample
MAX_BIRTHS = 4  # components one move may move at once
BIRTH_CYCLE = ("birth", "split")  # where the births of successive trials look (() = none)
RESTARTS = True  # restart candidates (off only to measure what they earn)
RESEED = True  # re-seeding of components below the weight floor (likewise)
RESTART_POINTS = 2048  # rows of each sample a restart candidate is fitted on
SAMPLE_FRACTION = 8
SMALL_RETAINED = 2048  # below this many retained points, moves use all of them
MIN_SAMPLE = 256
RESTART_ITER = 30  # EM iterations of a restart candidate before it is judged
# Candidates alternate between a fresh k-means start ("restart") and the model itself
# ("refine"): EM run ahead on fresh samples, the escape from a plateau where the memoized
# EM, one pass at a time, climbs too slowly behind a stream that keeps moving.
CANDIDATE_CYCLE = ("refine", "restart")
REFINE_ITER = 12  # EM iterations of a refine candidate before it is judged
RESTART_STEP_ITER = 6  # ... at most this many at a time
MAX_MOVES_PER_STEP = 16  # rounds of moves in one update at most
# Birth trials run one after the other, on the model's generator. Measured (2026-12-07): two
# trials side by side on two threads ran slower than one after the other (0.74x: numpy calls
# on 2,048-point samples hold the GIL most of the time), and trials drawing from generators of
# their own left the LiDAR benchmark 0.2 nats/point worse at 3/4 for two seeds of five.
# The novelty (nats/point) above which births are paid before the restart candidate.
NOVELTY_FOR_BIRTHS = 0.5


class MoveSchedule:
    """The moves of :class:`~streamgmm.core.online.OnlineEM` (a mixin: it uses the model's
    ``retained``, ``params``, ``stats``, ``rng``, ``settings``, ``_m_step`` and ``adopt``)."""

    def _sample(self, n: int) -> np.ndarray:
        """``n`` retained rows drawn with replacement; all of them when there are few.

        With few retained points, two samples would share most rows and a move judged on
        the second would be judged on the points it was fitted to: then both the fit and
        the judgement use every point, in sample, as the model itself does.
        """
        if len(self.retained) <= SMALL_RETAINED:
            return self.retained.points
        return self.retained.sample(n, self.rng)

    def _move_points(self) -> int:
        if len(self.retained) <= SMALL_RETAINED:
            return len(self.retained)
        # A move's samples are a fraction of the rows the online EM scores, so that a
        # short stream affords as many moves per point as a long one.
        return min(MOVE_POINTS, max(MIN_SAMPLE, self.retained.total_scored // SAMPLE_FRACTION))

    def _restart_points(self) -> int:
        if len(self.retained) <= SMALL_RETAINED:
            return len(self.retained)
        return min(RESTART_POINTS,
                   max(MIN_SAMPLE, self.retained.total_scored // SAMPLE_FRACTION))

    def _move_cost(self) -> float:
        # A trial's sample scored, the move and the model without it settled by MOVE_ITER
        # iterations each, and the judging sample scored under both (an accepted move's
        # adoption, a pass over the scored rows, may overdraw the credit once).
        n = self._move_points()
        return float(n * (2 * MOVE_ITER + 1) + 2 * n)

    def _credit_cap(self) -> float:
        """The most move credit a step may leave: what ``MAX_MOVES_PER_STEP`` rounds cost.

        A step of many points (a whole sweep in one message) buys more than its rounds can
        spend; the rest lapses, so that it does not pile up (measured: 340,000 evaluations
        a sweep of 131,072 points) into bursts of moves in the steps after it.
        """
        return MAX_MOVES_PER_STEP * (self._move_cost()
                                     + RESTART_STEP_ITER * self._restart_points())

    def _movable(self) -> bool:
        return len(self.retained) > 4 * self.settings.n_components

    def _moves(self) -> tuple[bool, int]:
        """Step 5: birth or split trials, then the restart candidate, as the credit pays.

        A *birth* trial merges the cheapest pairs and gives birth on misfits or inside the
        component that gains most from a split (``BIRTH_CYCLE`` alternates the two), kept
        and adopted if an independent sample fits it better than the model without it. A
        *restart* is a fresh k-means start, refined by EM iterations on fresh retained
        samples, at most ``RESTART_STEP_ITER`` at a time (the candidate follows the stream
        while it is fitted), then judged the same way: the escape from a local optimum that
        births, a few components at a time, cannot reach. Births are paid first; the
        candidate takes what they leave.
        """
        spent, moved = 0, False
        # As many as the credit pays for: a step of many points (the daemon's coalesced
        # messages) gets the moves of the smaller steps it stands for.
        for _ in range(MAX_MOVES_PER_STEP):
            # Births first while the stream arrives where the model has no components
            # (they are what keeps up there); else the restart, which gets a stream out of
            # a poor start.
            order = ((self._birth_round, self._restart_round)
                     if self.novelty > NOVELTY_FOR_BIRTHS
                     else (self._restart_round, self._birth_round))
            progressed = False
            for round_ in order:
                accepted, cost, did = round_()
                spent += cost
                moved = moved or accepted
                progressed = progressed or did
            if not progressed:
                break
        return moved, spent

    def _birth_round(self) -> tuple[bool, int, bool]:
        """One birth or split trial if the credit pays for it: (accepted, cost, tried)."""
        if not BIRTH_CYCLE or self.move_credit < self._move_cost():
            return False, 0, False
        kind = BIRTH_CYCLE[self.n_move_trials % len(BIRTH_CYCLE)]
        accepted, cost = self._try_move(split=kind == "split")
        return accepted, cost, True

    def _restart_round(self) -> tuple[bool, int, bool]:
        """Start, advance or judge the restart candidate as the credit allows."""
        spent, did, accepted = 0, False, False
        if not RESTARTS:
            return accepted, spent, did
        if self.candidate is None and self.move_credit >= self._seed_cost(self._next_candidate()):
            spent += self._start_candidate()
            did = True
        if self.candidate is not None:
            done, cost = self._advance_candidate()
            spent += cost
            did = did or cost > 0
            if done:
                accepted, cost = self._judge_candidate()
                spent += cost
        return accepted, spent, did

    def _next_candidate(self) -> str:
        if not CANDIDATE_CYCLE:
            return "restart"
        return CANDIDATE_CYCLE[self.n_restart_trials % len(CANDIDATE_CYCLE)]

    def _seed_cost(self, kind: str = "restart") -> float:
        # k-means on the sample: counted as one evaluation per row and Lloyd iteration (about
        # ten), though it is cheaper than an E-step. A refine starts from the model: free.
        return 10.0 * self._restart_points() if kind == "restart" else 0.0

    def _start_candidate(self) -> int:
        s = self.settings
        kind = self._next_candidate()
        if kind == "refine":
            self.candidate = {"params": self.params, "n_iter": 0, "target": REFINE_ITER}
            return 0
        Y = self._sample(self._restart_points())
        start, repaired = seed_params(Y, s.n_components, s.covariance_type, s.reg_covar,
                                      self.rng, "kmeans")
        self.n_repaired += int(repaired)
        self.candidate = {"params": start, "n_iter": 0, "target": RESTART_ITER}
        cost = int(self._seed_cost())
        self.move_credit -= cost
        return cost

    def _advance_candidate(self) -> tuple[bool, int]:
        """A few EM iterations of the candidate on its sample, as its credit allows."""
        c = self.candidate
        n = self._restart_points()
        spent = 0
        for _ in range(RESTART_STEP_ITER):
            if c["n_iter"] >= c["target"] or self.move_credit < n:
                break
            Y = self._sample(n)
            fit = run_em(Y, c["params"], reg_covar=self.settings.reg_covar, tol=0.0,
                         max_iter=1, robust=True)
            self.n_repaired += fit.n_repaired
            c["params"] = fit.params
            c["n_iter"] += 1
            self.move_credit -= n
            spent += n
        return c["n_iter"] >= c["target"], spent

    def _judge_candidate(self) -> tuple[bool, int]:
        """Adopt the finished candidate if an independent sample fits it better than the
        model after one EM iteration on a fresh sample of the candidate's size.

        The candidate's last M-step saw one sample of ``_restart_points`` rows; the model's
        statistics stand for every point. Judged against the model itself, a candidate paid
        for its sample's noise (about ``n_parameters / (2 n)`` nats/point, 0.08 for K=16 full
        on 1,024 rows) and was kept only when it was that much better; the model refitted
        the same way carries the same noise. Adopted, the candidate re-scores every block and
        the model is the M-step of those statistics, so it keeps none of the sample's noise.
        """
        params = self.candidate["params"]
        self.candidate = None
        n = self._restart_points()
        control = run_em(self._sample(n), self.params, reg_covar=self.settings.reg_covar,
                         tol=0.0, max_iter=1, robust=True)
        self.n_repaired += control.n_repaired
        V = self._sample(self._move_points())
        gain = paired_gain(V, params, control.params, moves.JUDGE_Z)  # the births' bound too
        spent = 2 * len(V) + n
        self.move_credit -= spent
        self.n_restart_trials += 1
        if not gain > MOVE_GAIN:
            return False, spent
        params, _ = align_components(self.params, params, SufficientStats.from_params(params))
        spent += self._adopt_move(params)
        self.n_restarts += 1
        self.n_moves += 1
        return True, spent

    def _try_move(self, split: bool = False) -> tuple[bool, int]:
        """Step 5: one birth-merge move, kept only if an independent sample fits better.

        It moves ``n_births`` components at once: one after a refused move, twice as many
        (up to ``MAX_BIRTHS``) after an accepted one, so a stream that keeps arriving where
        the model has no components gets there in few moves.
        """
        n = self._move_points()
        Y = self._sample(n)
        V = self._sample(n)
        proposal = propose_move(self.stats, self.params, Y, V, self.settings.reg_covar,
                                self.rng, MOVE_ITER, 1 if split else self.n_births,
                                split=split)
        self.move_credit -= proposal.evaluations
        self.n_move_trials += 1
        if not proposal.gain > MOVE_GAIN:
            self.n_births = 1
            return False, proposal.evaluations
        self.n_births = min(MAX_BIRTHS, 2 * self.n_births)
        self.n_repaired += proposal.n_repaired
        # Adopted as judged: every block re-scored under the settled model. (The memoized
        # sum with the pair merged and a newborn added, the model before, was not what the
        # judgement saw: on 3-D blobs an accepted split then settled one basin worse.)
        adopted = self._adopt_move(proposal.params)
        self.n_moves += 1
        return True, proposal.evaluations + adopted

    def _adopt_move(self, params) -> int:
        """Adopt an accepted move or candidate through the M-step (:meth:`OnlineEM.adopt`),
        paid from the move credit (it may overdraw it once); returns the evaluations, which
        the caller counts in its step (``adopt`` counted them in ``work`` already)."""
        adopted = self.adopt(params, m_step=True)
        self.work -= adopted
        self.move_credit -= adopted
        return adopted

    def _add_newborn(self, j: int, newborn: SufficientStats) -> None:
        """A block without rows that holds component ``j`` until every block is re-scored."""
        share = float(newborn.counts.sum())
        stats = one_component(newborn.normalized(), j, self.settings.n_components)
        total = sum(b.weight for b in self.retained.blocks)
        # It expires once every block with rows was scored after now (the clock's value).
        self.retained.add_virtual(stats, share * total, share * self.retained.represented,
                                  self.clock, self.clock)

    def _reseed_dead(self, X: np.ndarray) -> tuple[int, int]:
        """Step 6: components below the weight floor restart on the batch's worst points."""
        if not RESEED:
            return 0, 0
        weights = self.params.weights
        dead = np.flatnonzero(weights < self.settings.weight_floor)
        if len(dead) == 0:
            return 0, 0
        candidates = X
        if len(candidates) < len(dead):
            extra = self.retained.sample(len(dead) - len(candidates), self.rng)
            candidates = np.vstack([candidates, extra])
        # Their log-likelihoods only, without the (n, K) responsibilities: on a whole sweep
        # of 131,072 points as one step, 6.5 ms instead of 12.2 (measured 2026-12-08).
        worst = np.argsort(log_likelihoods(candidates, self.params), kind="stable")[: len(dead)]
        dead = dead[: len(worst)]
        alive = np.setdiff1d(np.arange(len(weights)), dead)
        scatter = self.stats.scatter
        # New components start with the average shape of the living ones.
        shape = (np.average(scatter[alive], axis=0, weights=self.stats.counts[alive])
                 if len(alive) else scatter.mean(axis=0))
        self.retained.transform(lambda st: empty(st, dead))
        for k, row in zip(dead, worst):
            one = SufficientStats(self.stats.covariance_type,
                                  np.array([2.0 * self.settings.weight_floor]),
                                  candidates[row][None, :], shape[None])
            self._add_newborn(int(k), one)
        self._m_step()
        self.n_reseeded += len(dead)
        return len(dead), len(candidates)
