"""The rule that folds a model's messages into online steps reads the messages alone."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.daemon.steps import StepGrouper, group_steps


def sizes(grouper: StepGrouper, messages) -> list[int]:
    """Steps closed, in messages, for ``(rows, stamp[, thinned])`` tuples, then the end."""
    closed: list[int] = []
    for rows, stamp, *thinned in messages:
        closed += grouper.add(rows, stamp, thinned=bool(thinned and thinned[0]))
    return closed + grouper.close()


def test_a_step_spans_at_most_the_seconds_of_sensor_time() -> None:
    stamps = [0.0, 0.03, 0.06, 0.1, 0.12, 0.2]
    assert sizes(StepGrouper(4096, 0.1), [(10, t) for t in stamps]) == [3, 2, 1]


def test_a_step_closes_with_the_message_that_reaches_the_row_limit() -> None:
    grouper = StepGrouper(100, 1.0)
    assert grouper.add(60, 0.0) == [] and grouper.add(40, 0.0) == [2]
    assert grouper.add(150, 0.0) == [1]  # larger than the limit: a step of its own
    assert grouper.add(10, 0.0) == [] and grouper.open_rows == 10
    assert grouper.close() == [1] and grouper.close() == []


def test_a_stamp_before_the_step_starts_the_next_one() -> None:
    assert sizes(StepGrouper(4096, 0.1), [(5, 1.0), (5, 1.05), (5, 0.5), (5, 0.52)]) == [2, 2]


def test_per_message_models_step_every_message_but_group_thinned_ones() -> None:
    grouper = StepGrouper(100, 0.0)
    assert sizes(grouper, [(5, 0.0), (5, 0.0)]) == [1, 1]
    # Thinned messages join the open step whatever their stamps, up to the row limit.
    messages = [(40, 0.0, True), (40, 9.0, True), (40, 3.0, True), (5, 3.0), (7, 3.0, True)]
    assert sizes(grouper, messages) == [3, 1, 1]


def test_group_steps_gives_the_batches_of_the_steps() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(n, 2)) for n in (30, 30, 50, 10, 5)]
    steps = group_steps(batches, [0.0, 0.0, 0.0, 0.5, 0.51], limit=100, seconds=0.1)
    assert [len(s) for s in steps] == [110, 15]
    np.testing.assert_array_equal(np.concatenate(steps), np.concatenate(batches))
    with pytest.raises(ValueError):
        group_steps(batches, [0.0], limit=100)


def test_the_clock_closes_a_step_no_sooner_than_the_stamps_would() -> None:
    from streamgmm.daemon.steps import IDLE_CLOSE_S, idle_close_s

    assert idle_close_s(0.0) == idle_close_s(0.1) == IDLE_CLOSE_S
    assert idle_close_s(5.0) == 10.0
