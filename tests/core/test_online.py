"""OnlineEM: buffering, the memoized update, its fixed effort, moves, determinism, state."""

import dataclasses

import numpy as np
import pytest

from streamgmm.core import blocks as blocks_module
from streamgmm.core import online as online_module
from streamgmm.core import schedule as schedule_module
from streamgmm.core.effort import MAX_PASSES, effort_per_point
from streamgmm.core.em import batch_statistics, run_em
from streamgmm.core.online import OnlineEM, OnlineSettings
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import estimate_log_prob_resp
from streamgmm.core.stepwise import step_size
from streamgmm.core.suffstats import SufficientStats
from streamgmm.synthetic import lidar_scene


def blobs(rng, n, centers, scale=0.5):
    centers = np.asarray(centers, dtype=float)
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + scale * rng.normal(size=(n, centers.shape[1]))


CENTERS = [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]
TEXTBOOK = dict(effort=0.0, moves=False, step_decay=0.6, step_offset=2.0)


def _stream(online, X, batch):
    for s in range(0, len(X), batch):
        online.update(X[s:s + batch])
    return online


def test_buffers_until_n_components_points():
    rng = np.random.default_rng(0)
    X = blobs(rng, 10, CENTERS)
    online = OnlineEM(OnlineSettings(4), 2, seed=0)
    for i in range(3):
        info = online.update(X[i : i + 1])
        assert not online.initialized and info.step == 0.0
        assert online.n_seen == 0 and sum(len(b) for b in online.buffered) == i + 1
    online.update(X[3:4])
    assert online.initialized and online.n_seen == 4 and len(online.retained) == 4
    assert online.work > 0  # the first batch EM is counted


def test_initializer_hook_starts_the_first_batch_em():
    rng = np.random.default_rng(1)
    X = blobs(rng, 200, CENTERS, scale=0.3)
    called = []

    def initializer(points):
        called.append(len(points))
        return MixtureParams.from_covariances(np.full(3, 1 / 3), np.array(CENTERS),
                                              np.stack([np.eye(2)] * 3), "full")

    online = OnlineEM(OnlineSettings(3), 2, seed=0)
    online.initializer = initializer
    online.update(X)
    assert called == [200] and online.initializer is None
    assert np.allclose(np.sort(online.params.means[:, 0]), [0, 0, 5], atol=0.2)


@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied"])
def test_textbook_update_is_stepwise_interpolation(ctype):
    """effort=0 and no moves: S = (1 - eta) S + eta S_new, eta = (n/m + t0) ** -alpha."""
    rng = np.random.default_rng(2)
    X = blobs(rng, 600, CENTERS)
    online = OnlineEM(OnlineSettings(3, covariance_type=ctype, **TEXTBOOK), 2, seed=0)
    online.update(X[:200])
    before, params = online.stats, online.params
    batch = X[200:300]
    online.update(batch)
    eta = step_size(300 / 100, 0.6, 2.0)
    new = batch_statistics(batch, params).stats
    expected = before.interpolate(new, eta)
    np.testing.assert_allclose(online.stats.counts, expected.counts, rtol=1e-10)
    np.testing.assert_allclose(online.stats.means, expected.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(online.stats.scatter, expected.scatter, rtol=1e-8, atol=1e-12)


def test_default_step_gives_every_point_the_same_weight():
    """alpha=1, t0=0 and no re-scoring: the statistics are those of every batch pooled."""
    rng = np.random.default_rng(3)
    X = blobs(rng, 900, CENTERS)
    online = OnlineEM(OnlineSettings(3, effort=0.0, moves=False), 2, seed=0)
    online.update(X[:300])
    parts, params_seen = [], []
    first = online.retained.pooled()
    for lo, hi in [(300, 400), (400, 700), (700, 900)]:
        params_seen.append(online.params)
        parts.append(batch_statistics(X[lo:hi], online.params).stats)
        online.update(X[lo:hi])
    pooled = SufficientStats.pool([first.scale(300)] + parts).normalized()
    np.testing.assert_allclose(online.stats.counts, pooled.counts, rtol=1e-10)
    np.testing.assert_allclose(online.stats.means, pooled.means, rtol=1e-9)


def test_full_rescoring_of_a_window_is_batch_em(monkeypatch):
    """A full pass of re-scoring with one M-step at its end is one batch EM iteration."""
    monkeypatch.setattr(online_module, "M_STEPS_PER_PASS", 1)
    rng = np.random.default_rng(4)
    X = blobs(rng, 1200, CENTERS, scale=0.6)
    settings = OnlineSettings(3, retain="window", retain_size=1200, effort=64.0, moves=False)
    online = OnlineEM(settings, 2, seed=0)
    online.update(X[:400])
    online.update(X[400:800])
    online.update(X[800:])
    # Re-scoring the two older blocks under the parameters before the last step, and the
    # newest block scored under them too: the M-step of batch EM from those parameters.
    for _ in range(3):
        params = online.params
        online.rescore_credit = float(len(online.retained))
        online._rescore()
        expected = run_em(X, params, reg_covar=settings.reg_covar, max_iter=1, tol=0.0)
        np.testing.assert_allclose(online.params.means, expected.params.means, rtol=1e-8)
        np.testing.assert_allclose(online.params.covariances, expected.params.covariances,
                                   rtol=1e-7, atol=1e-12)


def test_the_window_forgets_what_left_it():
    rng = np.random.default_rng(5)
    first = blobs(rng, 3000, [[0, 0], [3, 0]], scale=0.4)
    second = blobs(rng, 3000, [[40, 40], [43, 40]], scale=0.4)
    online = OnlineEM(OnlineSettings(2, retain="window", retain_size=1000), 2, seed=0)
    _stream(online, np.vstack([first, second]), 100)
    assert len(online.retained) <= 1000
    assert online.retained.represented <= 1000
    # Nothing of the first place is left in the model.
    assert np.all(online.params.means > 30)


def test_work_is_fixed_by_the_settings():
    """Evaluations per update: the batch, plus re-scoring and moves within the credit."""
    X = lidar_scene(60_000, seed=0)
    online = OnlineEM(OnlineSettings(8), 3, seed=0)
    online.update(X[:2048])
    spent_before = online.work
    bought = 0.0
    for s in range(2048, len(X), 2048):
        batch = X[s:s + 2048]
        represented_after = online.retained.represented + len(batch)
        info = online.update(batch)
        bought += len(batch) * effort_per_point(online.settings.effort, represented_after,
                                                online.novelty)
        assert info.evaluations >= len(batch)
    extra = online.work - spent_before - (len(X) - 2048)
    # Re-scoring stops where its credit does (which never exceeds one pass over the
    # retained points), moves where theirs does: at most what was bought, most of it. A
    # finished candidate's judgement and adoption (two samples and a pass over the scored
    # rows, and the sample its control is refitted on) may overdraw the credit once, repaid
    # before the moves spend again.
    overdraft = (2 * schedule_module.MOVE_POINTS + schedule_module.RESTART_POINTS
                 + online.retained.total_scored)
    assert 0.5 * bought <= extra <= bought + overdraft


def test_a_whole_sweep_step_spends_a_bounded_round_and_its_excess_credit_lapses():
    """A step of many points (a driver's whole sweep in one message) buys more move credit
    than MAX_MOVES_PER_STEP rounds can spend: the step stays bounded and what is left after
    it never exceeds the cost of those rounds, however many such steps come (it would
    otherwise pile up and burst into the steps after them)."""
    sweep = 131_072  # an OS1-64's sweep
    X = lidar_scene(4 * sweep + 2048, seed=1)
    online = OnlineEM(OnlineSettings(16), 3, seed=0)
    online.update(X[:2048])
    bought, spent = [], 0
    for s in range(2048, len(X), sweep):
        batch = X[s:s + sweep]
        represented_after = online.retained.represented + len(batch)
        info = online.update(batch)
        bought.append(len(batch) * effort_per_point(online.settings.effort, represented_after,
                                                    online.novelty))
        cap = online._credit_cap()
        assert online.move_credit <= cap
        # The batch, at most MAX_PASSES passes of re-scoring, the rounds and one overdraft.
        bound = (len(batch) + MAX_PASSES * online.retained.total_scored
                 + 2 * cap + 2 * schedule_module.MOVE_POINTS)
        assert info.evaluations <= bound
        spent += info.evaluations - len(batch)
    # The cap is what bounds them: these steps bought more than they spent by more than it.
    assert sum(bought) - spent > 2 * cap


def test_a_pass_rescores_the_scored_subsample_not_every_retained_row(monkeypatch):
    """Past SCORED_ROWS, a pass of re-scoring costs the scored rows, whatever the retained
    size (a daemon keeps 200,000 rows for its refits), and the memoized statistics are
    those of the scored rows under the current parameters."""
    monkeypatch.setattr(blocks_module, "SCORED_ROWS", 1500)
    monkeypatch.setattr(online_module, "M_STEPS_PER_PASS", 1)
    X = lidar_scene(24_000, seed=2)
    settings = OnlineSettings(4, retain_size=6000, effort=0.0, moves=False)
    online = _stream(OnlineEM(settings, 3, seed=0), X, 2000)
    retained = online.retained
    assert len(retained) > 5900 and 1500 <= retained.total_scored <= 1500 + 32
    params = online.params
    online.rescore_credit = float(retained.total_scored)
    assert online._rescore() == retained.total_scored
    share = retained.scored_share
    parts = [batch_statistics(retained.scored_rows(b, share), params).stats.normalized()
             .scale(b.weight) for b in retained.blocks if len(b)]
    expected = SufficientStats.pool(parts).normalized()
    np.testing.assert_allclose(online.stats.means, expected.means, rtol=1e-9)


def test_an_accepted_move_is_adopted_as_it_was_judged(monkeypatch):
    """A birth or split is judged as the model with the move settled on a sample, against
    the model without it settled the same way; accepted, the model judged is the one
    adopted: every block with rows is re-scored under it (so no point counts twice, in a
    newborn and in the component that explained it), no block without rows is left, and
    the model is the M-step of those statistics (not the sample's fit itself)."""
    proposals, accepted = [], []
    propose = schedule_module.propose_move

    def record_proposal(*args, **kwargs):
        proposals.append(propose(*args, **kwargs))
        return proposals[-1]

    try_move = schedule_module.MoveSchedule._try_move

    def record(self, split=False):
        clock = self.clock
        ok, cost = try_move(self, split)
        if ok:
            assert all(len(b) and b.scored_at > clock for b in self.retained.blocks)
            assert self.params is not proposals[-1].params
            np.testing.assert_allclose(self.params.means, self.stats.means, rtol=1e-12)
            assert cost >= proposals[-1].evaluations + self.retained.total_scored
            accepted.append(proposals[-1].gain)
        else:
            assert not proposals[-1].gain > schedule_module.MOVE_GAIN
        return ok, cost

    monkeypatch.setattr(schedule_module, "propose_move", record_proposal)
    monkeypatch.setattr(schedule_module.MoveSchedule, "_try_move", record)
    X = lidar_scene(60_000, seed=3)
    online = _stream(OnlineEM(OnlineSettings(8), 3, seed=0), X, 2048)
    assert accepted and min(accepted) > schedule_module.MOVE_GAIN
    assert online.n_moves >= len(accepted)


def test_refine_candidates_alternate_with_restarts(monkeypatch):
    """The candidate cycle: EM run ahead from the model ("refine"), then a fresh k-means
    start ("restart"), each judged on an independent sample."""
    judged = []
    judge = schedule_module.MoveSchedule._judge_candidate

    def record(self):
        judged.append(self.candidate["target"])
        return judge(self)

    monkeypatch.setattr(schedule_module.MoveSchedule, "_judge_candidate", record)
    X = lidar_scene(60_000, seed=3)
    online = _stream(OnlineEM(OnlineSettings(8), 3, seed=0), X, 2048)
    assert len(judged) >= 3
    kinds = [schedule_module.REFINE_ITER, schedule_module.RESTART_ITER]
    assert judged == [kinds[i % 2] for i in range(len(judged))]
    assert online.n_restart_trials == len(judged)


def test_textbook_spends_one_evaluation_per_point():
    X = lidar_scene(20_000, seed=1)
    online = OnlineEM(OnlineSettings(8, **TEXTBOOK), 3, seed=0)
    online.update(X[:1000])
    before = online.work
    _stream(online, X[1000:], 1000)
    assert online.work - before == len(X) - 1000
    assert online.n_moves == online.n_move_trials == online.n_reseeded == 0


def test_same_batches_and_seed_give_the_same_model_bit_for_bit():
    X = lidar_scene(40_000, seed=2)
    runs = [_stream(OnlineEM(OnlineSettings(8), 3, seed=5), X, 1500) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].params.means, runs[1].params.means)
    np.testing.assert_array_equal(runs[0].params.covariances, runs[1].params.covariances)
    assert runs[0].work == runs[1].work
    other = _stream(OnlineEM(OnlineSettings(8), 3, seed=6), X, 1500)
    assert not np.array_equal(other.params.means, runs[0].params.means)


def test_moves_fire_on_ordered_data_and_follow_it():
    """A LiDAR sweep in azimuth order: moves carry components to where the stream went."""
    X = lidar_scene(60_000, seed=3)
    online = _stream(OnlineEM(OnlineSettings(12), 3, seed=0), X, 2048)
    assert online.n_moves >= 2 and online.n_move_trials >= online.n_moves
    textbook = _stream(OnlineEM(OnlineSettings(12, **TEXTBOOK), 3, seed=0), X, 2048)
    test = lidar_scene(10_000, seed=4)

    def score(p):
        return float(np.mean(estimate_log_prob_resp(test, p)[0]))

    assert score(online.params) > score(textbook.params) + 0.5


@pytest.mark.parametrize("batch", [1, 64])
def test_dead_components_are_reseeded_and_counted(batch):
    rng = np.random.default_rng(6)
    X = blobs(rng, 3000, [[0.0, 0.0], [6.0, 0.0]], scale=0.3)
    online = OnlineEM(OnlineSettings(3), 2, seed=0)
    online.update(X[:300])
    # Starve component 0: move it far away, where no point will ever be.
    p = online.params
    means = p.means.copy()
    means[0] = [500.0, 500.0]
    online.adopt(MixtureParams.from_covariances(p.weights, means, p.covariances, "full"))
    for s in range(300, 1500, batch):
        online.update(X[s:s + batch])
    # Re-seeded, or freed by a merge and born where the data is.
    assert online.n_reseeded + online.n_moves >= 1
    assert np.all(np.abs(online.params.means) < 50)


def test_adopt_rescores_the_retained_points():
    rng = np.random.default_rng(7)
    X = blobs(rng, 2000, CENTERS, scale=0.4)
    online = _stream(OnlineEM(OnlineSettings(3), 2, seed=0), X, 250)
    fitted = run_em(online.retained.points, online.params, reg_covar=1e-6, max_iter=50).params
    online.adopt(fitted)
    assert online.params is fitted
    expected = batch_statistics(online.retained.points, fitted).stats
    # The memoized sum is now the retained points' statistics under the adopted model
    # (a reservoir: each block's rows stand for their batch).
    np.testing.assert_allclose(online.stats.means, expected.means, atol=0.05)


def test_a_loaded_prior_weighs_as_many_points_as_stated():
    rng = np.random.default_rng(8)
    X = blobs(rng, 1000, [[0.0, 0.0], [6.0, 0.0]], scale=0.3)
    prior = MixtureParams.from_covariances(np.array([0.5, 0.5]), np.array([[0.0, 0.0],
                                           [9.0, 0.0]]), np.stack([np.eye(2)] * 2), "full")
    light, heavy = (OnlineEM(OnlineSettings(2, moves=False), 2, seed=0) for _ in range(2))
    light.start(prior, prior_points=10)
    heavy.start(prior, prior_points=1e6)
    _stream(light, X, 100)
    _stream(heavy, X, 100)
    # Light prior: the data (at 0 and 6) moved the second component; heavy: it stays at 9.
    assert light.params.means[:, 0].max() < 6.5
    assert heavy.params.means[:, 0].max() > 8.5


@pytest.mark.parametrize("retain", ["reservoir", "window"])
@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_state_round_trip_resumes_bit_for_bit(retain, ctype):
    X = lidar_scene(30_000, seed=9)
    settings = OnlineSettings(6, covariance_type=ctype, retain=retain, retain_size=5000)
    a = _stream(OnlineEM(settings, 3, seed=1), X[:15_000], 1000)
    b = OnlineEM.from_state(a.to_state())
    _stream(a, X[15_000:], 1000)
    _stream(b, X[15_000:], 1000)
    np.testing.assert_array_equal(a.params.means, b.params.means)
    np.testing.assert_array_equal(a.params.covariances, b.params.covariances)
    assert a.work == b.work and a.n_moves == b.n_moves


def test_a_state_of_the_old_format_is_refused_with_one_line():
    with pytest.raises(ValueError, match="written by an earlier streamgmm"):
        OnlineEM.from_state({"settings": {}, "n_features": 2})


@pytest.mark.parametrize("change, message", [
    ({"effort": -1.0}, "effort"),
    ({"effort": 100.0}, "effort"),
    ({"moves": "yes"}, "moves"),
    ({"retain": "all"}, "retain"),
    ({"retain_size": 2}, "retain_size"),
    ({"step_decay": 0.4}, "step_decay"),
    ({"step_constant": 0.0}, "step_constant"),
])
def test_settings_are_checked(change, message):
    settings = dataclasses.replace(OnlineSettings(3), **change)
    with pytest.raises(ValueError, match=message):
        OnlineEM(settings, 2)


# ---------------------------------------------------------------- represented (thinned batches)


def _started(seed=0, **settings):
    rng = np.random.default_rng(seed)
    online = OnlineEM(OnlineSettings(3, **settings), 2, seed=seed)
    online.update(blobs(rng, 600, CENTERS))
    return online, rng


def test_represented_counts_the_points_a_subset_stands_for():
    """update(X[::4], represented=len(X)) moves n_seen and the step as update(X) would."""
    for settings in ({}, TEXTBOOK):
        full, rng = _started(**settings)
        thin, _ = _started(**settings)
        for _ in range(5):
            X = blobs(rng, 400, CENTERS)
            a = full.update(X)
            b = thin.update(X[::4], represented=len(X))
            assert thin.n_seen == full.n_seen
            assert b.step == a.step  # the schedule counts the 400, not the 100 rows
            assert thin.retained.blocks[-1].points == 400.0
        assert thin.retained.n_offered == full.retained.n_offered
        # The step of a subset counted as itself would be 4 times smaller (eta = m / n).
        alone, _ = _started(**settings)
        for _ in range(5):
            alone.update(blobs(rng, 100, CENTERS))
        assert alone.n_seen == full.n_seen - 5 * 300


def test_represented_effort_stays_per_absorbed_row(monkeypatch):
    """The re-scoring credit a thinned batch buys is per row absorbed, not represented."""
    monkeypatch.setattr(online_module, "effort_per_point", lambda *args: 3.0)
    online, rng = _started(effort=1.0, moves=False)
    X = blobs(rng, 400, CENTERS)
    for represented in (None, 400, 4000):
        before = online.rescore_credit
        info = online.update(X[:100], represented=represented)
        # credit after = credit before + bought - re-scored rows (evaluations - the 100 new)
        bought = online.rescore_credit - before + (info.evaluations - 100)
        assert bought == pytest.approx(3.0 * 100)


def test_represented_default_is_bit_identical_and_checked():
    a, rng = _started()
    b, _ = _started()
    for _ in range(4):
        X = blobs(rng, 300, CENTERS)
        a.update(X)
        b.update(X, represented=len(X))
    np.testing.assert_array_equal(a.params.means, b.params.means)
    np.testing.assert_array_equal(a.params.covariances, b.params.covariances)
    assert a.n_seen == b.n_seen and a.work == b.work
    with pytest.raises(ValueError, match="represented"):
        a.update(X, represented=len(X) - 1)
    with pytest.raises(ValueError, match="represented"):
        a.update(X, represented=float("nan"))


def test_represented_thinned_stream_stays_near_the_full_one():
    """Half of every batch, weighted for all of it: the same mixture, up to sampling noise."""
    full, rng = _started()
    thin, _ = _started()
    pick = np.random.default_rng(9)
    for _ in range(20):
        X = blobs(rng, 500, CENTERS)
        full.update(X)
        thin.update(X[np.sort(pick.choice(len(X), 250, replace=False))], represented=len(X))
    order = lambda p: p.means[np.lexsort(p.means.T)]  # noqa: E731
    np.testing.assert_allclose(order(thin.params), order(full.params), atol=0.1)
