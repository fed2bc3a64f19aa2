"""A robot that changes place (issue 12): the window settings describe where it is now.

Two 2-D laser maps streamed one after the other, each in the order a robot records it. With
``retain="window"`` the online model describes the window (scored against batch EM fitted on
the window, on held-out points of the same span); the reservoir model, which describes the
whole history, is far from it there.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm import GaussianMixture
from streamgmm.synthetic import two_buildings

WINDOW, K, BATCH = 4000, 8, 512  # 512-point messages, as in the issue


def _stream():
    X, start = two_buildings(seed=0, n_first=8000, n_second=10_000)
    held = np.random.default_rng(1).random(len(X)) < 0.15
    return X, start, held


def _window_gap(model, X, held, cut):
    """Batch EM on the last WINDOW training points before ``cut`` minus ``model``'s score."""
    train = np.flatnonzero(~held[:cut])[-WINDOW:]
    test = np.flatnonzero(held[train[0]:cut]) + train[0]
    reference = GaussianMixture(K, n_init=3, random_state=0).fit(X[train])
    return reference.score(X[test]) - model.score(X[test])


def _gaps(seed=0, **kwargs):
    X, start, held = _stream()
    gm = GaussianMixture(K, random_state=seed, **kwargs)
    train = np.flatnonzero(~held)
    gaps = {}
    done = 0
    for label, cut in (("half", start + (len(X) - start) // 2), ("end", len(X))):
        upto = np.searchsorted(train, cut)
        for i in range(done, upto, BATCH):
            gm.partial_fit(X[train[i:min(i + BATCH, upto)]])
        done = upto
        gaps[label] = _window_gap(gm, X, held, cut)
    return gm, gaps


def test_window_model_describes_the_new_place():
    """The window model describes the new place; the reservoir, which keeps the old one, does
    not. Measured (2026-12-07, fifth session, the documented drift setting: the window with
    the default step): window seeds 0-2 1.02 / 0.00 / 0.68 half-way into the new place, 0.04 /
    0.04 / 0.03 at its end; reservoir (seed 0) 1.20 and 3.66. Half-way the window may not
    have caught up yet, so it is held to a loose bound there. Single runs of this short
    stream swing by tenths of a nat with the random draws (seed 0 with the old constant step
    0.05: 0.43 at the end before the split moves were ranked by their gain, 1.75 after, while
    the mean of seeds 0-5 went 0.33 -> 0.64 with that step and 0.67 -> 0.20 with the default
    one): hence three seeds. (The goal, 0.1 from batch EM on the window, is not met.)"""
    _, reservoir_gaps = _gaps()
    assert reservoir_gaps["end"] > 1.0
    for seed in (0, 1, 2):
        window, window_gaps = _gaps(seed, retain="window", retain_size=WINDOW)
        assert window_gaps["end"] < reservoir_gaps["end"] - 1.0, (seed, window_gaps,
                                                                  reservoir_gaps)
        assert window_gaps["end"] < 1.0, (seed, window_gaps)
        assert window_gaps["half"] < 1.5, (seed, window_gaps)
        # The change of place was seen and acted on.
        assert window.n_change_points_ >= 1
        assert window.n_moves_ >= 1


def test_points_that_leave_the_window_leave_the_statistics():
    """After a whole window of the new place, no weight is left where the old place was."""
    rng = np.random.default_rng(0)
    old = rng.normal(size=(3000, 2)) * 0.5 + [-20.0, 0.0]
    new = rng.normal(size=(3000, 2)) * 0.5 + [20.0, 0.0]
    gm = GaussianMixture(3, random_state=0, retain="window", retain_size=1000,
                         step_constant=0.05, moves=False)
    for X in (old, new):
        for i in range(0, len(X), 100):
            gm.partial_fit(X[i:i + 100])
    assert np.all(gm.means_[:, 0] > 0)  # every component is at the new place
    assert gm.online_.stats.total == pytest.approx(1.0)
    blocks = gm.online_.retained.blocks
    assert sum(len(b) for b in blocks) == 1000
    assert all(np.all(b.rows[:, 0] > 0) for b in blocks)  # only the new place is retained
