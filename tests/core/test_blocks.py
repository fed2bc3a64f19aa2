"""Retained blocks (``streamgmm.core.blocks.RetainedBlocks``): the window evicts the oldest
rows with their weight, the reservoir thins to a uniform sample, neighbours merge keeping
rows and weights, newborn blocks expire, and the state round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.core import blocks as blocks_module
from streamgmm.core.blocks import MAX_BLOCKS, Block, RetainedBlocks
from streamgmm.core.suffstats import SufficientStats

D = 2


def stats_of(rows: np.ndarray) -> SufficientStats:
    return SufficientStats.from_responsibilities(rows, np.ones((len(rows), 1)), "full").normalized()


def block(rows: np.ndarray, weight: float = 1.0, scored_at: int = 0) -> Block:
    return Block(rows, stats_of(rows), weight, float(len(rows)), -1.0, scored_at)


def tagged(start: int, n: int) -> np.ndarray:
    """Rows whose first column numbers them in stream order (the second is noise)."""
    return np.column_stack([np.arange(start, start + n, dtype=float),
                            np.random.default_rng(start).normal(size=n)])


def test_unknown_kind_and_bad_capacity_are_refused() -> None:
    with pytest.raises(ValueError, match="retain"):
        RetainedBlocks("fifo", 10, D)
    with pytest.raises(ValueError, match="capacity"):
        RetainedBlocks("window", 0, D)


@pytest.mark.parametrize("kind", ["window", "reservoir"])
def test_rows_are_bounded_by_the_capacity(kind: str) -> None:
    rng = np.random.default_rng(0)
    rb = RetainedBlocks(kind, 500, D)
    for i in range(40):
        rb.add(block(tagged(100 * i, 100)), rng)
        assert len(rb) <= rb.capacity
        assert len(rb.blocks) <= MAX_BLOCKS
    assert rb.n_offered == 4000
    assert len(rb) == 500 if kind == "window" else 450 <= len(rb) <= 500


def test_window_evicts_the_oldest_rows_with_their_weight() -> None:
    rng = np.random.default_rng(0)
    rb = RetainedBlocks("window", 250, D)
    rb.add(block(tagged(0, 100), weight=1.0), rng)
    rb.add(block(tagged(100, 100), weight=2.0), rng)
    rb.add(block(tagged(200, 100), weight=3.0), rng)
    # 300 rows offered, 250 kept: the first block lost its 50 oldest rows and half its weight.
    assert len(rb) == 250
    np.testing.assert_array_equal(rb.points[:, 0], np.arange(50, 300))
    first = rb.blocks[0]
    assert first.weight == pytest.approx(0.5) and first.points == pytest.approx(50.0)
    assert [b.weight for b in rb.blocks[1:]] == [2.0, 3.0]
    # A block of the whole capacity pushes every older row out, with its weight.
    rb.add(block(tagged(300, 250), weight=4.0), rng)
    assert len(rb.blocks) == 1 and rb.blocks[0].weight == 4.0
    np.testing.assert_array_equal(rb.points[:, 0], np.arange(300, 550))


def test_window_eviction_skips_blocks_without_rows() -> None:
    rng = np.random.default_rng(0)
    rb = RetainedBlocks("window", 100, D)
    prior = stats_of(tagged(0, 10))
    rb.add_virtual(prior, 5.0, 10.0, expires=None, now=0)
    rb.add(block(tagged(0, 80)), rng)
    rb.add(block(tagged(80, 80)), rng)
    assert len(rb) == 100
    assert rb.blocks[0].expires is None and rb.blocks[0].weight == 5.0  # the prior stays
    np.testing.assert_array_equal(rb.points[:, 0], np.arange(60, 160))


def test_reservoir_thinning_keeps_a_uniform_sample() -> None:
    rng = np.random.default_rng(1)
    # More batches than MAX_BLOCKS: merged blocks must stay uniform too.
    capacity, n_batches, size = 1000, 2 * MAX_BLOCKS, 250
    rb = RetainedBlocks("reservoir", capacity, D)
    for i in range(n_batches):
        rb.add(block(tagged(size * i, size)), rng)
    total = n_batches * size
    kept = rb.points[:, 0]
    assert len(np.unique(kept)) == len(kept)  # a sample without replacement
    # Every tenth of the stream keeps about a tenth of the rows (uniform: 100 expected each,
    # a loose bound far outside the sampling noise).
    per_tenth = np.histogram(kept, bins=10, range=(0, total))[0]
    assert per_tenth.min() >= 60 and per_tenth.max() <= 140, per_tenth
    # Each block keeps about capacity / n_seen of the points it stands for.
    for b in rb.blocks:
        assert len(b) == pytest.approx(b.points * capacity / total, abs=2)
    # The weights are untouched by thinning: a block's statistics still stand for its points.
    assert rb.represented == total


def test_reservoir_does_not_thin_below_the_capacity() -> None:
    rb = RetainedBlocks("reservoir", 1000, D)
    rows = tagged(0, 300)
    rb.add(block(rows), np.random.default_rng(0))
    # Every row is kept (in a random order: thinning later keeps a prefix).
    np.testing.assert_array_equal(np.sort(rb.points[:, 0]), rows[:, 0])
    np.testing.assert_array_equal(rb.points[np.argsort(rb.points[:, 0])], rows)


def test_block_merging_keeps_rows_and_weights() -> None:
    rng = np.random.default_rng(0)
    n = MAX_BLOCKS + 5
    rb = RetainedBlocks("window", 10_000, D)
    weights = np.linspace(1.0, 2.0, n)
    all_rows = []
    for i in range(n):
        rows = tagged(10 * i, 10)
        all_rows.append(rows)
        rb.add(block(rows, weight=float(weights[i]), scored_at=i), rng)
    assert len(rb.blocks) == MAX_BLOCKS
    np.testing.assert_array_equal(rb.points, np.vstack(all_rows))  # every row, in order
    assert sum(b.weight for b in rb.blocks) == pytest.approx(weights.sum())
    assert rb.represented == pytest.approx(10.0 * n)
    # A merged block's statistics are the weighted union of its parts': the pooled model
    # equals the pool of the blocks as they were added.
    expected = SufficientStats.pool([stats_of(r).scale(w)
                                     for r, w in zip(all_rows, weights, strict=True)])
    expected = expected.normalized()
    pooled = rb.pooled()
    np.testing.assert_allclose(pooled.means, expected.means, rtol=1e-10)
    np.testing.assert_allclose(pooled.scatter, expected.scatter, rtol=1e-9, atol=1e-12)
    merged = [b for b in rb.blocks if len(b) > 10]
    assert merged and all(b.scored_at == int(b.rows[0, 0]) // 10 for b in merged)


def test_virtual_blocks_expire_once_every_block_with_rows_was_scored_after_them() -> None:
    rng = np.random.default_rng(0)
    rb = RetainedBlocks("window", 1000, D)
    rb.add(block(tagged(0, 50), scored_at=1), rng)
    rb.add(block(tagged(50, 50), scored_at=2), rng)
    prior_stats = stats_of(tagged(500, 20))
    rb.add_virtual(prior_stats, 1.0, 20.0, expires=None, now=3)  # a prior: never expires
    rb.add_virtual(prior_stats, 1.0, 20.0, expires=3, now=3)  # a move's newborn at update 3
    rb.drop_expired()
    assert len(rb.blocks) == 4  # blocks scored at 1 and 2 do not carry its points yet
    rb.blocks[0].scored_at = 4
    rb.drop_expired()
    assert len(rb.blocks) == 4  # one block still scored before the move
    rb.blocks[1].scored_at = 3  # scored at the move's own update: not after it
    rb.drop_expired()
    assert len(rb.blocks) == 4
    rb.blocks[1].scored_at = 5
    rb.drop_expired()
    assert len(rb.blocks) == 3
    assert [b.expires for b in rb.blocks] == [None, None, None]
    assert len(rb.blocks[-1]) == 0  # the prior stays
    # Without any block with rows a newborn goes at once; a prior stays.
    empty = RetainedBlocks("window", 10, D)
    empty.add_virtual(prior_stats, 1.0, 20.0, expires=None, now=0)
    empty.add_virtual(prior_stats, 1.0, 20.0, expires=0, now=0)
    empty.drop_expired()
    assert [b.expires for b in empty.blocks] == [None]


@pytest.mark.parametrize("kind", ["window", "reservoir"])
def test_state_round_trip(kind: str) -> None:
    rng = np.random.default_rng(2)
    rb = RetainedBlocks(kind, 300, D)
    for i in range(6):
        rb.decay(0.8)
        rb.add(block(tagged(100 * i, 100), weight=0.2, scored_at=i), rng)
    rb.add_virtual(stats_of(tagged(0, 10)), 0.3, 10.0, expires=7, now=7)
    again = RetainedBlocks.from_state(rb.to_state())
    assert (again.kind, again.capacity, again.n_features, again.n_offered) == (
        rb.kind, rb.capacity, rb.n_features, rb.n_offered)
    assert len(again.blocks) == len(rb.blocks)
    for a, b in zip(again.blocks, rb.blocks, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert a.rows.shape == (len(b), D)
        np.testing.assert_array_equal(a.stats.scatter, b.stats.scatter)
        np.testing.assert_array_equal(a.stats.means, b.stats.means)
        assert (a.weight, a.points, a.scored_at, a.expires, a.times_scored) == (
            b.weight, b.points, b.scored_at, b.expires, b.times_scored)
        assert a.log_likelihood == b.log_likelihood or (
            np.isnan(a.log_likelihood) and np.isnan(b.log_likelihood))
    np.testing.assert_array_equal(again.points, rb.points)


def test_samples_and_pooled_statistics_follow_every_change_of_the_blocks() -> None:
    """sample() gathers from a cached concatenation of the rows and pooled() from cached
    stacks of the blocks' statistics: after adds, merges, thinning, re-scored and dropped
    blocks they give what the blocks themselves give, and a pickle leaves the caches out."""
    import pickle

    rng = np.random.default_rng(4)
    rb = RetainedBlocks("reservoir", 400, D)
    for i in range(3 * MAX_BLOCKS):
        rb.decay(0.9)
        rb.add(block(tagged(50 * i, 50), weight=0.1, scored_at=i), rng)
        if i % 5 == 0:  # a re-scored block: new statistics, same rows
            rb.blocks[i % len(rb.blocks)].stats = stats_of(tagged(7 * i, 30))
        if i % 7 == 0:
            rb.add_virtual(stats_of(tagged(0, 10)), 0.05, 10.0, expires=i, now=i)
        if i % 11 == 0:
            rb.blocks = [b for b in rb.blocks if len(b)]
        pooled = rb.pooled()
        want = SufficientStats.pool([b.stats.scale(b.weight) for b in rb.blocks
                                     if b.weight > 0]).normalized()
        np.testing.assert_array_equal(pooled.counts, want.counts)
        np.testing.assert_array_equal(pooled.means, want.means)
        np.testing.assert_array_equal(pooled.scatter, want.scatter)
        seed = int(rng.integers(1 << 30))
        drawn = rb.sample(64, np.random.default_rng(seed))
        picks = np.sort(np.random.default_rng(seed).integers(0, len(rb), size=64))
        np.testing.assert_array_equal(drawn, rb.points[picks])
    clone = pickle.loads(pickle.dumps(rb))
    assert clone._rows_cache is None and clone._stats_cache is None
    np.testing.assert_array_equal(clone.sample(64, np.random.default_rng(1)),
                                  rb.sample(64, np.random.default_rng(1)))


@pytest.mark.parametrize("kind", ["window", "reservoir"])
def test_the_row_count_follows_every_add_and_stays_within_the_capacity(kind) -> None:
    # len() is cached per version of the rows; an add must count its own block before it
    # evicts or thins (a stale count let the rows overrun the capacity).
    rng = np.random.default_rng(5)
    rb = RetainedBlocks(kind, 300, D)
    for i in range(3 * MAX_BLOCKS):
        rb.decay(0.9)
        rb.add(block(tagged(40 * i, 40), weight=0.1, scored_at=i), rng)
        assert len(rb) == sum(len(b) for b in rb.blocks) == len(rb.points)
        assert len(rb) <= 300


def test_state_with_too_many_rows_is_refused() -> None:
    rb = RetainedBlocks("window", 10, D)
    rb.blocks.append(block(tagged(0, 10 + MAX_BLOCKS + 1)))
    with pytest.raises(ValueError, match="capacity"):
        RetainedBlocks.from_state(rb.to_state())


def test_reservoir_scores_a_nested_uniform_subsample(monkeypatch) -> None:
    """Past SCORED_ROWS retained rows the online EM scores a prefix of every block's rows:
    a uniform subsample (the rows are in a random order), bounded in total, and nested as
    the stream grows."""
    monkeypatch.setattr(blocks_module, "SCORED_ROWS", 300)
    rng = np.random.default_rng(3)
    rb = RetainedBlocks("reservoir", 1000, D)
    for i in range(10):
        rb.add(block(tagged(100 * i, 100)), rng)
    assert len(rb) == 1000 and rb.scored_share == pytest.approx(0.3)
    scored = {i: set(rb.scored_rows(b)[:, 0]) for i, b in enumerate(rb.blocks)}
    assert 300 <= rb.total_scored <= 300 + len(rb.blocks)
    assert rb.total_scored == sum(len(v) for v in scored.values())
    for b in rb.blocks:
        assert rb.n_scored(b) == len(rb.scored_rows(b)) == int(np.ceil(0.3 * len(b)))
    # A uniform subsample: the scored rows of the whole stream spread over all of it.
    kept = np.concatenate([rb.scored_rows(b)[:, 0] for b in rb.blocks])
    assert np.histogram(kept, bins=5, range=(0, 1000))[0].min() >= 35
    # More points: the share falls and each block's scored rows are a subset of before.
    for i in range(10, 20):
        rb.add(block(tagged(100 * i, 100)), rng)
    for i, b in enumerate(rb.blocks[:10]):
        assert set(rb.scored_rows(b)[:, 0]) <= scored[i]


def test_window_scores_evenly_spaced_rows(monkeypatch) -> None:
    monkeypatch.setattr(blocks_module, "SCORED_ROWS", 100)
    rb = RetainedBlocks("window", 400, D)
    rb.add(block(tagged(0, 400)), np.random.default_rng(0))
    rows = rb.scored_rows(rb.blocks[0])[:, 0]
    assert len(rows) == rb.total_scored == 100
    np.testing.assert_array_equal(rows, np.arange(0, 400, 4))


def test_below_scored_rows_every_row_is_scored() -> None:
    rb = RetainedBlocks("reservoir", 1000, D)
    rb.add(block(tagged(0, 300)), np.random.default_rng(0))
    assert rb.scored_share == 1.0
    assert rb.scored_rows(rb.blocks[0]) is rb.blocks[0].rows


def test_a_reservoir_state_in_stream_order_is_shuffled_on_load() -> None:
    """A state written when reservoir rows were kept in stream order loads with each block's
    rows shuffled (the same way every time), so that thinning by prefix stays uniform."""
    rb = RetainedBlocks("reservoir", 1000, D)
    rb.add(block(tagged(0, 400)), np.random.default_rng(0))
    state = rb.to_state()
    state.pop("rows_shuffled")
    state["blocks"][0]["rows"] = tagged(0, 400)  # the old layout: stream order
    first = RetainedBlocks.from_state(state).blocks[0].rows
    again = RetainedBlocks.from_state(state).blocks[0].rows
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[:, 0], np.arange(400))
    np.testing.assert_array_equal(np.sort(first[:, 0]), np.arange(400))
    # A state of this version loads as it was written.
    np.testing.assert_array_equal(RetainedBlocks.from_state(rb.to_state()).blocks[0].rows,
                                  rb.blocks[0].rows)


def test_rescore_order_puts_blocks_scored_once_first_then_the_stalest() -> None:
    retained = RetainedBlocks("window", 10_000, D)
    rng = np.random.default_rng(0)
    for i, (times, scored_at) in enumerate([(3, 5), (1, 9), (2, 2), (1, 4), (5, 7)]):
        b = block(tagged(100 * i, 50), scored_at=scored_at)
        b.times_scored = times
        retained.add(b, rng)
    retained.add_virtual(stats_of(tagged(0, 5)), 1.0, 5.0, 0, 0)  # no rows: never re-scored
    order = [(b.times_scored, b.scored_at) for b in retained.rescore_order()]
    # Scored fewer than RESCORE_PRIORITY times first (stalest first), then the stalest.
    assert order == [(1, 4), (1, 9), (2, 2), (3, 5), (5, 7)]


def test_a_reservoir_keeps_the_same_rows_of_a_large_new_block_as_thinning_after_it() -> None:
    # add() gathers only the prefix of the new block's permutation that _thin keeps: the
    # rows and their order must be those of permuting every row and thinning afterwards.
    capacity = 1_000
    retained = RetainedBlocks("reservoir", capacity, D)
    rng = np.random.default_rng(3)
    retained.add(block(tagged(0, 800)), rng)
    big = tagged(800, 20_000)
    state = rng.bit_generator.state
    retained.add(block(big), rng)
    rng.bit_generator.state = state
    permuted = big[rng.permutation(len(big))]
    represented = 800.0 + 20_000.0
    keep = int(20_000.0 * (capacity / represented))
    new_rows = [b.rows for b in retained.blocks if b.rows[0, 0] >= 800]
    assert len(new_rows) == 1
    np.testing.assert_array_equal(new_rows[0], permuted[:keep])
    assert len(retained) <= capacity
