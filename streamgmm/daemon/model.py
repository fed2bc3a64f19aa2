"""One model's runtime: absorb batches, schedule refits, build the published payloads.

Step three of socket -> codec -> accounting -> **model** -> publisher. A
:class:`ModelRuntime` owns one ``[[model]]``'s estimator and everything the daemon tracks
about it (sequence numbers, pending publishes, the running refit, checkpoint state);
:func:`refit_job` is the batch EM a refit runs on the worker thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from streamgmm import codec
from streamgmm.core.params import MixtureParams
from streamgmm.core.refit import RefitResult, refit
from streamgmm.daemon.config import ConfigError, ModelConfig
from streamgmm.daemon.overload import PointCost
from streamgmm.daemon.steps import StepGrouper
from streamgmm.daemon.transport import ControlRequest
from streamgmm.estimator import GaussianMixture

log = logging.getLogger("streamgmm")

__all__ = ["MODEL_STATUS", "ModelRuntime", "RefitResult", "StatusKey", "refit_job"]

# Consecutive messages are folded into one online step of at most about this many points
# (streamgmm.daemon.steps): a message of this size or more is a step of its own, exactly as
# partial_fit on it (8,192-point steps ended 0.10-0.11 nats/point further from batch EM than
# 4,096-point partial_fit on ordered streams; benchmarks/README.md).
MAX_COALESCED_POINTS = 4096
# Version 2: the online state of incremental EM (retained blocks); version 1 is refused.
_CHECKPOINT_FORMAT = 2
# Second word of the thinning generator's seed [seed, _THIN_STREAM]: a stream of its own, so
# the estimator's draws (reservoir, moves) are the same whether or not the daemon thins.
_THIN_STREAM = 0x7468696E


# --------------------------------------------------------------------------- refits


# A requested or periodic refit runs EM to convergence over every retained point.
REFIT_MAX_ITER = 100


def refit_job(
    X: np.ndarray, current: MixtureParams, reg_covar: float, seed: int,
    max_iter: int = REFIT_MAX_ITER,
) -> tuple[RefitResult, float]:
    """:func:`streamgmm.core.online.refit` on the worker thread; returns it and its seconds.

    Pure numpy on the caller's copy of the points.
    """
    started = time.perf_counter()
    result = refit(X, current, reg_covar=reg_covar, rng=np.random.default_rng(seed),
                   max_iter=max_iter)
    return result, time.perf_counter() - started


# --------------------------------------------------------------------------- one model


class ModelRuntime:
    """One ``[[model]]``: its estimator plus everything the daemon tracks about it."""

    def __init__(self, config: ModelConfig, index: int = 0) -> None:
        self.config = config
        self.index = index  # in the config's [[model]] array: errors name model[index].key
        self.topic = config.topic.encode()
        self.update_topic = codec.update_topic(config.name)
        self.estimator = self._new_estimator()
        self.seq = 0  # of the last published update
        self.seq_lease = 0  # highest seq a checkpoint has reserved
        self.last_stamp = float("nan")
        self.changed = False  # absorbed points not yet published
        self.dirty = False  # state not yet checkpointed
        self.ll_sum = 0.0
        self.ll_points = 0
        # avg_log_likelihood of the last update that had one: what a snapshot carries when
        # no point arrived since that update (docs/protocol.md, "avg_log_likelihood").
        self.last_avg_log_likelihood = float("nan")
        self.last_publish = 0.0
        self.next_refit = math.inf
        self.next_checkpoint = math.inf
        self.refit_future: Future | None = None
        self.refit_waiters: list[Waiter] = []  # control requests answered when it ends
        # Requests that came while a refit ran: answered by a refit started after it, so
        # that the reply covers the points retained when they asked.
        self.queued_waiters: list[Waiter] = []
        self.refits = 0
        self.refit_failures = 0
        self.last_refit_seconds = float("nan")
        self.loads = 0  # load requests adopted
        self.last_change_log = -math.inf  # monotonic time of the last change-point log line
        self.change_points_unlogged = 0
        self.loaded_weight = float("nan")  # prior weight (points) of the last one
        self.checkpoints = 0
        self.checkpoint_failures = 0
        self.last_checkpoint_seconds = float("nan")
        # Thinning under overload (streamgmm.daemon.overload): the model owns the generator
        # that picks the subsets, so the model is a function of the batches, the seed and
        # the thinning decisions (the generator's state is checkpointed).
        self.thin_rng = np.random.default_rng([config.seed, _THIN_STREAM])
        self.cost = PointCost()  # measured seconds per absorbed point of online steps
        self.points_thinned = 0  # rows of accepted messages skipped by thinning
        # Accepted messages not yet absorbed: (rows kept, points received, stamp, frame).
        self.backlog: deque[tuple[np.ndarray, int, float, str]] = deque()
        self.backlog_rows = 0  # rows kept in the backlog
        # How the backlog's messages form steps, decided by the messages alone
        # (streamgmm.daemon.steps): the closed steps' sizes in messages, from the backlog's
        # head; the messages after them are the step still open.
        # Points coalesced into one online step at most. A window forgets block by block:
        # a step of more than a sixteenth of it would make the model jump, not follow, so
        # a window's steps stay that small however fast the points arrive.
        # A step also closes at max_backlog_points: reading pauses there, and a step waiting
        # for more rows would wait for ever.
        step_limit = min(config.max_backlog_points, (
            MAX_COALESCED_POINTS if config.retain != "window"
            else max(1, min(MAX_COALESCED_POINTS, config.window_points // 16))))
        self.steps = StepGrouper(step_limit, config.publish_every_s)
        self.step_sizes: deque[int] = deque()
        self.last_admitted = time.monotonic()  # when a message last entered the backlog

    def close_step(self) -> None:
        """Close the open step (its messages become a step to absorb), if one is open."""
        self.step_sizes.extend(self.steps.close())

    def _new_estimator(self) -> GaussianMixture:
        c = self.config
        return GaussianMixture(
            n_components=c.components,
            covariance_type=c.covariance_type,
            reg_covar=c.reg_covar,
            random_state=c.seed,
            step_decay=c.step_decay,
            step_offset=c.step_offset,
            step_constant=c.step_constant,  # None: the decaying step (0 in the TOML file)
            retain=c.retain,
            retain_size=c.window_points,
            effort=c.effort,
            moves=c.moves,
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def fitted(self) -> bool:
        """Has the model parameters (it can publish, answer snapshots, refit)?"""
        return hasattr(self.estimator, "means_")

    @property
    def can_thin(self) -> bool:
        """Can the thinning rule apply: a budget, parameters and a measured step cost?

        Before its parameters a model absorbs everything (its first points seed it).
        """
        return (self.config.overload_budget_s > 0 and self.fitted
                and math.isfinite(self.cost.seconds_per_point))

    @property
    def n_seen(self) -> int:
        return int(getattr(self.estimator, "n_seen_", 0))

    def absorb(self, X: np.ndarray, stamp: float, represented: int | None = None) -> None:
        """Fold a batch into the model (one stepwise EM move).

        ``represented``: the points ``X`` stands for when it was thinned (default
        ``len(X)``). The step's seconds per absorbed row feed :attr:`cost` once the model
        has parameters (the first batch EM is no online step).
        """
        before = getattr(self.estimator, "n_change_points_", 0)
        fitted = self.fitted
        started = time.perf_counter()
        self.estimator.partial_fit(X, represented=represented)
        if fitted:
            self.cost.observe(time.perf_counter() - started, len(X))
        if self.estimator.n_change_points_ > before:
            self._log_change_point()
        ll = self.estimator.last_avg_log_likelihood_
        if math.isfinite(ll):
            self.ll_sum += ll * len(X)
            self.ll_points += len(X)
        if not math.isfinite(self.last_stamp) or stamp > self.last_stamp:
            self.last_stamp = stamp
        self.changed = self.dirty = True

    def _log_change_point(self) -> None:
        """One log line per change point, at most one a second (the rest are counted)."""
        now = time.monotonic()
        if now - self.last_change_log < 1.0:
            self.change_points_unlogged += 1
            return
        more = (f" ({self.change_points_unlogged} more since the last line)"
                if self.change_points_unlogged else "")
        log.info("model=%s change point at n_seen=%d%s", self.name,
                 self.estimator.online_.last_change_point, more)
        self.last_change_log, self.change_points_unlogged = now, 0

    def load(self, fields: dict) -> None:
        """Adopt a mixture fitted elsewhere (a ``load`` request) as the model's parameters.

        The mixture becomes the prior the online updates continue from: it stands for
        ``fields["weight"]`` points, by default the points the model has seen (at least 1).
        The retained points are kept (re-scored under it).

        Raises
        ------
        LookupError
            If the dimension, the number of components or the covariance type differ from
            the model's, or a covariance is not positive definite.
        """
        c = self.config
        w, mu, cov = fields["weights"], fields["means"], fields["covariances"]
        found = (mu.shape[1], len(w), fields["covariance_type"])
        if found != (c.dim, c.components, c.covariance_type):
            raise LookupError(
                f"load refused: model {self.name!r} has dim {c.dim}, {c.components} components, "
                f"covariance {c.covariance_type}; the mixture has dim {found[0]}, {found[1]} "
                f"components, covariance {found[2]}"
            )
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, atol=1e-6):
            raise LookupError(f"load refused: weights must be >= 0 and sum to 1, got sum "
                              f"{w.sum():.6g}")
        try:
            params = MixtureParams.from_covariances(w / w.sum(), mu, cov, c.covariance_type)
        except ValueError as exc:
            raise LookupError(f"load refused: {exc}") from None
        weight = fields["weight"]
        if weight is None:
            weight = float(max(self.n_seen, 1))
        self.estimator.adopt(params, prior_points=weight)
        self.loaded_weight = weight
        self.loads += 1
        self.changed = self.dirty = True

    def status(self) -> dict:
        """This model's entry of the ``status`` reply (keys: :data:`MODEL_STATUS`)."""
        return {key: entry.read(self) for key, entry in MODEL_STATUS.items()}

    def update_payload(self, kind: str, seq: int, **extra: object) -> bytes:
        """The section-2 payload of the current parameters (``extra``: protocol extensions)."""
        avg = self.ll_sum / self.ll_points if self.ll_points else float("nan")
        if kind != "snapshot" and math.isfinite(avg):
            self.last_avg_log_likelihood = avg
        return codec.encode_update(seq=seq, stamp=time.time(), **self.payload_fields(kind),
                                   **extra)

    def payload_fields(self, kind: str) -> dict:
        """The fields of :meth:`update_payload` but ``seq``, ``stamp`` and the extensions,
        as they are now (copies: a snapshot answered while a step changes the model on the
        step thread is built from those taken before it)."""
        gm = self.estimator
        avg = self.ll_sum / self.ll_points if self.ll_points else float("nan")
        if kind == "snapshot" and not self.ll_points:
            avg = self.last_avg_log_likelihood
        return {
            "model": self.name,
            "n_seen": self.n_seen,
            "kind": kind,
            "covariance_type": self.config.covariance_type,
            "weights": np.array(gm.weights_),
            "means": np.array(gm.means_),
            "covariances": np.array(gm.covariances_),
            "avg_log_likelihood": avg,
            "last_stamp": self.last_stamp,
            "n_reseeded": int(gm.n_reseeded_),
            "n_moves": int(getattr(gm, "n_moves_", 0)),
            "n_change_points": int(getattr(gm, "n_change_points_", 0)),
        }

    # ------------------------------------------------------------ checkpoint state

    def state(self, seq_lease: int) -> dict:
        return {
            "format": _CHECKPOINT_FORMAT,
            "model": self.name,
            "dim": self.config.dim,
            "components": self.config.components,
            "covariance_type": self.config.covariance_type,
            "seq": self.seq,
            "seq_lease": seq_lease,
            "last_stamp": self.last_stamp,
            "last_avg_log_likelihood": self.last_avg_log_likelihood,
            "estimator": self.estimator.get_state() if self.has_points else None,
            # An addition to format 2 (absent from older checkpoints: the seed's start).
            "thin_rng": self.thin_rng.bit_generator.state,
        }

    @property
    def has_points(self) -> bool:
        """Has the estimator seen any point (it may still be buffering its first ones)?"""
        return hasattr(self.estimator, "n_seen_")

    def restore(self, state: dict) -> None:
        c = self.config
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ConfigError(
                f"model[{self.index}].checkpoint",
                f"model {self.name!r}: checkpoint {c.checkpoint!r} holds model state format "
                f"{state.get('format')!r}, written by an earlier streamgmm (this one reads "
                f"{_CHECKPOINT_FORMAT}); move the file away to start fresh",
            )
        found = (state.get("dim"), state.get("components"), state.get("covariance_type"))
        if found != (c.dim, c.components, c.covariance_type):
            raise ConfigError(
                f"model[{self.index}].checkpoint",
                f"model {self.name!r}: checkpoint {c.checkpoint!r} holds a model with "
                f"dim/components/covariance_type {found}, the config says "
                f"{(c.dim, c.components, c.covariance_type)}; move the file away or fix "
                "the config",
            )
        if state.get("estimator") is not None:
            self.estimator = GaussianMixture.from_state(state["estimator"])
        # Continue above every seq that may have been published before the restart.
        self.seq = int(max(state.get("seq", 0), state.get("seq_lease", 0)))
        self.last_stamp = float(state.get("last_stamp", float("nan")))
        # Absent from checkpoints of earlier versions: NaN until the next update.
        self.last_avg_log_likelihood = float(state.get("last_avg_log_likelihood", float("nan")))
        if isinstance(state.get("thin_rng"), dict):
            self.thin_rng.bit_generator.state = state["thin_rng"]


@dataclass(frozen=True)
class Waiter:
    """A control request waiting for the running refit, with the ``id`` to echo."""

    request: ControlRequest
    rid: object


@dataclass(frozen=True)
class StatusKey:
    """One key of a model's ``status`` entry.

    Attributes
    ----------
    read : callable
        ``read(model) -> value``.
    metric : {"counter", "gauge"} or None
        How ``/metrics`` exports it (``None``: status only).
    help : str
        The metric's help text.
    """

    read: Callable[[ModelRuntime], object]
    metric: str | None = None
    help: str = ""


def _estimator_count(name: str) -> Callable[[ModelRuntime], int]:
    return lambda m: int(getattr(m.estimator, name, 0))


#: The per-model keys of the ``status`` reply (docs/protocol.md), in reply order; the
#: Prometheus metrics are made from the same table (streamgmm.daemon.metrics).
MODEL_STATUS: dict[str, StatusKey] = {
    "n_seen": StatusKey(lambda m: m.n_seen, "counter",
                        "Points absorbed by the model since it was created."),
    "seq": StatusKey(lambda m: m.seq, "counter",
                     "Sequence number of the model's last published update."),
    "topic": StatusKey(lambda m: m.config.topic),
    "dim": StatusKey(lambda m: m.config.dim),
    "components": StatusKey(lambda m: m.config.components),
    "covariance_type": StatusKey(lambda m: m.config.covariance_type),
    "fitted": StatusKey(lambda m: m.fitted),
    "last_stamp": StatusKey(lambda m: m.last_stamp),
    "n_reseeded": StatusKey(_estimator_count("n_reseeded_"), "counter",
                            "Components re-seeded after losing their weight."),
    "n_moves": StatusKey(_estimator_count("n_moves_"), "counter",
                         "Birth-merge moves accepted: components born on badly explained "
                         "points, paid for by merging the most redundant ones."),
    "work": StatusKey(_estimator_count("work_"), "counter",
                      "E-step point-evaluations the online model spent (new points, "
                      "re-scoring and moves; set per point by the model's effort)."),
    "n_change_points": StatusKey(_estimator_count("n_change_points_"), "counter",
                                 "Change points: the stream left what the model describes."),
    "n_repaired": StatusKey(_estimator_count("n_repaired_"), "counter",
                            "M-steps whose covariances were repaired (degenerate data)."),
    "refits": StatusKey(lambda m: m.refits, "counter", "Batch EM refits adopted."),
    "refit_failures": StatusKey(lambda m: m.refit_failures, "counter",
                                "Batch EM refits that failed."),
    "refit_running": StatusKey(lambda m: m.refit_future is not None),
    "last_refit_s": StatusKey(lambda m: m.last_refit_seconds, "gauge",
                              "Duration of the last refit in seconds."),
    "loads": StatusKey(lambda m: m.loads, "counter",
                       "Mixtures loaded by a control request (op load)."),
    "checkpoints": StatusKey(lambda m: m.checkpoints, "counter", "Checkpoints written."),
    "checkpoint_failures": StatusKey(lambda m: m.checkpoint_failures, "counter",
                                     "Checkpoint writes that failed."),
    "last_checkpoint_s": StatusKey(lambda m: m.last_checkpoint_seconds, "gauge",
                                   "Duration of the last checkpoint write in seconds."),
    "axes": StatusKey(lambda m: list(m.config.axes)),
    "min_range": StatusKey(lambda m: m.config.min_range),
    "max_range": StatusKey(lambda m: m.config.max_range),
    "rows_below_min_range": StatusKey(
        lambda m: getattr(getattr(m, "ingest", None), "rows_below_min_range", 0), "counter",
        "Rows dropped before the model because they were nearer than its min_range."),
    "rows_beyond_max_range": StatusKey(
        lambda m: getattr(getattr(m, "ingest", None), "rows_beyond_max_range", 0), "counter",
        "Rows dropped before the model because they were farther than its max_range."),
    "points_thinned": StatusKey(
        lambda m: m.points_thinned, "counter",
        "Rows of accepted messages skipped by thinning under overload (counted in "
        "points_applied; the absorbed rest stood for them)."),
    "seconds_per_point": StatusKey(
        lambda m: m.cost.seconds_per_point, "gauge",
        "Measured seconds per absorbed point of the recent online steps (the thinning "
        "rule's cost; NaN before the first)."),
    "backlog_points": StatusKey(
        lambda m: getattr(m, "backlog_rows", 0), "gauge",
        "Rows of accepted messages waiting to be absorbed (after thinning), those of a "
        "step still open included."),
    "retained_points": StatusKey(
        lambda m: len(m.estimator.online_.retained) if m.has_points else 0, "gauge",
        "Points retained for refits."),
}
