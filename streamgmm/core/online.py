"""Online EM for streams that arrive in sensor order, not shuffled.

Textbook stepwise EM assumes every batch is a fresh i.i.d. sample of one distribution. A
LiDAR or a moving robot delivers region after region instead: components drift to the
newest region and forget the old ones, or one component stretches over every new region
while the others stay where the stream began. On such streams textbook stepwise EM ends
1-5 nats per point below batch EM. :class:`OnlineEM` keeps stepwise EM's cost per batch and
adds three things, each cheap and bounded in memory:

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
2. **Relocation.** The gap between how well the model explains the history (replay
   log-likelihood) and the newest batch is accumulated in a CUSUM. When the stream keeps
   arriving where the model has no components, the sum passes its threshold and a short
   batch EM on the retained sample is run twice, from the current parameters and from a
   fresh k-means++ seeding, keeping the better. Relocations are spaced geometrically in
   stream length, so their total cost grows only with the logarithm of the stream. The
   history is in-sample for the model and the new batch is not, so even on i.i.d. data the
   history fits better by about ``n_parameters / n_hist`` nats per point (AIC's optimism);
   the CUSUM's allowance includes that term so small i.i.d. streams do not trigger
   relocations on this bias alone.
3. **Re-seeding.** A component whose weight falls below ``min_weight`` is moved onto a
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
from streamgmm.core.stepwise import check_schedule, step_size
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
    relocate_max_iter: int = 30
    # Relocation fits a uniform subsample of at most this many retained points: its cost,
    # and the pause it puts into the stream, stays bounded whatever retain_size is.
    relocate_max_points: int = 20_000
    min_weight: float | None = None
    tol: float = 1e-3

    def check(self) -> None:
        check_schedule(self.step_decay, self.step_offset, self.step_constant)
        if self.retain_size < self.n_components:
            raise ValueError(
                f"retain_size must be >= n_components ({self.n_components}), "
                f"got {self.retain_size}"
            )
        if not 0.0 < self.replay_fraction <= 4.0:
            raise ValueError(f"replay_fraction must be in (0, 4], got {self.replay_fraction}")
        if self.replay_min < 0:
            raise ValueError(f"replay_min must be >= 0, got {self.replay_min}")
        if self.relocate not in (True, False, "defer"):
            raise ValueError(f"relocate must be True, False or 'defer', got {self.relocate!r}")
        if self.relocate_growth < 1.0:
            raise ValueError(f"relocate_growth must be >= 1, got {self.relocate_growth}")

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


def _random_state(rng: np.random.Generator) -> np.random.RandomState:
    return np.random.RandomState(int(rng.integers(0, 2**31 - 1)))


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

    def _fit_sample(self, X: np.ndarray, start: MixtureParams | None) -> tuple:
        """Batch EM on ``X`` from ``start`` (or a k-means++ seeding); returns (result, stats)."""
        s = self.settings
        if start is None:
            resp = initial_responsibilities(X, s.n_components, "k-means++", _random_state(self.rng))
            start, repaired = robust_m_step(
                SufficientStats.from_responsibilities(X, resp, s.covariance_type), s.reg_covar
            )
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
        self.set_params(result.params, stats)
        self.n_seen = self.retained.n_offered
        self.seen_at_relocation = self.n_seen
        self.n_updates = 1

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
        if s.replay and len(self.retained) and n_hist:
            n_replay = max(s.replay_min, int(np.ceil(s.replay_fraction * m)))
            replay = batch_statistics(
                self.retained.sample(n_replay, self.rng), params, scorer=scorer
            )
            history_ll = replay.mean_log_likelihood
            # The history's statistics move towards their re-scored replay estimate by the
            # step, at most by the share of the history the replay stands for; the new batch
            # then joins with its share m / (n_hist + m) (see the module docstring).
            # ``new.stats`` carries the batch's m points as its counts.
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

        relocated = False
        if s.relocate and np.isfinite(history_ll):
            gap = history_ll - new.mean_log_likelihood
            # One-sided CUSUM with an allowance so that i.i.d. noise drifts it back to zero;
            # the allowance includes the history's in-sample optimism (module docstring).
            n_fit = max(self.retained.represented, 1)  # points the model is fitted to
            allowance = s.relocate_threshold + params.n_parameters() / n_fit
            self.surprise = max(0.0, self.surprise + m * (gap - allowance))
            due = self.n_seen >= s.relocate_growth * self.seen_at_relocation
            if due and self.surprise > s.relocate_threshold * self.n_seen:
                if s.relocate == "defer":
                    # The owner (the daemon) runs the refit off its ingest loop.
                    self.relocation_due = True
                else:
                    self.relocate()
                    relocated = True
        return UpdateInfo(new.mean_log_likelihood, step, reseeded, relocated)

    def _relocation_sample(self) -> np.ndarray:
        X = self.retained.points
        cap = self.settings.relocate_max_points
        if len(X) <= cap:
            return X.copy()
        return X[np.sort(self.rng.choice(len(X), size=cap, replace=False))]

    def relocate(self) -> None:
        """Batch EM on the retained sample, from the current model and from a fresh seeding."""
        X = self._relocation_sample()
        warm, warm_stats = self._fit_sample(X, self.params)
        fresh, fresh_stats = self._fit_sample(X, None)
        if warm.lower_bound >= fresh.lower_bound:
            params, stats = warm.params, warm_stats
        else:
            # A fresh seeding numbers its components by chance: keep each one's number where
            # it continues a current component (users track components, or gave means_init).
            params, stats = align_components(self.params, fresh.params, fresh_stats)
        self.adopt(params, stats, relocation=True)

    def adopt(self, params: MixtureParams, stats: SufficientStats, relocation: bool) -> None:
        """Take parameters fitted elsewhere (a relocation or a refit) as the current model."""
        self.set_params(params, stats)
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
            "retained": self.retained.to_state(),
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
        obj.n_repaired = int(state.get("n_repaired", 0))
        obj.surprise = float(state["surprise"])
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
