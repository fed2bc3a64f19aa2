"""Thinning under overload: the daemon degrades the model, it does not drop messages.

Each loop turn reads the queued messages (at most 1,024, or 30 ms of reading) into each
model's backlog, and the model absorbs its backlog in steps for about 20 ms per turn (so
control requests keep being answered within a few tens of milliseconds). Left alone, a
daemon that cannot fold points in as fast as they come lets its backlog grow to
``max_backlog_points``, then ZeroMQ's queue fill, and the high-water mark then drops whole
messages at the sensor's side (counted as ``messages_lost``), after the model has fallen
many seconds behind. With a budget, a turn's messages enter the backlog thinned when the
backlog would take longer than the model's budget to absorb::

    room = budget / seconds_per_point - waiting     (rows the budget still takes)
    keep = 1                         if incoming <= room   (the daemon keeps up)
         = max(room, 0) / incoming   otherwise

``incoming`` are the rows of the turn's accepted messages for the model, ``waiting`` the rows
already in its backlog, ``seconds_per_point`` the measured cost of the model's recent online
steps (a moving average of seconds over absorbed rows, :class:`PointCost`) and ``budget``
the model's ``overload_budget_s`` (default 1 s; ``0``: never thin). Under sustained overload
each turn thus admits about what the previous turns absorbed: ``keep`` settles at the ratio
of what the model absorbs to what arrives. Every message of the turn is then cut to a
uniform random subset of ``ceil(keep * n)`` of its ``n`` rows (at least one), drawn by a
generator the model owns (seeded from its ``seed``), and the subset is absorbed as standing
for all ``n`` points (:meth:`streamgmm.core.online.OnlineEM.update`'s ``represented``):
``n_seen`` and the step schedule count every point received, the statistics are those of a
uniform sample of them. The backlog thus holds about ``budget`` of work at most: under
sustained overload the model lags the stream by about that much, and no message is dropped
as long as the loop reads them as fast as they come (1,024 per turn at most: a flood of more
messages than that still overflows ZeroMQ's queue, counted in ``messages_lost``).

It never thins a model that keeps up: a backlog that takes at most ``budget`` to absorb
keeps every row, and so does a model with no measured cost yet (no parameters, or no online
step since the start), so a burst of up to ``budget`` of work passes whole. The default of
one second lets through a burst of a few hundred thousand points (a replay at full speed);
a smaller budget bounds the lag more tightly and thins sooner.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_BUDGET_S", "PointCost", "keep_fraction", "thin"]

#: Default ``overload_budget_s``: 0, thinning off. A recording replayed at full speed is a
#: burst the daemon absorbs late but whole, and its model must be that of the batches alone
#: (with 1 s, bench_order's full-speed daemon thinned its first steps, whose cost per point
#: is highest, and ended 0.02-0.19 nats/point from partial_fit). A live sensor that must not
#: lag sets a budget, e.g. 1 s.
DEFAULT_BUDGET_S = 0.0
# Weight of the newest step in the moving averages: the estimate follows a change of load
# (a refit starting on the other core) within a few steps, and one slow step (a page fault,
# a preemption) moves it by a quarter only.
_SMOOTHING = 0.25


def keep_fraction(incoming_points: int, waiting_points: int, seconds_per_point: float,
                  budget_s: float) -> float:
    """Share of each arriving message's rows to keep (the rule of the module docstring).

    Parameters
    ----------
    incoming_points : int
        Rows of the turn's accepted messages for the model.
    waiting_points : int
        Rows already in the model's backlog (admitted in earlier turns, not yet absorbed).
    seconds_per_point : float
        Measured seconds per absorbed row of the model's recent steps; NaN when unknown.
    budget_s : float
        The model's ``overload_budget_s``; ``0`` never thins.

    Returns
    -------
    float
        ``1.0`` when the backlog, the incoming rows included, takes at most ``budget_s``
        (or the cost is unknown); else the share of the incoming rows that fills the
        budget's room, ``(budget_s / seconds_per_point - waiting_points) / incoming_points``,
        in [0, 1) (``0``: the budget is full; :func:`thin` still keeps a row per message).
    """
    if budget_s <= 0 or incoming_points <= 0 or not seconds_per_point > 0:
        return 1.0  # off, nothing to do, or no measured cost (NaN fails the test)
    if not math.isfinite(seconds_per_point):
        return 1.0
    room = budget_s / seconds_per_point - waiting_points  # rows the budget still takes
    if incoming_points <= room:
        return 1.0
    return max(0.0, room) / incoming_points


def thin(X: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """A uniform random subset of ``ceil(keep * len(X))`` rows of ``X`` (at least one).

    The rows keep their order (a sensor's scan order within the message).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    keep : float
        Share of the rows to keep, in (0, 1]; ``1`` returns ``X`` itself and draws nothing.
    rng : numpy.random.Generator
        The model's thinning generator.

    Returns
    -------
    ndarray of shape (k, d)
    """
    n = len(X)
    k = min(n, max(1, math.ceil(keep * n)))
    if k >= n:
        return X
    return X[np.sort(rng.choice(n, size=k, replace=False))]


class PointCost:
    """Measured seconds per absorbed row of a model's online steps.

    A ratio of moving averages (seconds over rows, each step weighing ``_SMOOTHING``), so
    that large steps weigh by their rows and a step's fixed cost is shared by them.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.points = 0.0

    def observe(self, seconds: float, points: int) -> None:
        """Count one step of ``points`` rows that took ``seconds``."""
        if points <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        if self.points == 0.0:
            self.seconds, self.points = float(seconds), float(points)
            return
        self.seconds += _SMOOTHING * (seconds - self.seconds)
        self.points += _SMOOTHING * (points - self.points)

    @property
    def seconds_per_step(self) -> float:
        """The moving average of a step's seconds; NaN until a step was observed."""
        return self.seconds if self.points > 0 else float("nan")

    @property
    def seconds_per_point(self) -> float:
        """NaN until a step was observed."""
        return self.seconds / self.points if self.points > 0 else float("nan")
