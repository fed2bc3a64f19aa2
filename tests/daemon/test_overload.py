"""Thinning under overload: the rule (pure), its wiring in the loop (no sockets), and a real
daemon flooded (thins, keeps its ledger exact, answers status) or fed slowly (thins nothing).
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from streamgmm import codec
from streamgmm.daemon import service as service_module
from streamgmm.daemon.overload import PointCost, keep_fraction, thin
from streamgmm.daemon.service import Service
from tests.helpers.service import in_process_service

# ------------------------------------------------------------------------------ the rule


def test_keep_fraction_never_thins_a_backlog_within_budget():
    assert keep_fraction(10_000, 0, 1e-5, 0.1) == 1.0  # 0.1 s of work: exactly the budget
    assert keep_fraction(4_000, 6_000, 1e-5, 0.1) == 1.0  # with what waits: still 0.1 s
    assert keep_fraction(1, 0, 1.0, 0.1) < 1.0
    assert keep_fraction(0, 10**9, 1.0, 0.1) == 1.0  # nothing arriving


def test_keep_fraction_fills_the_room_left_in_the_budget():
    for incoming, waiting, spp, budget in [(40_000, 0, 1e-5, 0.1), (30_000, 4_000, 1e-5, 0.1),
                                           (1_000_000, 10_000, 2e-6, 0.05), (5, 1, 0.1, 0.2)]:
        keep = keep_fraction(incoming, waiting, spp, budget)
        assert 0 < keep < 1
        assert (waiting + keep * incoming) * spp == pytest.approx(budget)
    # A full (or overfull) budget keeps nothing beyond thin's one row per message.
    assert keep_fraction(100, 10_000, 1e-5, 0.1) == 0.0
    assert keep_fraction(100, 50_000, 1e-5, 0.1) == 0.0


def test_keep_fraction_settles_at_what_the_model_absorbs():
    """Sustained overload: 3x what the model absorbs arrives; the backlog stays at the budget
    and keep settles at 1/3 (a simulation of turns: admit, then absorb a turn's worth)."""
    spp, budget, turn_s = 1e-5, 0.1, 0.01
    absorbed_per_turn, arriving_per_turn = turn_s / spp, 3 * turn_s / spp
    waiting, keeps = 0.0, []
    for _ in range(200):
        keep = keep_fraction(int(arriving_per_turn), int(waiting), spp, budget)
        waiting += keep * arriving_per_turn
        waiting = max(0.0, waiting - absorbed_per_turn)
        keeps.append(keep)
    assert waiting * spp <= budget
    assert np.mean(keeps[-50:]) == pytest.approx(1 / 3, rel=0.05)


def test_keep_fraction_off_or_unmeasured_keeps_everything():
    assert keep_fraction(10**9, 0, 1e-3, 0.0) == 1.0  # overload_budget_s = 0: never
    for unknown in (float("nan"), 0.0, -1.0, math.inf):
        assert keep_fraction(10**9, 0, unknown, 0.1) == 1.0


def test_thin_is_a_seeded_ordered_uniform_subset():
    X = np.arange(1000.0).reshape(500, 2)
    a = thin(X, 0.25, np.random.default_rng(3))
    b = thin(X, 0.25, np.random.default_rng(3))
    assert len(a) == 125 and np.array_equal(a, b)
    assert np.all(np.diff(a[:, 0]) > 0)  # rows keep their order
    assert set(map(tuple, a)) <= set(map(tuple, X))
    assert thin(X, 1.0, np.random.default_rng(0)) is X
    assert len(thin(X, 1e-9, np.random.default_rng(0))) == 1  # at least one row
    # Uniform: over many draws every row is kept about keep of the time.
    rng = np.random.default_rng(0)
    hits = np.zeros(500)
    for _ in range(400):
        hits[(thin(X, 0.5, rng)[:, 0] // 2).astype(int)] += 1
    assert np.all(np.abs(hits / 400 - 0.5) < 0.15)


def test_point_cost_is_seconds_over_rows_of_recent_steps():
    cost = PointCost()
    assert math.isnan(cost.seconds_per_point)
    cost.observe(0.01, 1000)
    assert cost.seconds_per_point == pytest.approx(1e-5)
    for _ in range(40):  # the load doubles the cost: the estimate follows within steps
        cost.observe(0.02, 1000)
    assert cost.seconds_per_point == pytest.approx(2e-5, rel=1e-3)
    cost.observe(float("nan"), 10)
    cost.observe(1.0, 0)
    assert cost.seconds_per_point == pytest.approx(2e-5, rel=1e-3)


# ------------------------------------------------------------------ the loop, no sockets


def _service(**model) -> Service:
    return in_process_service(**model)


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]], dtype=float)
    return rng.normal(centres[rng.integers(0, 4, n)], 0.5)


def test_backlog_over_budget_is_thinned_counted_and_represented():
    service = _service(overload_budget_s=0.1)
    model = service.models[0]
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])  # seeds the model
    assert model.fitted and model.points_thinned == 0
    # A cost the rule can use (as measured steps would leave it): 1 ms per point, so a
    # backlog of 8 x 500 rows would take 4 s against a budget of 0.1 s: keep 1/40.
    model.cost.seconds, model.cost.points = 1.0, 1000.0
    parts = [(_blobs(500, 1 + i), 2.0 + i, f"f{i}") for i in range(8)]
    service._absorb_backlog(model, parts)
    kept = 8 * math.ceil(500 / 40)
    assert model.points_thinned == service.counters.points_thinned == 4000 - kept
    # n_seen counts every point received: the subsets stood for their messages.
    assert model.n_seen == 6000
    assert model.estimator.online_.retained.blocks[-1].points == 4000.0
    assert model.last_stamp == 9.0 and service.frames[0] == "f7"


def test_backlog_within_budget_or_budget_off_is_not_thinned():
    for budget, spp in [(0.1, 1e-6), (0.0, 1.0)]:
        service = _service(overload_budget_s=budget)
        model = service.models[0]
        service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
        model.cost.seconds, model.cost.points = spp * 1000, 1000.0
        service._absorb_backlog(model, [(_blobs(500, 1 + i), 2.0, "") for i in range(8)])
        assert model.points_thinned == service.counters.points_thinned == 0
        assert model.n_seen == 6000


def test_admission_counts_the_rows_already_waiting():
    """The rule weighs the whole backlog: what waits from earlier turns thins the new."""
    service = _service(overload_budget_s=0.1)
    model = service.models[0]
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
    model.cost.seconds, model.cost.points = 1e-5, 1.0  # 10 us per point: 10,000 in 0.1 s
    service._admit(model, [(_blobs(5000, 1), 2.0, "")])
    assert model.backlog_rows == 5000 and model.points_thinned == 0  # 0.05 s: kept whole
    service._admit(model, [(_blobs(15_000, 2), 3.0, "")])
    # Room for 5,000 more rows in 0.1 s: the new message keeps a third of its rows.
    assert model.backlog_rows == 10_000 and model.points_thinned == 10_000
    service._admit(model, [(_blobs(300, 3), 4.0, "") for _ in range(3)])
    # The budget is full: a row per message.
    assert model.backlog_rows == 10_003 and model.points_thinned == 10_000 + 897
    service._admit(model, [service_module._STREAM_END])  # closes the last step
    service._absorb_backlogs(seconds=60.0)
    assert not model.backlog and model.backlog_rows == 0 and model.n_seen == 22_900


def test_per_message_model_coalesces_only_thinned_messages():
    """publish_every_s = 0: a step per message, except thinned ones (coalesced)."""
    service = _service(publish_every_s=0.0, overload_budget_s=0.1)
    published = []
    service.transport = SimpleNamespace(publish=lambda topic, payload: published.append(1))
    model = service.models[0]
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
    updates = model.estimator.online_.n_updates
    service._absorb_backlog(model, [(_blobs(100, 1 + i), 2.0, "") for i in range(4)])
    assert model.estimator.online_.n_updates == updates + 4  # kept whole: one step each
    model.cost.seconds, model.cost.points = 1.0, 1000.0
    service._absorb_backlog(model, [(_blobs(100, 5 + i), 2.0, "") for i in range(4)])
    assert model.points_thinned > 0
    assert model.estimator.online_.n_updates == updates + 5  # thinned: one step in all
    assert model.n_seen == 2800 and len(published) == 1 + 4 + 1


def test_thinning_is_seeded_by_the_model():
    """Same batches, seed and decisions: the same model, bit for bit."""
    models = []
    for _ in range(2):
        service = _service(overload_budget_s=1.0)
        model = service.models[0]
        service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
        model.cost.seconds, model.cost.points = 1e-3, 10.0
        for turn in range(3):
            service._absorb_backlog(model, [(_blobs(400, 10 * turn + i), 2.0, "")
                                            for i in range(5)])
        models.append(model.estimator)
    np.testing.assert_array_equal(models[0].means_, models[1].means_)
    np.testing.assert_array_equal(models[0].covariances_, models[1].covariances_)


def test_unfitted_model_is_never_thinned():
    service = _service(components=8, overload_budget_s=1.0)
    model = service.models[0]
    model.cost.seconds, model.cost.points = 10.0, 1.0  # absurdly slow, but no parameters
    service._absorb_backlog(model, [(_blobs(3, i), 1.0, "") for i in range(2)])
    assert not model.fitted and model.points_thinned == 0


# ------------------------------------------------------------------------- real daemons

FLOODED = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 8,
           "publish_every_s": 0.05, "refit_every_s": 0.0,
           # A budget no machine absorbs a 4,096-point message in (0.1 ms): every turn
           # after the first measured step thins, however fast or loaded the machine is.
           "overload_budget_s": 0.0001}


def test_flooded_daemon_thins_keeps_its_ledger_and_answers(daemon_factory):
    d = daemon_factory([FLOODED])
    sent = 150
    X = _blobs(4096 * 4, 0)
    answered = 0
    for i in range(sent):
        if i == 2:
            # Message 0 seeded the model and message 1 was its first measured step: from
            # here on every turn can thin. (Sent at once, a loaded daemon may read the
            # whole flood in its first turns, before it has parameters to thin with.)
            d.wait_for(lambda s: math.isfinite(s["models"]["lidar"]["seconds_per_point"]),
                       timeout=30)
        d.send("points/lidar", X[(i % 4) * 4096:(i % 4 + 1) * 4096])
        if i % 50 == 49:  # status answers in the middle of the flood
            assert d.request(op="status", timeout=10.0)["ok"] is True
            answered += 1
    status = d.wait_for(
        lambda s: s["counters"]["messages_received"] + s["counters"]["messages_lost"] >= sent,
        timeout=60)
    c, m = status["counters"], status["models"]["lidar"]
    assert answered == 3
    # Every message is accounted for: applied, rejected or lost.
    assert c["messages_applied"] + sum(c["rejected"].values()) + c["messages_lost"] == sent
    assert c["points_applied"] == 4096 * c["messages_applied"]
    assert 0 < m["points_thinned"] == c["points_thinned"] < c["points_applied"]
    # ... and so does the source that sent them (its one model thinned them).
    source = d.request(op="source", source="test")
    assert source["points_thinned"] == c["points_thinned"]
    assert source["points_applied"] == c["points_applied"]
    # The model counts every point of the applied messages: the subsets stood for them.
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == c["points_applied"], timeout=30)
    assert m["seconds_per_point"] > 0
    metrics_keys = set(d.status()["models"]["lidar"])
    assert {"points_thinned", "seconds_per_point"} <= metrics_keys
    assert d.stop() == 0


def test_daemon_that_keeps_up_thins_nothing(daemon_factory):
    """A tenth of the default budget (0.1 s), 200-point messages 20 ms apart: far below what
    it absorbs, even on a loaded machine."""
    d = daemon_factory([dict(FLOODED, overload_budget_s=0.1, components=4)])
    for i in range(40):
        d.send("points/lidar", _blobs(200, i))
        time.sleep(0.02)
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 8000, timeout=30)
    assert status["models"]["lidar"]["points_thinned"] == 0
    assert status["counters"]["points_thinned"] == 0
    assert status["counters"]["messages_applied"] == 40
    assert status["models"]["lidar"]["backlog_points"] == 0
    assert d.stop() == 0


def test_thinning_generator_survives_a_checkpoint():
    from streamgmm.daemon.checkpoint import decode_state, encode_state

    service = _service()
    model = service.models[0]
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
    model.thin_rng.random(7)  # some thinning happened
    state = decode_state(encode_state(model.state(seq_lease=0)))
    again = _service().models[0]
    again.restore(state)
    assert again.thin_rng.random() == model.thin_rng.random()
    # A checkpoint of an earlier version (no thin_rng) starts from the seed's stream.
    del state["thin_rng"]
    fresh = _service().models[0]
    fresh.restore(state)
    assert fresh.thin_rng.random() == _service().models[0].thin_rng.random()


def _queue(service: Service, messages: list[np.ndarray]) -> list:
    """A fake ingest socket holding ``messages`` (seq 0, 1, ...) and the end marker that
    closes the last step, as the loop reads them."""
    queued = [[b"points/lidar", codec.encode_points(X, seq=i, stamp=1.0)]
              for i, X in enumerate(messages)]
    queued.append([b"points/lidar", codec.encode_points(
        np.empty((0, 3)), seq=len(messages), stamp=1.0, end=True, first_seq=0)])
    service.transport = SimpleNamespace(
        recv_points=lambda: queued.pop(0) if queued else None,
        publish=lambda topic, payload: None)
    return queued


@pytest.mark.parametrize("publish_every_s", [0.05, 0.0])
def test_a_turn_reads_ahead_of_what_it_absorbs(publish_every_s, monkeypatch):
    """Without a budget a turn still reads every queued message (up to _DRAIN_MESSAGES)
    into the backlog, so a burst leaves ZeroMQ's queue (which drops at its high-water mark),
    and absorbs only about _ABSORB_SECONDS of it: control waits for one slice, not the
    burst. Every message is absorbed in the end, in order, and none is lost."""
    monkeypatch.setattr(service_module, "_DRAIN_MESSAGES", 256)
    monkeypatch.setattr(service_module, "_DRAIN_SECONDS", 60.0)  # a busy machine reads slowly
    service = _service(publish_every_s=publish_every_s)
    model = service.models[0]
    queued = _queue(service, [_blobs(20, 1 + i) for i in range(300)])
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
    service._drain_ingest()
    assert service.last_drain == 256 and len(queued) == 44 + 1  # the end marker
    assert len(model.backlog) == 256 and model.backlog_rows == 256 * 20
    started = time.monotonic()
    service._absorb_backlogs(seconds=0.0)  # a slice: one step, the rest waits
    assert time.monotonic() - started < 5.0
    assert 0 < len(model.backlog) < 256
    for _ in range(400):
        service._drain_ingest()
        service._absorb_backlogs()
        if not model.backlog and not queued:
            break
    assert model.n_seen == 2000 + 300 * 20 and model.backlog_rows == 0
    assert service.counters.messages_lost == 0
    assert service.counters.messages_applied == 300


def test_reading_pauses_at_max_backlog_points(monkeypatch):
    """A model's backlog holds about max_backlog_points rows: past them reading pauses
    (ZeroMQ's queue holds the rest), and resumes once the model absorbed some."""
    monkeypatch.setattr(service_module, "_DRAIN_SECONDS", 60.0)
    service = _service(max_backlog_points=100)
    model = service.models[0]
    service._absorb_backlog(model, [(_blobs(2000, 0), 1.0, "")])
    queued = _queue(service, [_blobs(30, 1 + i) for i in range(10)])
    service._drain_ingest()
    assert service.last_drain == 4 and model.backlog_rows == 120 and len(queued) == 6 + 1
    service._drain_ingest()  # full: nothing read
    assert service.last_drain == 0 and len(queued) == 6 + 1
    service._absorb_backlogs(seconds=60.0)
    assert model.backlog_rows == 0
    service._drain_ingest()
    assert service.last_drain == 4 and len(queued) == 2 + 1
