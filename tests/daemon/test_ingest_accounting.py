"""Per-model range limits (min_range, max_range) and per-source accounting: the ``source``
request and end-of-stream markers, on the real daemon over ipc://."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from streamgmm import codec
from streamgmm.daemon.accounting import SourceTracker
from streamgmm.daemon.service import drop_outside_range

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 2,
         "publish_every_s": 0.0, "refit_every_s": 0.0, "min_range": 1.0, "max_range": 50.0}


def ranged(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3))
    return xyz * (rng.uniform(0.1, 80.0, size=(n, 1)) / np.linalg.norm(xyz, axis=1,
                                                                       keepdims=True))


def test_drop_outside_range_counts_near_and_far() -> None:
    X = ranged(500)
    r = np.linalg.norm(X, axis=1)
    kept, below, beyond = drop_outside_range(X, 1.0, 50.0)
    assert below == int((r < 1).sum()) and beyond == int((r > 50).sum())
    np.testing.assert_array_equal(kept, X[(r >= 1) & (r <= 50)])
    assert drop_outside_range(X, 0.0, 0.0)[0] is X  # 0: no limit
    flat = X[:, :2]  # 2-D points: the range of x, y
    assert drop_outside_range(flat, 0.0, 10.0)[2] == int((np.linalg.norm(flat, axis=1) > 10)
                                                         .sum())


def test_a_small_min_range_drops_a_drivers_no_return_rows() -> None:
    # docs/protocol.md, min_range: no-return rows (x = y = z = 0) lie at range 0, so any
    # min_range > 0 drops them; extra columns (intensity) do not count in the range.
    X = np.column_stack([ranged(300, seed=3), np.arange(300.0)])
    X[::3, :3] = 0.0
    kept, below, beyond = drop_outside_range(X, 0.3, 0.0)
    assert (below, beyond) == (100, 0)
    np.testing.assert_array_equal(kept, np.delete(X, np.s_[::3], axis=0))


def test_a_model_drops_and_counts_rows_out_of_its_range(daemon_factory) -> None:
    other = {**MODEL, "name": "all", "min_range": 0.0, "max_range": 0.0}
    d = daemon_factory([MODEL, other])
    X = ranged(600, seed=1)
    r = np.linalg.norm(X, axis=1)
    inside = int(((r >= 1) & (r <= 50)).sum())
    for part in np.array_split(X, 3):
        d.send("points/lidar", part, source="ranger")
    status = d.wait_for(lambda s: s["models"]["all"]["n_seen"] == 600)
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == inside)
    lidar = status["models"]["lidar"]
    assert lidar["rows_below_min_range"] == int((r < 1).sum())
    assert lidar["rows_beyond_max_range"] == int((r > 50).sum())
    assert (lidar["min_range"], lidar["max_range"]) == (1.0, 50.0)
    assert status["models"]["all"]["rows_below_min_range"] == 0
    assert status["counters"]["messages_applied"] == 3
    # every row of a message out of range: the message changes nothing, rejected as empty
    d.stop()
    d = daemon_factory([MODEL])
    d.send("points/lidar", np.full((5, 3), 100.0), source="far")
    status = d.wait_for(lambda s: s["counters"]["rejected"].get("empty") == 1)
    assert status["models"]["lidar"]["rows_beyond_max_range"] == 5
    reply = d.request(op="source", source="far")
    assert (reply["messages_received"], reply["messages_rejected"]) == (1, 1)


def test_source_request_reports_applied_rejected_and_lost(daemon_factory) -> None:
    d = daemon_factory()
    unknown = d.request(op="source", source="robot1")
    assert (unknown["ok"], unknown["source"], unknown["known"]) == (True, "robot1", False)
    assert (unknown["messages_applied"], unknown["last_seq"], unknown["end_seq"]) == (0, -1, -1)
    points = np.random.default_rng(0).normal(size=(20, 3))
    d.send("points/lidar", points, source="robot1", seq=0)
    d.send("points/lidar", points[:, :2], source="robot1", seq=1)  # rejected: dim
    d.send("points/lidar", points, source="robot1", seq=4)  # 2 and 3 lost
    d.send_raw([b"points/lidar", codec.encode_points(np.empty((0, 3)), seq=5, stamp=1.0,
                                                     source="robot1", end=True, first_seq=0)])
    reply = d.wait_for(lambda s: s["counters"].get("end_markers") == 1) and d.request(
        op="source", source="robot1")
    assert reply["known"] is True
    assert {k: reply[k] for k in ("messages_received", "messages_applied", "points_applied",
                                  "messages_rejected", "messages_lost", "end_seq", "last_seq")
            } == {"messages_received": 3, "messages_applied": 2, "points_applied": 40,
                  "messages_rejected": 1, "messages_lost": 2, "end_seq": 5, "last_seq": 5}
    counters = d.status()["counters"]
    assert counters["messages_received"] == 3  # the marker is not a point message
    assert counters["messages_lost"] == 2
    assert d.request(op="source")["ok"] is False  # a source must be named


def test_a_marker_counts_a_run_whose_messages_were_all_dropped(daemon_factory) -> None:
    d = daemon_factory()
    # A new publisher sent seq 0..6, every one dropped before the daemon (a stall, a slow
    # joiner); only its marker arrives: no seq gap could show those 7 losses.
    d.send_raw([b"points/lidar", codec.encode_points(np.empty((0, 3)), seq=7, stamp=1.0,
                                                     source="ghost", end=True, first_seq=0)])
    status = d.wait_for(lambda s: s["counters"].get("end_markers") == 1)
    assert status["counters"]["messages_lost"] == 7
    assert status["counters"]["messages_received"] == 0
    reply = d.request(op="source", source="ghost")
    assert (reply["messages_lost"], reply["messages_applied"], reply["end_seq"]) == (7, 0, 7)


def test_tracker_marker_after_a_restart_counts_the_new_run() -> None:
    tracker = SourceTracker()
    for seq in range(10):
        tracker.observe("p", seq)
    # the publisher restarted at 0, its 3 messages were dropped, the marker came (seq 3)
    lost, restarted = tracker.observe_end("p", 3, 0)
    assert (lost, restarted) == (3, True)
    stats = tracker.stats("p")
    assert (stats.messages_received, stats.messages_lost, stats.restarts) == (10, 3, 1)


def test_marker_with_points_is_a_schema_error() -> None:
    payload = codec.encode_points(np.empty((0, 3)), seq=1, stamp=1.0, end=True)
    assert codec.decode_points(payload).end
    raw = codec.encode_points(np.ones((2, 3)), seq=1, stamp=1.0)
    import msgpack

    msg = msgpack.unpackb(raw)
    msg["end"] = True
    with pytest.raises(codec.DecodeError) as info:
        codec.decode_points(msgpack.packb(msg))
    assert info.value.reason == "schema"
    with pytest.raises(ValueError, match="no points"):
        codec.encode_points(np.ones((2, 3)), seq=1, stamp=1.0, end=True)


def test_first_start_says_there_is_no_checkpoint_yet(daemon_factory, tmp_path) -> None:
    d = daemon_factory([dict(MODEL, checkpoint=str(tmp_path / "state" / "lidar.ckpt"))])
    log = d.log()
    assert "no checkpoint yet at" in log and "none usable" not in log
    assert " WARNING " not in log


def _points_payload(seq: int, source: str, **changes) -> bytes:
    """A point message of ``source`` whose fields ``changes`` replace (to break a rule)."""
    fields = msgpack.unpackb(codec.encode_points(np.zeros((4, 3)), seq=seq, stamp=1.0,
                                                 source=source))
    fields.update(changes)
    return msgpack.packb(fields)


def test_a_rejected_message_is_not_also_counted_lost(daemon_factory) -> None:
    d = daemon_factory()
    points = ranged(20, seed=1)
    d.send("points/lidar", points, source="bad", seq=0)
    good = msgpack.unpackb(codec.encode_points(points, seq=1, stamp=1.0, source="bad"))
    wrong_dtype = dict(good["points"], dtype="<i4")
    d.send_raw([b"points/lidar", _points_payload(1, "bad", points=wrong_dtype)])
    wrong_size = dict(good["points"], data=good["points"]["data"][:-8])
    d.send_raw([b"points/lidar", _points_payload(2, "bad", points=wrong_size)])
    d.send("points/lidar", points, source="bad", seq=3)
    status = d.wait_for(lambda s: s["counters"]["messages_received"] == 4)
    counters = status["counters"]
    assert counters["rejected"] == {"dtype": 1, "size": 1}
    assert (counters["messages_applied"], counters["messages_lost"]) == (2, 0)
    reply = d.request(op="source", source="bad")
    assert {k: reply[k] for k in ("messages_received", "messages_applied", "messages_rejected",
                                  "messages_lost", "last_seq")} == {
        "messages_received": 4, "messages_applied": 2, "messages_rejected": 2,
        "messages_lost": 0, "last_seq": 3}


def test_decode_error_carries_the_seq_and_source_it_read() -> None:
    payload = _points_payload(7, "lidar-front", stamp="yesterday")
    with pytest.raises(codec.DecodeError) as caught:
        codec.decode_points(payload)
    assert (caught.value.reason, caught.value.seq, caught.value.source) == (
        "schema", 7, "lidar-front")
    with pytest.raises(codec.DecodeError) as caught:  # no seq to read
        codec.decode_points(msgpack.packb({"v": 1, "stamp": 1.0}))
    assert caught.value.seq is None


def test_tracker_caps_what_a_seq_jump_or_a_marker_can_count_lost() -> None:
    tracker = SourceTracker()
    tracker.observe("p", 0)
    # A jump of 2**32 messages or more is another numbering, not that many losses.
    assert tracker.observe("p", 2**32 + 1) == (0, True)
    assert tracker.observe("p", 2**32 + 3) == (1, False)
    # A new source's marker whose run would span 2**62 messages counts none lost.
    assert tracker.observe_end("q", 2**62, 0) == (0, False)
    assert tracker.observe_end("r", 5, 0) == (5, False)


def test_tracker_tells_a_copy_from_a_restart() -> None:
    tracker = SourceTracker()
    assert not tracker.is_copy("p", 0, 1.0)  # a source never seen
    tracker.observe("p", 0, 1.0)
    tracker.observe("p", 1, 1.1)
    assert tracker.is_copy("p", 1, 1.1)  # the same message again
    assert not tracker.is_copy("p", 1, 2.5)  # the same seq, stamped anew: a restart
    assert not tracker.is_copy("p", 0, 1.0)  # an older message: seq goes back, a restart
    assert tracker.observe("p", 1, 2.5) == (0, True)
    stats = tracker.stats("p")
    assert (stats.messages_received, stats.duplicates, stats.restarts) == (4, 1, 1)
    assert "last_stamp" not in stats.as_dict()


def test_a_copy_of_a_message_is_rejected_not_applied_twice(daemon_factory) -> None:
    d = daemon_factory()
    points = np.random.default_rng(0).normal(size=(20, 3))
    for seq, stamp in ((0, 1.0), (1, 1.1), (1, 1.1), (2, 1.2), (2, 1.2), (2, 1.2)):
        d.send("points/lidar", points, source="proxy", seq=seq, stamp=stamp)
    d.send("points/lidar", points, source="proxy", seq=0, stamp=9.0)  # a restart
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 80)
    c = status["counters"]
    assert c["rejected"] == {"dup": 3} and c["messages_received"] == 7
    assert (c["messages_applied"], c["publisher_restarts"], c["messages_lost"]) == (4, 1, 0)
    reply = d.request(op="source", source="proxy")
    assert (reply["duplicates"], reply["messages_rejected"], reply["restarts"]) == (3, 3, 1)
    assert reply["messages_received"] == reply["messages_applied"] + reply["messages_rejected"]
