"""Step-size schedule, its validation, and the stepwise statistics update."""

import numpy as np
import pytest

from streamgmm.core.stepwise import check_schedule, step_size, stepwise_update
from streamgmm.core.suffstats import SufficientStats


@pytest.mark.parametrize(
    "t, decay, offset, expected",
    [
        (1, 0.6, 2.0, 3.0**-0.6),
        (10, 0.6, 2.0, 12.0**-0.6),
        (1, 1.0, 0.0, 1.0),
        (4, 1.0, 0.0, 0.25),
        (100, 0.75, 10.0, 110.0**-0.75),
        (0, 0.6, 0.0, 1.0),  # (0 + 0) ** -alpha is infinite: capped at 1
        (0, 0.6, 0.5, 1.0),  # 0.5 ** -0.6 > 1: capped at 1
    ],
)
def test_step_size_values(t, decay, offset, expected):
    assert step_size(t, decay, offset) == pytest.approx(expected, rel=1e-15)


def test_step_size_defaults_and_constant():
    assert step_size(1) == pytest.approx(3.0**-0.6)
    assert step_size(5, constant=0.05) == 0.05
    assert step_size(10**6, decay=0.9, offset=1.0, constant=1.0) == 1.0


def test_step_sizes_decrease_and_satisfy_robbins_monro_shape():
    t = np.arange(1, 10_000)
    steps = np.array([step_size(int(i), 0.6, 2.0) for i in t])
    assert np.all(np.diff(steps) < 0)
    assert np.all((steps > 0) & (steps <= 1))
    # sum of steps grows without bound, sum of squares converges (alpha in (0.5, 1]).
    assert steps.sum() > 50 and (steps**2).sum() < 20


@pytest.mark.parametrize(
    "decay, offset, constant, message",
    [
        (0.5, 2.0, None, "step_decay"),
        (0.4, 2.0, None, "step_decay"),
        (1.01, 2.0, None, "step_decay"),
        (0.6, -1.0, None, "step_offset"),
        (0.6, 2.0, 0.0, "step_constant"),
        (0.6, 2.0, -0.1, "step_constant"),
        (0.6, 2.0, 1.5, "step_constant"),
    ],
)
def test_check_schedule_rejects(decay, offset, constant, message):
    with pytest.raises(ValueError, match=message):
        check_schedule(decay, offset, constant)


@pytest.mark.parametrize("decay, offset, constant", [(1.0, 0.0, None), (0.51, 0.0, None),
                                                     (0.6, 2.0, None), (0.4, -5.0, 1.0),
                                                     (0.6, 2.0, 1e-4)])
def test_check_schedule_accepts(decay, offset, constant):
    check_schedule(decay, offset, constant)  # a constant step ignores decay and offset


def test_stepwise_with_one_over_t_is_the_running_average():
    """alpha = 1, t0 = 0 weighs every equal-size batch equally: the union's statistics."""
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1.0 + i, (50, 2)) for i in range(6)]
    resps = [rng.dirichlet(np.ones(3), size=50) for _ in batches]
    stats = [SufficientStats.from_responsibilities(X, R, "full") for X, R in zip(batches, resps)]
    running = stats[0]
    for t, s in enumerate(stats[1:], start=2):
        running = stepwise_update(running, s, step_size(t, decay=1.0, offset=0.0))
    union = SufficientStats.from_responsibilities(np.vstack(batches), np.vstack(resps), "full")
    np.testing.assert_allclose(running.counts, union.normalized().counts, rtol=1e-12)
    np.testing.assert_allclose(running.means, union.means, rtol=1e-12)
    np.testing.assert_allclose(running.scatter, union.scatter, rtol=1e-11)


def test_stepwise_update_is_normalised_interpolation():
    rng = np.random.default_rng(1)
    a = SufficientStats.from_responsibilities(
        rng.normal(size=(30, 2)), rng.dirichlet(np.ones(2), 30), "diag")
    b = SufficientStats.from_responsibilities(
        rng.normal(3, 1, size=(500, 2)), rng.dirichlet(np.ones(2), 500), "diag")
    got = stepwise_update(a, b, 0.2)
    # Batch size does not matter, only the step: b's share of the total weight is 0.2.
    assert got.total == pytest.approx(1.0)
    np.testing.assert_allclose(got.counts, 0.8 * a.counts / a.total + 0.2 * b.counts / b.total)
