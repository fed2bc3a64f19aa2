"""Merge moves (``streamgmm.core.moves``): the cost ranks the redundant pair cheapest, the
merge is the exact union of the pair's statistics, the exact loss agrees, and the pairs
chosen are disjoint and avoid the excluded components; a split targets the component that
covers two structures, not the heaviest one."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.core.em import m_step
from streamgmm.core.moves import (
    cheapest_pairs,
    merge_costs,
    merge_losses,
    merge_pair,
    split_gains,
    split_statistics,
)
from streamgmm.core.scoring import estimate_log_prob_resp
from streamgmm.core.suffstats import SufficientStats

REG = 1e-6
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def redundant(covariance_type: str = "full", seed: int = 0):
    """Four blobs, the first cut in two by the labels (components 0 and 3 are redundant)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]])
    labels = rng.integers(0, 3, 3000)
    X = centres[labels] + rng.normal(size=(len(labels), 2))
    labels = np.where((labels == 0) & (rng.random(len(labels)) < 0.5), 3, labels)
    stats = SufficientStats.from_responsibilities(X, np.eye(4)[labels], covariance_type)
    return X, labels, stats


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_merge_costs_prefer_the_redundant_pair(covariance_type: str) -> None:
    _, _, stats = redundant(covariance_type)
    cost = merge_costs(stats, REG)
    assert cost.shape == (4, 4)
    assert np.all(np.isinf(np.diag(cost)))
    np.testing.assert_allclose(cost, cost.T, rtol=1e-9)
    upper = np.triu_indices(4, 1)
    i, j = upper[0][np.argmin(cost[upper])], upper[1][np.argmin(cost[upper])]
    assert (i, j) == (0, 3)
    others = [cost[a, b] for a, b in zip(*upper, strict=True) if (a, b) != (0, 3)]
    assert cost[0, 3] < min(others)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_merge_pair_gives_the_exact_union(covariance_type: str) -> None:
    X, labels, stats = redundant(covariance_type)
    merged = merge_pair(stats, 3, 0)
    union = np.where(labels == 0, 3, labels)
    expected = SufficientStats.from_responsibilities(X, np.eye(4)[union], covariance_type)
    np.testing.assert_allclose(merged.counts[3], expected.counts[3], rtol=1e-9)
    np.testing.assert_allclose(merged.means[3], expected.means[3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged.scatter[3], expected.scatter[3], rtol=1e-9, atol=1e-12)
    # The emptied one has no count and the shape of the union; the others are untouched.
    assert merged.counts[0] == 0.0
    np.testing.assert_array_equal(merged.means[0], merged.means[3])
    for k in (1, 2):
        assert merged.counts[k] == stats.counts[k]
        np.testing.assert_array_equal(merged.scatter[k], stats.scatter[k])
    assert merged.counts.sum() == pytest.approx(stats.counts.sum())


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied"])
def test_merge_losses_rank_the_redundant_pair_cheapest(covariance_type: str) -> None:
    X, _, stats = redundant(covariance_type)
    params = m_step(stats, REG)
    log_norm, log_resp = estimate_log_prob_resp(X[:1000], params)
    pairs = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    losses = merge_losses(X[:1000], log_norm, log_resp, stats, params, pairs, REG)
    assert losses.shape == (6,)
    assert pairs[int(np.argmin(losses))] == (0, 3)
    assert losses[3] < 0.1 < min(np.delete(losses, 3))  # nearly free vs. a real loss


def test_cheapest_pairs_are_disjoint_and_respect_exclude() -> None:
    # Six components: two redundant pairs (0, 3) and (1, 4), component 2 and 5 apart.
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    blob = rng.integers(0, 4, 6000)
    X = centres[blob] + rng.normal(size=(len(blob), 2))
    halves = rng.random(len(blob)) < 0.5
    labels = np.select([(blob == 0) & halves, (blob == 1) & halves], [3, 4], blob)
    labels = np.where(blob == 3, 5, labels)
    stats = SufficientStats.from_responsibilities(X, np.eye(6)[labels], "full")

    pairs = cheapest_pairs(stats, REG, n_pairs=2)
    assert {frozenset(p) for p in pairs} == {frozenset((0, 3)), frozenset((1, 4))}
    # The heavier component of a pair keeps the union.
    for keep, freed in pairs:
        assert stats.counts[keep] >= stats.counts[freed]

    many = cheapest_pairs(stats, REG, n_pairs=10)
    assert len(many) == 3  # six components: three disjoint pairs at most
    used = [k for p in many for k in p]
    assert len(used) == len(set(used))

    pairs = cheapest_pairs(stats, REG, n_pairs=3, exclude=(0,))
    assert all(0 not in p for p in pairs)
    assert frozenset((1, 4)) == frozenset(pairs[0])
    assert not cheapest_pairs(stats, REG, n_pairs=2, exclude=tuple(range(6)))


def test_cheapest_pairs_rerank_by_the_exact_losses() -> None:
    _, _, stats = redundant("full")
    seen: list = []

    def exact(candidates):
        seen.append(list(candidates))
        # Pretend the exact check finds the last candidate the cheapest.
        return np.array([1.0] * (len(candidates) - 1) + [0.0])

    pairs = cheapest_pairs(stats, REG, n_pairs=1, exact=exact)
    assert len(seen) == 1 and seen[0][0] == (0, 3)
    assert 1 < len(seen[0]) <= 4  # only the few cheapest by the statistics are checked
    assert {frozenset(p) for p in pairs} == {frozenset(seen[0][-1])}


def two_structures(seed: int = 0):
    """A heavy, evenly spread floor (component 0), a component covering a box and a pole 3 m
    apart (1), one Gaussian blob (2) and an unused component (3); hard labels."""
    rng = np.random.default_rng(seed)
    floor = np.column_stack([rng.uniform(-8, 8, 600), rng.uniform(-8, 8, 600),
                             rng.normal(0, 0.02, 600)])
    box = rng.normal([3.0, 2.0, 0.5], 0.3, (150, 3))
    pole = rng.normal([6.0, 2.0, 1.2], [0.08, 0.08, 0.7], (150, 3))
    blob = rng.normal([0.0, 20.0, 1.0], 1.0, (200, 3))
    Y = np.vstack([floor, box, pole, blob])
    labels = np.repeat([0, 1, 1, 2], [600, 150, 150, 200])
    return Y, labels


def test_split_gains_rank_the_component_that_covers_two_structures_first() -> None:
    Y, labels = two_structures()
    gains = split_gains(Y, labels, 4)
    assert np.argmax(gains) == 1
    # Halving an even spread gains little (here it loses); one Gaussian loses by being cut.
    assert abs(gains[0]) < 0.2 * gains[1]
    assert gains[2] < 0
    assert gains[3] == -np.inf  # no points


def test_split_statistics_gives_birth_on_one_of_the_two_structures() -> None:
    Y, labels = two_structures(1)
    log_resp = np.log(np.eye(4)[labels] + 1e-300)
    target, born = split_statistics(Y, log_resp, "full", np.random.default_rng(0))
    assert target == 1 and len(born) == 1
    newborn = born[0].means[0]
    # On the box or on the pole, not between them.
    assert min(np.linalg.norm(newborn - [3.0, 2.0, 0.5]),
               np.linalg.norm(newborn - [6.0, 2.0, 1.2])) < 0.3
