"""Reservoir and Window: uniformity, recency, bounded memory and exact state round trips."""

import numpy as np
import pytest
from scipy.stats import chisquare

from streamgmm.core.retain import Reservoir, Retained, Window, make_retained


def _stream(n):
    """Rows that name their position in the stream."""
    return np.arange(n, dtype=np.float64)[:, None] * [1.0, -1.0]


@pytest.mark.parametrize("batch", [1, 7, 50, 1000])
def test_reservoir_is_uniform_over_the_stream(batch):
    """Every stream position ends in the sample with probability capacity / n."""
    n, capacity, trials = 200, 20, 3000 if batch > 1 else 600
    rng = np.random.default_rng(12345)
    X = _stream(n)
    hits = np.zeros(n)
    for _ in range(trials):
        r = Reservoir(capacity, 2)
        for start in range(0, n, batch):
            r.add(X[start : start + batch], rng)
        assert len(r) == capacity and r.n_offered == n
        kept = r.points[:, 0].astype(int)
        assert len(np.unique(kept)) == capacity  # no row twice
        hits[kept] += 1
    expected = np.full(n, trials * capacity / n)
    # Pearson chi-square over the n positions; a biased scheme (e.g. favouring the start
    # or the end of each batch) fails this by orders of magnitude at this sample size.
    assert chisquare(hits, expected).pvalue > 1e-3
    # No trend along the stream: first and last quarters are kept equally often.
    assert abs(hits[: n // 4].sum() / hits[-n // 4 :].sum() - 1.0) < 0.1


def test_reservoir_keeps_everything_until_full_then_stays_bounded():
    rng = np.random.default_rng(0)
    r = Reservoir(10, 2)
    r.add(_stream(4), rng)
    np.testing.assert_array_equal(r.points, _stream(4))
    assert r.represented == 4
    r.add(_stream(1000), rng)
    assert len(r) == 10 and r.n_offered == 1004 and r.represented == 1004
    assert r._rows.shape == (10, 2)  # memory set by the capacity only


@pytest.mark.parametrize("batches", [[1] * 30, [3, 4, 5, 6, 7], [2, 25], [10, 10, 10], [40]])
def test_window_keeps_exactly_the_latest_rows(batches):
    w = Window(10, 2)
    X = _stream(sum(batches))
    start = 0
    for m in batches:
        w.add(X[start : start + m])
        start += m
        latest = X[max(0, start - 10) : start]
        assert len(w) == len(latest) == w.represented
        # The ring buffer's order is not the stream's: compare as sets of rows.
        np.testing.assert_array_equal(np.sort(w.points[:, 0]), latest[:, 0])
    assert w.n_offered == start


def test_sample_draws_only_retained_rows():
    rng = np.random.default_rng(1)
    w = Window(5, 2)
    assert w.sample(3, rng).shape == (0, 2)
    w.add(_stream(12))
    s = w.sample(200, rng)
    assert s.shape == (200, 2)
    assert set(s[:, 0]) == {7.0, 8.0, 9.0, 10.0, 11.0}


@pytest.mark.parametrize("kind", ["reservoir", "window"])
def test_state_round_trip_then_identical_future(kind):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 3))
    a = make_retained(kind, 64, 3)
    a.add(X[:300], rng)
    state = a.to_state()
    b = Retained.from_state(state)
    assert type(b) is type(a)
    np.testing.assert_array_equal(b.points, a.points)
    assert b.n_offered == a.n_offered and b.capacity == a.capacity
    rng_a = np.random.default_rng(9)
    rng_b = np.random.default_rng(9)
    for start in range(300, 500, 37):
        a.add(X[start : start + 37], rng_a)
        b.add(X[start : start + 37], rng_b)
        np.testing.assert_array_equal(b.points, a.points)
    # The state holds a copy.
    state["rows"][0, 0] = 99.0
    assert a.points[0, 0] != 99.0 or X[0, 0] == 99.0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        Reservoir(0, 2)
    with pytest.raises(ValueError, match="retain must be one of"):
        make_retained("fifo", 3, 2)
    state = Window(2, 1).to_state()
    state["rows"] = np.zeros((3, 1))
    with pytest.raises(ValueError, match="exceed the capacity"):
        Retained.from_state(state)
