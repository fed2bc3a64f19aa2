"""The loop folds a model's messages into the steps of streamgmm.daemon.steps: an open step
waits for the message, the end marker or the idle stream that closes it."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from streamgmm import codec
from streamgmm.daemon.service import Service
from tests.helpers.service import in_process_service


def _service(**model) -> Service:
    return in_process_service(**{"components": 2, "publish_every_s": 0.1, "seed": 3, **model})


def _socket(service: Service, frames: list) -> None:
    service.transport = SimpleNamespace(
        recv_points=lambda: frames.pop(0) if frames else None,
        publish=lambda topic, payload: None, close=lambda linger=None: None)


def _points(seq: int, stamp: float, n: int = 100) -> list[bytes]:
    X = np.random.default_rng(seq).normal(size=(n, 3))
    return [b"points/lidar", codec.encode_points(X, seq=seq, stamp=stamp)]


def _end(seq: int) -> list[bytes]:
    return [b"points/lidar", codec.encode_points(np.empty((0, 3)), seq=seq, stamp=0.0,
                                                 end=True, first_seq=0)]


def test_an_open_step_waits_and_the_end_marker_closes_it_in_order() -> None:
    service = _service()
    model = service.models[0]
    # Two messages of one sensor period, the end marker, then a message of a new stream.
    _socket(service, [_points(0, 5.0), _points(1, 5.05), _end(2), _points(3, 9.0)])
    service._drain_ingest()
    assert service.last_drain == 4 and len(model.backlog) == 3
    assert list(model.step_sizes) == [2] and model.steps.open_messages == 1
    service._absorb_backlogs(seconds=60.0)
    assert model.n_seen == 200 and model.backlog_rows == 100  # the third waits
    service._close_idle_steps()  # it came just now: still open
    assert model.steps.open_messages == 1


def test_a_stream_that_stops_without_an_end_marker_is_closed_when_idle() -> None:
    service = _service()
    model = service.models[0]
    _socket(service, [_points(0, 1.0), _points(1, 1.02)])
    service._drain_ingest()
    service._absorb_backlogs(seconds=60.0)
    assert model.n_seen == 0 and model.steps.open_rows == 200
    assert service._poll_timeout_ms() <= 500.0  # the loop wakes up to close it
    model.last_admitted = time.monotonic() - 0.6  # the stream stopped 0.6 s ago
    service._close_idle_steps()
    service._absorb_backlogs(seconds=60.0)
    assert model.n_seen == 200 and not model.backlog and model.backlog_rows == 0


def test_shutdown_absorbs_the_open_step() -> None:
    service = _service()
    model = service.models[0]
    _socket(service, [_points(0, 1.0), _points(1, 1.02)])
    service._drain_ingest()
    service.shutdown()
    assert model.n_seen == 200 and not model.backlog


def test_a_stopped_stream_is_closed_while_another_model_streams_on(daemon_factory) -> None:
    """The idle close is per model: a LiDAR that stopped without an end marker is folded in
    (and published) while an IMU keeps streaming (a rule of the daemon's last message, of
    any model, would never close it). Nothing but the IMU wakes the daemon meanwhile: the
    test watches the published updates, not status."""
    lidar = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 2,
             "publish_every_s": 0.1, "refit_every_s": 0.0}
    imu = dict(lidar, name="imu", topic="points/imu", dim=6)
    d = daemon_factory([lidar, imu])
    rng = np.random.default_rng(0)
    d.send("points/lidar", rng.normal(size=(50, 3)), source="lidar", stamp=1.0)
    d.send("points/lidar", rng.normal(size=(50, 3)), source="lidar", stamp=1.01)
    lidar_seen = 0
    started = time.monotonic()
    for i in range(1000):  # an IMU at ~250 Hz for at most 4 s
        d.send("points/imu", rng.normal(size=(1, 6)), source="imu", stamp=2.0 + i * 0.004)
        while d.sub.poll(0):
            topic, payload = d.sub.recv_multipart()
            if topic == b"gmm/lidar":
                lidar_seen = codec.decode_update(payload)["n_seen"]
        if lidar_seen or time.monotonic() - started > 4.0:
            break
        time.sleep(0.004)
    assert lidar_seen == 100
