"""A long online step (a whole sweep) runs on the step thread while the loop answers status
and snapshots with the state before the step.

Socket-free: a Service with a stand-in transport and a model whose step waits until the loop
has answered, so nothing here depends on timing.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streamgmm import codec
from streamgmm.daemon.service import _SERVE_FROM_ROWS, Service
from streamgmm.daemon.transport import ControlRequest
from tests.helpers.service import in_process_service


class StandInTransport:
    """Delivers queued requests to ``poll``/``recv_control`` and point messages to
    ``poll``/``recv_points``; records replies."""

    def __init__(self, requests: list[bytes], points: list[list[bytes]] = ()) -> None:
        self.queue = [ControlRequest((b"peer", b""), payload, 3) for payload in requests]
        self.points = list(points)
        self.replies: list[dict] = []
        self.answered_status = threading.Event()
        self.answered_snapshot = threading.Event()
        self.points_read = threading.Event()
        if not self.points:
            self.points_read.set()

    def poll_control(self, timeout_ms: float) -> bool:
        return bool(self.queue)

    def poll(self, timeout_ms: float) -> tuple[bool, bool]:
        return bool(self.points), bool(self.queue)

    def recv_points(self) -> list[bytes] | None:
        if not self.points:
            return None
        frames = self.points.pop(0)
        if not self.points:
            self.points_read.set()
        return frames

    def recv_control(self) -> ControlRequest | None:
        return self.queue.pop(0) if self.queue else None

    def reply(self, request: ControlRequest, payload: bytes) -> None:
        reply = codec.decode_reply(payload)
        if reply.get("kind") == "snapshot":  # an update message: its arrays decoded
            reply = {**reply, "means": codec.decode_update(payload)["means"]}
            self.answered_snapshot.set()
        self.replies.append(reply)
        if "models" in reply:
            self.answered_status.set()

    def publish(self, topic: bytes, payload: bytes) -> None:
        pass


def _service() -> Service:
    return in_process_service(overload_budget_s=0.0)


def test_status_and_snapshot_are_answered_during_a_long_step_and_the_rest_after_it():
    service = _service()
    model = service.models[0]
    rng = np.random.default_rng(0)
    service._absorb(model, rng.normal(size=(2000, 3)), 1.0)  # fitted, n_seen = 2000
    means_before = model.estimator.means_.copy()
    transport = StandInTransport([codec.encode_request("status", id=7),
                                  codec.encode_request("snapshot", model="lidar", id=8),
                                  codec.encode_request("source", source="robot", id=9)])
    service.transport = transport
    service.stepper = ThreadPoolExecutor(max_workers=1)
    absorb = model.absorb
    seen_during: list[int] = []

    def step_after_answers(X, stamp, represented=None):
        # The step begins only once the loop has answered status and the snapshot: they
        # cannot have raced it.
        assert transport.answered_status.wait(10.0)
        assert transport.answered_snapshot.wait(10.0)
        seen_during.append(model.n_seen)
        absorb(X, stamp, represented)
        seen_during.append(len(transport.replies))

    model.absorb = step_after_answers
    try:
        sweep = rng.normal(size=(_SERVE_FROM_ROWS, 3))
        service._absorb(model, sweep, 2.0)
    finally:
        service.stepper.shutdown(wait=True)
    status, snapshot, source = transport.replies
    # Status and snapshot: the state before the step, answered while it ran.
    assert status["id"] == 7 and status["models"]["lidar"]["n_seen"] == 2000
    assert snapshot["id"] == 8 and snapshot["ok"] and snapshot["n_seen"] == 2000
    np.testing.assert_array_equal(snapshot["means"], means_before)
    # The source request waited for the step (two replies when it ended).
    assert seen_during == [2000, 2]
    assert source["id"] == 9 and source["ok"] and source["known"] is False
    assert model.n_seen == 2000 + len(sweep)


def test_point_messages_are_read_into_the_backlog_during_a_long_step():
    """While a whole sweep steps, the loop keeps reading point messages (ZeroMQ's queue,
    which drops at its high-water mark, does not fill behind a long step); they wait in the
    backlog and are absorbed after it."""
    service = _service()
    model = service.models[0]
    rng = np.random.default_rng(0)
    service._absorb(model, rng.normal(size=(2000, 3)), 1.0)
    messages = [[b"points/lidar", codec.encode_points(rng.normal(size=(50, 3)), seq=i,
                                                        stamp=3.0)] for i in range(20)]
    messages.append([b"points/lidar", codec.encode_points(  # closes their step
        np.empty((0, 3)), seq=20, stamp=3.0, end=True, first_seq=0)])
    transport = StandInTransport([], messages)
    service.transport = transport
    service.stepper = ThreadPoolExecutor(max_workers=1)
    absorb = model.absorb
    backlog_at_start: list[int] = []

    def step_after_reads(X, stamp, represented=None):
        assert transport.points_read.wait(10.0)  # the loop read them all, meanwhile
        backlog_at_start.append(len(model.backlog))
        absorb(X, stamp, represented)

    model.absorb = step_after_reads
    try:
        service._absorb(model, rng.normal(size=(_SERVE_FROM_ROWS, 3)), 2.0)
    finally:
        service.stepper.shutdown(wait=True)
    assert backlog_at_start == [20]
    assert len(model.backlog) == 20 and model.backlog_rows == 20 * 50
    assert service.counters.messages_applied == 20 and service.counters.messages_lost == 0
    assert model.n_seen == 2000 + _SERVE_FROM_ROWS
    model.absorb = absorb
    service._absorb_backlogs(seconds=60.0)
    assert model.n_seen == 2000 + _SERVE_FROM_ROWS + 20 * 50


def test_short_steps_run_inline():
    service = _service()
    model = service.models[0]

    class NoStepThread:
        def submit(self, *args, **kwargs):
            raise AssertionError("a short step went to the step thread")

    service.stepper = NoStepThread()
    X = np.random.default_rng(1).normal(size=(_SERVE_FROM_ROWS - 1, 3))
    service._absorb(model, X, 1.0)
    assert model.n_seen == len(X)
