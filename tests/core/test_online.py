"""OnlineEM: buffering, the update rule, re-seeding, relocation and exact state round trips."""

import dataclasses

import numpy as np
import pytest

from streamgmm.core.em import batch_statistics
from streamgmm.core.online import OnlineEM, OnlineSettings
from streamgmm.core.params import MixtureParams
from streamgmm.core.stepwise import step_size
from streamgmm.core.suffstats import SufficientStats


def blobs(rng, n, centers, scale=0.5):
    centers = np.asarray(centers, dtype=float)
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + scale * rng.normal(size=(n, centers.shape[1]))


CENTERS = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]


def test_buffers_until_n_components_points():
    rng = np.random.default_rng(0)
    X = blobs(rng, 10, CENTERS)
    online = OnlineEM(OnlineSettings(4), 2, seed=0)
    for i in range(3):
        info = online.update(X[i : i + 1])
        assert not online.initialized and info.step == 0.0
        assert online.n_seen == 0 and len(online.retained) == i + 1
    online.update(X[3:4])
    assert online.initialized and online.n_seen == 4 and online.n_updates == 1
    online.update(X[4:10])
    assert online.n_seen == 10


def test_initializer_hook_starts_the_first_batch_em():
    rng = np.random.default_rng(1)
    X = blobs(rng, 60, CENTERS)
    seen = []

    def start(points):
        seen.append(len(points))
        return MixtureParams.from_covariances(np.full(3, 1 / 3), np.array(CENTERS), np.ones(3),
                                              "spherical")

    online = OnlineEM(OnlineSettings(3, covariance_type="spherical"), 2, seed=0)
    online.initializer = start
    online.update(X)
    assert seen == [60]
    order = np.argsort(online.params.means[:, 0] + 10 * online.params.means[:, 1])
    np.testing.assert_allclose(online.params.means[order], CENTERS, atol=0.3)


def _started(settings, X, seed=0):
    online = OnlineEM(settings, X.shape[1], seed=seed)
    online.update(X)
    assert online.initialized
    return online


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_textbook_update_is_stepwise_interpolation(ctype):
    rng = np.random.default_rng(2)
    settings = OnlineSettings(3, covariance_type=ctype, replay=False, relocate=False)
    online = _started(settings, blobs(rng, 300, CENTERS))
    for _ in range(5):
        X = blobs(rng, 40, CENTERS)
        before, params = online.stats, online.params
        step = step_size(online.n_updates + 1, settings.step_decay, settings.step_offset)
        info = online.update(X)
        expected = before.interpolate(batch_statistics(X, params).stats, step)
        assert info.step == step and info.reseeded == 0
        np.testing.assert_allclose(online.stats.means, expected.means, rtol=1e-12)
        np.testing.assert_allclose(online.stats.counts, expected.counts, rtol=1e-12)
        np.testing.assert_allclose(online.stats.scatter, expected.scatter, rtol=1e-12)


def test_replay_update_gives_the_new_batch_its_share():
    """rho = min(eta, n_replay / n_hist);  H = (1 - rho) S + rho S_replay;
    S = (n_hist H + m S_new) / (n_hist + m)."""
    rng = np.random.default_rng(3)
    settings = OnlineSettings(3, relocate=False, replay_min=64)
    online = _started(settings, blobs(rng, 100, CENTERS))
    refreshes = []
    for m in (1, 3000, 1, 10):
        X = blobs(rng, m, CENTERS)
        twin = OnlineEM.from_state(online.to_state())  # same RNG: same replay draw
        params, n_hist = twin.params, twin.retained.represented
        step = step_size(twin.n_updates + 1, settings.step_decay, settings.step_offset)
        n_replay = max(64, int(np.ceil(settings.replay_fraction * m)))
        replay = batch_statistics(twin.retained.sample(n_replay, twin.rng), params)
        new = batch_statistics(X, params)
        refresh = min(step, n_replay / n_hist)
        refreshes.append(refresh == step)
        history = twin.stats.interpolate(replay.stats, refresh)
        expected = history.scale(n_hist).merge(new.stats).normalized()
        online.update(X)
        np.testing.assert_allclose(online.stats.counts, expected.counts, rtol=1e-12)
        np.testing.assert_allclose(online.stats.means, expected.means, rtol=1e-12)
        np.testing.assert_allclose(online.stats.scatter, expected.scatter, rtol=1e-12)
    assert refreshes == [True, True, False, False]  # both bounds were exercised


def test_remember_false_moves_statistics_only():
    rng = np.random.default_rng(4)
    online = _started(OnlineSettings(3), blobs(rng, 200, CENTERS))
    rows, n_seen = online.retained.points.copy(), online.n_seen
    before = online.stats
    online.update(blobs(rng, 30, CENTERS) + 1.0, remember=False)
    np.testing.assert_array_equal(online.retained.points, rows)
    assert online.n_seen == n_seen
    assert not np.array_equal(online.stats.means, before.means)


@pytest.mark.parametrize("batch", [1, 50])
def test_dead_components_are_reseeded_and_counted(batch):
    rng = np.random.default_rng(5)
    settings = OnlineSettings(4, covariance_type="diag", relocate=False)
    online = _started(settings, blobs(rng, 400, CENTERS))
    # Two components far from every point: they get no responsibility and must die.
    means = online.params.means.copy()
    means[1:3] = [[1e3, 1e3], [-1e3, 1e3]]
    online.set_params(MixtureParams.from_covariances(
        np.full(4, 0.25), means, np.ones((4, 2)), "diag"))
    for _ in range(80):
        online.update(blobs(rng, batch, CENTERS))
    # Each was moved onto a data point (even from 1-point batches) and counted once each.
    assert online.n_reseeded >= 2
    assert np.all(np.abs(online.params.means) < 20)
    assert np.all(online.params.weights > settings.weight_floor)


def test_reseeding_with_fewer_batch_points_than_dead_components():
    rng = np.random.default_rng(6)
    settings = OnlineSettings(5, covariance_type="spherical", relocate=False, min_weight=0.05)
    online = _started(settings, blobs(rng, 300, CENTERS))
    # Three components far away with almost no weight: all dead at the next update.
    means = np.vstack([CENTERS[:2], [[1e3, 0.0], [0.0, 1e3], [-1e3, 0.0]]])
    weights = np.array([0.5, 0.5 - 3e-6, 1e-6, 1e-6, 1e-6])
    online.set_params(MixtureParams.from_covariances(weights, means, np.ones(5), "spherical"))
    info = online.update(blobs(rng, 1, CENTERS))  # one point for three dead components
    assert info.reseeded == 3 and online.n_reseeded == 3
    assert np.all(online.stats.counts / online.stats.total > 0.05)
    assert np.all(np.abs(online.params.means) < 20)


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("retain, averaging", [("reservoir", False), ("window", True)])
def test_state_round_trip_resumes_bit_for_bit(ctype, retain, averaging):
    rng = np.random.default_rng(7)
    X = np.vstack([blobs(rng, 1500, [c]) for c in CENTERS])  # sorted by region
    settings = OnlineSettings(3, covariance_type=ctype, retain=retain, retain_size=500,
                              averaging=averaging)
    reference = OnlineEM(settings, 2, seed=11)
    snapshots = {}
    batches = [X[i : i + 97] for i in range(0, len(X), 97)]
    for i, batch in enumerate(batches):
        info = reference.update(batch)
        if i in (0, 5) or (info.relocated and "relocation" not in snapshots):
            snapshots["relocation" if info.relocated else i] = (i, reference.to_state())
    assert "relocation" in snapshots and reference.n_relocations > 0
    for i, state in snapshots.values():
        resumed = OnlineEM.from_state(state)
        for batch in batches[i + 1 :]:
            resumed.update(batch)
        np.testing.assert_array_equal(resumed.params.means, reference.params.means)
        np.testing.assert_array_equal(resumed.params.covariances, reference.params.covariances)
        np.testing.assert_array_equal(resumed.params.weights, reference.params.weights)
        np.testing.assert_array_equal(resumed.stats.scatter, reference.stats.scatter)
        assert resumed.to_state()["rng"] == reference.to_state()["rng"]
        assert resumed.n_relocations == reference.n_relocations


def test_relocation_fires_on_sorted_data_and_rarely_on_iid_data():
    rng = np.random.default_rng(8)
    centers = [[0, 0], [6, 0], [12, 0], [18, 0], [24, 0]]
    X = blobs(rng, 5000, centers)
    fired = {}
    for order, data in (("iid", X), ("sorted", X[np.argsort(X[:, 0])])):
        online = OnlineEM(OnlineSettings(5), 2, seed=0)
        for i in range(0, len(data), 50):
            online.update(data[i : i + 50])
        fired[order] = online.n_relocations + online.n_moves
        # Relocations and moves never spend more than their budgets allow.
        s = online.settings
        assert online.work <= s.relocate_budget * online.n_seen + s.budget_head_start
        assert online.move_work <= s.move_budget * online.n_seen + s.budget_head_start
    assert fired["sorted"] >= 10  # the stream keeps arriving where no component is (21 here)
    # The CUSUM allows for the history's in-sample optimism (about n_parameters / n nats
    # per point), so an i.i.d. stream seldom relocates (4 times here).
    assert fired["iid"] <= 8


def test_relocation_work_is_bounded_per_point_on_a_long_ordered_stream():
    """The cost of keeping up with an ordered stream grows with its length, not faster."""
    rng = np.random.default_rng(3)
    centers = [[6.0 * i, 0.0] for i in range(12)]
    X = blobs(rng, 60_000, centers)
    X = X[np.argsort(X[:, 0])]
    settings = OnlineSettings(12, budget_head_start=50_000, relocate_budget=0.5,
                              move_budget=0.25)
    online = OnlineEM(settings, 2, seed=0)
    for i in range(0, len(X), 500):
        online.update(X[i : i + 500])
    assert online.n_relocations >= 1
    assert online.work <= 0.5 * online.n_seen + 50_000
    assert online.move_work <= 0.25 * online.n_seen + 50_000


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(step_decay=0.5), "step_decay"),
        (dict(step_constant=2.0), "step_constant"),
        (dict(retain_size=2), "retain_size"),
        (dict(replay_fraction=0.0), "replay_fraction"),
        (dict(replay_min=-1), "replay_min"),
        (dict(relocate_growth=0.9), "relocate_growth"),
    ],
)
def test_settings_are_checked(change, message):
    with pytest.raises(ValueError, match=message):
        OnlineEM(dataclasses.replace(OnlineSettings(3), **change), 2)


def test_a_loaded_prior_weighs_as_many_points_as_stated():
    """adopt(..., prior_points=w): a new batch enters with the share m / (n_hist + w + m)."""
    rng = np.random.default_rng(4)
    X = blobs(rng, 2000, [[0, 0], [8, 0]])
    moved = {}
    for weight in (0.0, 1e6):
        online = OnlineEM(OnlineSettings(2, relocate=False), 2, seed=0)
        for i in range(0, len(X), 200):
            online.update(X[i : i + 200])
        prior = online.params
        online.adopt(prior, SufficientStats.from_params(prior, total=max(weight, 1.0)),
                     relocation=False, prior_points=weight)
        online.update(X[:200] + [0.0, 3.0])  # a batch from somewhere else
        moved[weight] = np.abs(online.params.means - prior.means).max()
    assert moved[1e6] < 0.01 * moved[0.0]
    state = online.to_state()
    assert OnlineEM.from_state(state).prior_points == 1e6


@pytest.mark.parametrize("change, message", [
    (dict(relocate_budget=-1.0), "relocate_budget"),
    (dict(move_budget=-0.1), "move_budget"),
    (dict(budget_head_start=-1.0), "budget_head_start"),
    (dict(move_points=1), "move_points"),
    (dict(move_iter=0), "move_iter"),
])
def test_budget_settings_are_checked(change, message):
    with pytest.raises(ValueError, match=message):
        OnlineEM(dataclasses.replace(OnlineSettings(3), **change), 2)


def test_a_window_saved_without_blocks_resumes_from_its_retained_points():
    """Checkpoints written before the window kept blocks still describe the window."""
    rng = np.random.default_rng(2)
    X = blobs(rng, 3000, [[0, 0], [8, 0]])
    online = OnlineEM(OnlineSettings(2, retain="window", retain_size=1000), 2, seed=0)
    for i in range(0, len(X), 100):
        online.update(X[i : i + 100])
    state = online.to_state()
    state["blocks"] = None  # as an older version wrote it
    resumed = OnlineEM.from_state(state)
    assert sum(len(b) for b in resumed.blocks) == len(resumed.retained) == 1000
    resumed.update(X[:100])
    np.testing.assert_allclose(resumed.params.means, online.params.means, atol=0.5)
