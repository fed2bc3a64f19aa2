"""Tests of the clients against fake daemons made of the codec and plain zmq sockets.

Every wait is bounded in time; every socket is closed with linger 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from streamgmm import GaussianMixture, codec
from streamgmm.client import (
    ControlClient,
    ControlError,
    CurveKeys,
    Mixture,
    MixtureSubscriber,
    PointPublisher,
)
from tests.helpers.fakes import (
    MODEL,
    TOPIC,
    SubCollector,
    _id,
    bound_socket,
    snapshot_handler,
    update_payload,
    wait_subscribed,
)

# ---------------------------------------------------------------------------------------------
# PointPublisher
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def collector(ctx: zmq.Context) -> Iterator[SubCollector]:
    sub = SubCollector(ctx, b"points/")
    yield sub
    sub.close()


def test_publisher_sends_topic_and_payload_with_counting_seq(ctx, collector) -> None:
    rng = np.random.default_rng(0)
    batches = [
        rng.normal(size=(5, 3)),
        rng.normal(size=(1, 3)).astype(np.float32),
        rng.normal(size=(7, 3)),
    ]
    with PointPublisher(collector.endpoint, "points/lidar", source="src-1", context=ctx) as pub:
        assert pub.wait_for_subscriber(5.0)
        seqs = [pub.send(b, stamp=10.0 + i, frame="base") for i, b in enumerate(batches)]
        assert seqs == [0, 1, 2]
        assert pub.seq == 3
    messages = collector.wait_for(3)
    time.sleep(0.05)
    assert len(collector.messages) == 3
    for i, (frames, batch) in enumerate(zip(messages, batches)):
        assert len(frames) == 2
        assert frames[0] == b"points/lidar"
        msg = codec.decode_points(frames[1])
        assert (msg.seq, msg.stamp, msg.source, msg.frame) == (i, 10.0 + i, "src-1", "base")
        assert msg.points.dtype == batch.dtype
        np.testing.assert_array_equal(msg.points, batch)


def test_publisher_default_stamp_and_source(ctx, collector) -> None:
    with PointPublisher(collector.endpoint, b"points/x", context=ctx) as pub:
        assert str(os.getpid()) in pub.source
        assert pub.wait_for_subscriber(5.0)
        before = time.time()
        pub.send([[1, 2]])  # ints and lists are accepted and travel as <f8
    (frames,) = collector.wait_for(1)
    msg = codec.decode_points(frames[1])
    assert msg.source == pub.source
    assert before - 1 <= msg.stamp <= time.time() + 1
    assert msg.points.dtype == np.float64


def test_publisher_bind_and_wait_for_matching_subscriber(ctx: zmq.Context, tmp_path) -> None:
    endpoint = f"ipc://{tmp_path}/points.ipc"
    other = ctx.socket(zmq.SUB)
    match = ctx.socket(zmq.SUB)
    try:
        with PointPublisher(endpoint, "points/lidar", bind=True, context=ctx) as pub:
            # Nobody: times out within the bound.
            start = time.monotonic()
            assert not pub.wait_for_subscriber(0.2)
            assert time.monotonic() - start < 1.5
            # A subscriber to another prefix does not count.
            other.linger = 0
            other.subscribe(b"points/imu")
            other.connect(endpoint)
            assert not pub.wait_for_subscriber(0.3)
            # A matching prefix does.
            match.linger = 0
            match.subscribe(b"points/")
            match.connect(endpoint)
            assert pub.wait_for_subscriber(5.0)
            assert pub.has_subscriber
            pub.send(np.zeros((2, 3)))
            assert match.poll(2000)
            assert match.recv_multipart()[0] == b"points/lidar"
            assert not other.poll(50)
            # When the matching subscriber leaves, XPUB reports the unsubscription.
            match.close(linger=0)
            deadline = time.monotonic() + 3.0
            while pub.has_subscriber and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not pub.has_subscriber
    finally:
        other.close(linger=0)
        match.close(linger=0)


def test_lossless_publisher_waits_for_a_full_subscriber_instead_of_dropping(
        ctx: zmq.Context, tmp_path) -> None:
    """lossless=True: with the subscriber not reading, send() blocks once the queues (the
    high-water marks and the socket buffers, far below the 24 MB sent) are full; as the
    subscriber reads, every message arrives, in order."""
    import threading

    endpoint = f"ipc://{tmp_path}/points.ipc"
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.rcvhwm = 2
    sub.subscribe(b"points/")
    sent: list[int] = []
    failures: list[BaseException] = []
    with PointPublisher(endpoint, "points/lidar", bind=True, context=ctx, sndhwm=2,
                        linger_ms=0, lossless=True) as pub:
        sub.connect(endpoint)
        try:
            assert pub.wait_for_subscriber(5.0)
            scan = np.zeros((10_000, 3))  # 240 kB a message

            def send_all() -> None:
                try:
                    for _ in range(100):
                        sent.append(pub.send(scan))
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            sender.join(0.5)
            assert sender.is_alive() and len(sent) < 100  # waiting: nothing was dropped
            received = []
            deadline = time.monotonic() + 30.0
            while len(received) < 100 and time.monotonic() < deadline:
                if sub.poll(1000):
                    received.append(codec.decode_points(sub.recv_multipart()[1]).seq)
            sender.join(5.0)
            assert not failures and not sender.is_alive()
            assert received == list(range(100)) and sent == list(range(100))
        finally:
            sub.close(linger=0)


@pytest.mark.parametrize(
    "points, error",
    [
        (np.zeros(3), ValueError),
        (np.zeros((2, 3, 1)), ValueError),
        (np.zeros((0, 3)), ValueError),
        (np.zeros((4, 0)), ValueError),
        (np.zeros((2, 3), dtype=complex), TypeError),
        (np.array([["a", "b"]]), TypeError),
    ],
)
def test_publisher_rejects_bad_points(ctx: zmq.Context, tmp_path, points, error) -> None:
    with PointPublisher(f"ipc://{tmp_path}/p.ipc", "t", bind=True, context=ctx) as pub:
        with pytest.raises(error):
            pub.send(points)
        assert pub.seq == 0
    with pytest.raises(RuntimeError):
        pub.send(np.zeros((1, 3)))


def test_curve_keys_encrypt_the_control_exchange(ctx, fake_control) -> None:
    if not zmq.has("curve"):
        pytest.skip("libzmq without CURVE")
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    wrong_public, _ = zmq.curve_keypair()
    server = fake_control(lambda req: [STATUS | _id(req)], curve_secret=server_secret)
    keys = CurveKeys(server_public, client_public, client_secret)
    with ControlClient(server.endpoint, timeout=3.0, context=ctx, curve=keys) as ctl:
        assert ctl._sock.mechanism == zmq.CURVE
        assert ctl.status()["ok"] is True
    # A client that expects another server key never completes the handshake.
    bad = CurveKeys(wrong_public, client_public, client_secret)
    with ControlClient(server.endpoint, timeout=0.3, context=ctx, curve=bad) as ctl:
        with pytest.raises(TimeoutError):
            ctl.status()
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------
# ControlClient
# ---------------------------------------------------------------------------------------------

STATUS = {
    "ok": True,
    "uptime_s": 1.5,
    "models": {MODEL: {"n_seen": 10, "seq": 2, "dim": 3, "components": 4}},
    "counters": {"messages_received": 3, "rejected": {"schema": 1}},
}


@pytest.mark.parametrize("delimiter", [True, False])
@pytest.mark.parametrize("echo_id", [True, False])
def test_status_round_trip(ctx, fake_control, delimiter: bool, echo_id: bool) -> None:
    server = fake_control(
        lambda req: [STATUS | (_id(req) if echo_id else {})], delimiter=delimiter
    )
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        reply = ctl.status()
        again = ctl.request("status")
    assert reply == {"v": 1, **STATUS}
    assert again == reply
    first = server.requests[0]
    assert first["op"] == "status" and first["v"] == 1 and isinstance(first["id"], int)
    assert server.requests[1]["id"] == first["id"] + 1


def test_ok_false_raises_control_error(ctx, fake_control) -> None:
    def handle(req: dict) -> list:
        if req["op"] == "refit":
            return [codec.error_reply(f"no model named {req['model']!r}", "unknown_model")
                    | _id(req)]
        return [STATUS | _id(req)]

    server = fake_control(handle)
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        with pytest.raises(ControlError, match="no model named 'nope'") as info:
            ctl.refit("nope")
        assert info.value.reply is not None and info.value.reply["ok"] is False
        assert ctl.status()["uptime_s"] == 1.5  # still usable
    assert server.requests[0]["model"] == "nope"


def test_timeout_raises_within_bound(ctx, fake_control) -> None:
    server = fake_control(lambda req: [])  # never answers
    with ControlClient(server.endpoint, timeout=0.2, context=ctx) as ctl:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            ctl.request("status")
        elapsed = time.monotonic() - start
    assert 0.15 <= elapsed < 1.0
    assert server.endpoint in str(info.value) and "'status'" in str(info.value)


def test_late_reply_to_timed_out_request_is_discarded(ctx, fake_control) -> None:
    def handle(req: dict) -> list:
        if req["id"] == 1:
            time.sleep(0.5)  # answers after the client gave up
        return [{"ok": True, "answer_to": req["id"], **_id(req)}]

    server = fake_control(handle)
    with ControlClient(server.endpoint, timeout=0.2, context=ctx) as ctl:
        with pytest.raises(TimeoutError):
            ctl.request("status")
        ctl.timeout = 3.0
        assert ctl.request("status")["answer_to"] == 2
        assert ctl.request("status")["answer_to"] == 3


def test_reply_with_another_id_is_discarded(ctx, fake_control) -> None:
    server = fake_control(
        lambda req: [
            {"ok": True, "which": "stale", "id": req["id"] - 1},
            {"ok": True, "which": "fresh", **_id(req)},
        ]
    )
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        assert ctl.request("status")["which"] == "fresh"
        # The stale reply of the next exchange is skipped too; nothing is left over.
        assert ctl.request("status")["which"] == "fresh"


def test_malformed_reply_raises_control_error(ctx, fake_control) -> None:
    server = fake_control(lambda req: [b"\xc1 not msgpack"])
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        with pytest.raises(ControlError, match="malformed reply"):
            ctl.status()


def test_snapshot_and_refit(ctx, fake_control) -> None:
    def handle(req: dict) -> list:
        if req["op"] == "snapshot":
            assert req.get("model") == MODEL
            return [update_payload(7, kind="snapshot", ok=True, n_reseeded=2, **_id(req))]
        return [{"ok": True, "seq": 8, **_id(req)}]

    server = fake_control(handle)
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        snap = ctl.snapshot(MODEL)
        assert ctl.refit(MODEL, timeout=2.0) == 8
    assert (snap.model, snap.seq, snap.kind, snap.n_seen) == (MODEL, 7, "snapshot", 700)
    assert snap.extra == {"n_reseeded": 2}  # extensions kept; "ok" and "id" are not
    assert snap.covariances.shape == (2, 2, 2)


def test_snapshot_without_model_and_invalid_snapshot(ctx, fake_control) -> None:
    state = {"seq": None}
    server = fake_control(snapshot_handler(state))
    with ControlClient(server.endpoint, timeout=2.0, context=ctx) as ctl:
        with pytest.raises(ControlError, match="no parameters yet"):
            ctl.snapshot()
        assert "model" not in server.requests[0]
    bad = fake_control(lambda req: [{"kind": "snapshot", **_id(req)}])
    with ControlClient(bad.endpoint, timeout=2.0, context=ctx) as ctl:
        with pytest.raises(ControlError, match="invalid snapshot"):
            ctl.snapshot(MODEL)


# ---------------------------------------------------------------------------------------------
# MixtureSubscriber
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def xpub(ctx: zmq.Context) -> Iterator[tuple[zmq.Socket, str]]:
    sock, endpoint = bound_socket(ctx, zmq.XPUB)
    yield sock, endpoint
    sock.close(linger=0)


def test_subscriber_clone_pattern(ctx, fake_control, xpub) -> None:
    pub, pub_endpoint = xpub
    state = {"seq": 4}
    server = fake_control(snapshot_handler(state))
    with MixtureSubscriber(pub_endpoint, server.endpoint, MODEL, context=ctx, timeout=2.0) as sub:
        wait_subscribed(pub, TOPIC)
        for seq in (3, 4, 5, 6):  # queued while the snapshot is taken; 3 and 4 are stale
            pub.send_multipart([TOPIC, update_payload(seq)])

        first = sub.recv(timeout=3.0)
        assert first is not None and (first.kind, first.seq) == ("snapshot", 4)
        assert [sub.recv(timeout=3.0).seq for _ in range(2)] == [5, 6]
        assert sub.stale == 2 and sub.gaps == 0 and sub.resyncs == 0

        # Update 7 is lost: the gap triggers a resync by snapshot.
        state["seq"] = 8
        pub.send_multipart([TOPIC, update_payload(8)])
        resynced = sub.recv(timeout=3.0)
        assert (resynced.kind, resynced.seq) == ("snapshot", 8)
        assert (sub.gaps, sub.resyncs) == (1, 1)
        pub.send_multipart([TOPIC, update_payload(8)])  # already applied: stale
        pub.send_multipart([TOPIC, update_payload(9)])
        assert sub.recv(timeout=3.0).seq == 9

        # Garbage is counted and skipped; another model on a longer topic is ignored.
        pub.send_multipart([TOPIC, b"\xc1 garbage"])
        pub.send_multipart([TOPIC])
        pub.send_multipart([TOPIC, update_payload(10, model="other")])
        pub.send_multipart([TOPIC + b"2", update_payload(10, model=MODEL + "2")])
        pub.send_multipart([TOPIC, update_payload(10)])
        latest = sub.recv(timeout=3.0)
        assert latest.seq == 10 and latest.kind == "online"
        assert sub.rejected == 3 and sub.stale == 3
        assert sub.current is latest

        start = time.monotonic()
        assert sub.recv(timeout=0.2) is None
        assert time.monotonic() - start < 1.0
    assert [r["op"] for r in server.requests] == ["snapshot", "snapshot"]
    assert all(r["model"] == MODEL for r in server.requests)


def test_subscriber_waits_for_live_update_without_parameters(ctx, fake_control, xpub) -> None:
    pub, pub_endpoint = xpub
    state: dict = {"seq": None}
    server = fake_control(snapshot_handler(state))
    with MixtureSubscriber(pub_endpoint, server.endpoint, MODEL, context=ctx, timeout=2.0) as sub:
        wait_subscribed(pub, TOPIC)
        start = time.monotonic()
        assert sub.recv(timeout=0.3) is None
        assert time.monotonic() - start < 1.5
        assert "no parameters yet" in sub.last_error
        pub.send_multipart([TOPIC, update_payload(1)])
        pub.send_multipart([TOPIC, update_payload(2)])
        mixtures = [sub.recv(timeout=3.0) for _ in range(2)]
        assert [(m.kind, m.seq) for m in mixtures] == [("online", 1), ("online", 2)]
        assert (sub.gaps, sub.resyncs) == (0, 0)
    assert len(server.requests) == 1


def test_subscriber_retries_the_snapshot(ctx, fake_control, xpub) -> None:
    _, pub_endpoint = xpub
    state: dict = {"seq": None}
    handle = snapshot_handler(state)

    def flaky(request: dict) -> list:
        replies = handle(request)
        state["seq"] = 3  # parameters exist from the second request on
        return replies

    server = fake_control(flaky)
    with MixtureSubscriber(
        pub_endpoint, server.endpoint, MODEL, context=ctx, timeout=2.0, retry_interval=0.1
    ) as sub:
        mixture = sub.recv(timeout=3.0)
        assert mixture is not None and (mixture.kind, mixture.seq) == ("snapshot", 3)
        assert sub.last_error is None
    assert len(server.requests) == 2


def test_subscriber_resyncs_after_daemon_restart(ctx, fake_control, xpub) -> None:
    pub, pub_endpoint = xpub
    state = {"seq": 5}
    server = fake_control(snapshot_handler(state))
    with MixtureSubscriber(pub_endpoint, server.endpoint, MODEL, context=ctx, timeout=2.0) as sub:
        wait_subscribed(pub, TOPIC)
        assert sub.recv(timeout=3.0).seq == 5
        # A daemon restarted without checkpoint counts from 1 again, on a later wall clock.
        restarted = codec.decode_update(update_payload(1))
        restarted["stamp"] = 5000.0
        state["seq"] = 1
        payload = codec.encode_update(
            **{k: restarted[k] for k in restarted if k != "v"}
        )
        pub.send_multipart([TOPIC, payload])
        mixture = sub.recv(timeout=3.0)
        assert mixture is not None and mixture.seq == 1
        assert sub.resyncs == 1 and sub.gaps == 0
        pub.send_multipart([TOPIC, update_payload(2)])
        assert sub.recv(timeout=3.0).seq == 2


def test_subscriber_recv_without_waiting(ctx, fake_control, xpub) -> None:
    pub, pub_endpoint = xpub
    server = fake_control(snapshot_handler({"seq": 1}))
    with MixtureSubscriber(pub_endpoint, server.endpoint, MODEL, context=ctx) as sub:
        wait_subscribed(pub, TOPIC)
        assert sub.recv(timeout=0).seq == 1  # the snapshot round trip is still made
        assert sub.recv(timeout=0) is None
        pub.send_multipart([TOPIC, update_payload(2)])
        for _ in range(200):  # bounded: at most about 2 s
            mixture = sub.recv(timeout=0)
            if mixture is not None:
                break
            time.sleep(0.01)
        assert mixture is not None and mixture.seq == 2


def test_subscriber_iterates(ctx, fake_control, xpub) -> None:
    pub, pub_endpoint = xpub
    server = fake_control(snapshot_handler({"seq": 1}))
    with MixtureSubscriber(pub_endpoint, server.endpoint, MODEL, context=ctx) as sub:
        wait_subscribed(pub, TOPIC)
        pub.send_multipart([TOPIC, update_payload(2)])
        seqs = [m.seq for _, m in zip(range(2), sub)]
    assert seqs == [1, 2]


# ---------------------------------------------------------------------------------------------
# Mixture
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_mixture_to_estimator_scores_like_the_original(covariance_type: str) -> None:
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(5, 0.5, (200, 3))])
    gm = GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(X)
    payload = codec.encode_update(
        model=MODEL, seq=3, stamp=1.0, n_seen=400, kind="refit",
        covariance_type=covariance_type, weights=gm.weights_, means=gm.means_,
        covariances=gm.covariances_, avg_log_likelihood=float("nan"), last_stamp=2.0,
    )
    mixture = Mixture.from_update(codec.decode_update(payload))
    assert (mixture.n_components, mixture.n_features) == (2, 3)
    est = mixture.to_estimator()
    np.testing.assert_allclose(est.score_samples(X), gm.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(est.predict(X), gm.predict(X))
    assert est.n_seen_ == 400 and est.converged_ and est.n_features_in_ == 3
    samples, labels = est.sample(10)
    assert samples.shape == (10, 3) and labels.shape == (10,)
