import math

import pytest

from streamgmm.core import effort as effort_module
from streamgmm.core.effort import batch_novelty, effort_per_point, share_credit


def test_effort_formula():
    w = effort_module.WARM_POINTS
    assert effort_per_point(0.0, 10, 5.0) == 0.0
    assert effort_per_point(1.0, w, 0.0) == 2.0
    assert effort_per_point(0.5, w, 0.0) == 1.0
    assert effort_per_point(1.0, 1e4 * w, 0.0) == pytest.approx(1.0, rel=1e-3)
    # A batch that fits better than the history buys no less than one that fits as well.
    assert effort_per_point(1.0, w, -3.0) == 2.0
    assert effort_per_point(1.0, w, effort_module.NOVELTY_NATS) == 4.0
    # The novelty factor is capped.
    capped = effort_per_point(1.0, w, 1e9)
    assert capped == 2.0 * (1 + effort_module.NOVELTY_CAP)


def test_novelty_is_the_batch_shortfall_less_the_in_sample_optimism():
    assert batch_novelty(-2.0, -5.0, 100, 1000.0) == pytest.approx(3.0 - 0.1)
    # A batch that fits as well as the history scores the optimism below zero.
    assert batch_novelty(-2.0, -2.0, 100, 1000.0) == pytest.approx(-0.1)
    assert batch_novelty(float("nan"), -2.0, 10, 5.0) == 0.0
    assert batch_novelty(-math.inf, -2.0, 10, 5.0) == 0.0
    assert batch_novelty(-1.0, -2.0, 10, 0.0) == pytest.approx(1.0 - 10.0)  # at least 1 point


def test_credit_is_shared_and_capped_at_the_passes():
    share = effort_module.MOVE_SHARE
    rescore, move = share_credit(1000.0, True, 0.0, 0.0, rows_scored=10_000)
    assert rescore == pytest.approx((1 - share) * 1000.0)
    assert move == pytest.approx(share * 1000.0)
    rescore, move = share_credit(1000.0, False, 0.0, 0.0, rows_scored=10_000)
    assert (rescore, move) == (1000.0, 0.0)
    # Beyond MAX_PASSES passes the re-scoring credit pays for moves, or lapses without them.
    cap = effort_module.MAX_PASSES * 100
    rescore, move = share_credit(10_000.0, True, 0.0, 5.0, rows_scored=100)
    assert rescore == cap
    assert move == pytest.approx(5.0 + 10_000.0 - cap)
    rescore, move = share_credit(10_000.0, False, 0.0, 0.0, rows_scored=100)
    assert (rescore, move) == (cap, 0.0)
