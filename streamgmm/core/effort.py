"""The effort schedule: how much work each new point buys, and how the work is shared.

Step 3 of :class:`~streamgmm.core.online.OnlineEM`'s update. Each new point pays ``e`` E-step
point-evaluations into a credit::

    e = effort * (1 + W / n_r) * (1 + min(9, novelty / 0.5))

- ``W = 20,000`` points and ``n_r`` the points the retained blocks stand for: early points
  buy more (a model cannot match batch EM after a few thousand points with a couple of
  evaluations each, where batch EM spends 30-100).
- ``novelty`` (:func:`batch_novelty`): the nats per point by which the new batch fits worse
  than the retained blocks did when last scored. It is high where the stream moved to where
  the model has no components (a new room, the next sector of a sweep) and near zero on a
  stream that stays where the model is, so i.i.d. streams pay the base effort.

With the moves on, ``MOVE_SHARE`` of the credit pays for moves, and so does what more than
``MAX_PASSES`` passes over the retained points in one step could not use
(:func:`share_credit`). The total work on a stream of ``N`` points is thus the ``N``
evaluations of the new batches plus at most ``effort * (N + W ln(N / n_0)) * 10``. Pure
functions of numbers: no state.
"""

from __future__ import annotations

import math

WARM_POINTS = 20_000  # W: the first W points buy twice the effort and more
NOVELTY_NATS = 0.5  # novelty that doubles the effort
# The novelty factor is at most 1 + NOVELTY_CAP. Measured (seeds 0-9, benchmarks/README.md,
# sixth session): a cap of 4 left rooms streams 0.19-0.20 nats/point from batch EM at worst,
# a cap of 9 0.06-0.10, for 20-65% more work on sensor-ordered streams (none on i.i.d.).
NOVELTY_CAP = 9.0
MOVE_SHARE = 0.75  # of the credit goes to moves, with the moves on
MAX_PASSES = 4  # re-scoring passes over the retained points in one update at most
CHANGE_NATS = 1.0  # novelty that marks a change point (counted, not acted on)


def effort_per_point(effort: float, represented: float, novelty: float) -> float:
    """Re-scoring and move evaluations bought by each new point (the formula above).

    Parameters
    ----------
    effort : float
        The ``effort`` setting; 0 buys nothing (textbook stepwise EM).
    represented : float
        ``n_r``, the stream points the retained blocks stand for.
    novelty : float
        Of the new batch (:func:`batch_novelty`); negative counts as 0.
    """
    if effort <= 0:
        return 0.0
    warm = 1.0 + WARM_POINTS / max(represented, 1.0)
    surprise = 1.0 + min(NOVELTY_CAP, max(0.0, novelty) / NOVELTY_NATS)
    return effort * warm * surprise


def batch_novelty(history_log_likelihood: float, batch_log_likelihood: float,
                  n_parameters: int, history_points: float) -> float:
    """How much worse (nats/point) a new batch fits than the retained history did.

    The history's mean log-likelihood, as its blocks were last scored, is in-sample: it is
    optimistic by about ``n_parameters / history_points`` (the AIC's penalty per point), which
    is taken off so that a batch drawn from where the model is scores about 0. Not finite
    (an empty history) counts as 0.
    """
    novelty = (history_log_likelihood - batch_log_likelihood
               - n_parameters / max(history_points, 1.0))
    return float(novelty) if math.isfinite(novelty) else 0.0


def share_credit(bought: float, moves: bool, rescore_credit: float, move_credit: float,
                 rows_scored: int) -> tuple[float, float]:
    """Pay ``bought`` evaluations into the two credits; returns ``(rescore, move)`` credits.

    With the moves on, ``MOVE_SHARE`` of it goes to moves. Re-scoring credit beyond
    ``MAX_PASSES`` passes over the ``rows_scored`` retained rows would be waste: with the
    moves on it pays for moves (a short stream gets them early), otherwise it lapses.
    """
    share = MOVE_SHARE if moves else 0.0
    move_credit += share * bought
    rescore_credit += (1 - share) * bought
    cap = float(MAX_PASSES * rows_scored)
    if rescore_credit > cap:
        if moves:
            move_credit += rescore_credit - cap
        rescore_credit = cap
    return rescore_credit, move_credit
