"""Fake daemons and sockets for client and CLI tests: the codec plus plain zmq sockets.

Every wait is bounded in time; every socket is closed with linger 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import zmq

from streamgmm import codec

MODEL = "lidar"
TOPIC = codec.update_topic(MODEL)

Handler = Callable[[dict], list]


class FakeControl:
    """A ROUTER on a random loopback port, served by a thread.

    ``handler(request) -> list`` gives the replies to send (dicts are encoded with
    ``codec.encode_reply``, bytes go as they are); it may sleep to delay them. With
    `curve_secret` it is a CURVE server.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        handler: Handler,
        *,
        delimiter: bool = True,
        curve_secret: bytes | None = None,
    ) -> None:
        self.handler = handler
        self.delimiter = delimiter
        self.requests: list[dict] = []
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        if curve_secret is not None:
            # A CURVE server (security options apply to the binds made after them); without a
            # ZAP handler it lets any client key in.
            self.sock.curve_server = True
            self.sock.curve_secretkey = curve_secret
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self._stop = threading.Event()
        # The socket moves to the serving thread here and is only used there from now on.
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.sock.poll(20):
                    continue
                frames = self.sock.recv_multipart()
                request = codec.decode_request(frames[-1])
                self.requests.append(request)
                envelope = [frames[0], b""] if self.delimiter else [frames[0]]
                for reply in self.handler(request):
                    if isinstance(reply, dict):
                        reply = codec.encode_reply(reply)
                    self.sock.send_multipart([*envelope, reply])
        finally:
            self.sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class SubCollector:
    """A bound SUB drained by a thread, like the daemon's ingest socket.

    A bound SUB attaches a new peer (and sends it the subscriptions) only when its own thread
    touches the socket, so it must be polled while a publisher waits for the subscription.
    """

    def __init__(self, ctx: zmq.Context, prefix: bytes = b"") -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.subscribe(prefix)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.messages: list[list[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if self.sock.poll(20):
                    self.messages.append(self.sock.recv_multipart())
        finally:
            self.sock.close(linger=0)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[list[bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def update_payload(seq: int, *, model: str = MODEL, kind: str = "online", **extra) -> bytes:
    """A valid 2-D, K=2 update whose daemon stamp grows with seq."""
    return codec.encode_update(
        model=model,
        seq=seq,
        stamp=1000.0 + seq,
        n_seen=100 * seq,
        kind=kind,
        covariance_type="full",
        weights=np.array([0.4, 0.6]),
        means=np.array([[0.0, 0.0], [3.0, 3.0 + seq]]),
        covariances=np.stack([np.eye(2), 2 * np.eye(2)]),
        avg_log_likelihood=-1.5,
        last_stamp=0.1 * seq,
        **extra,
    )


def snapshot_handler(state: dict) -> Handler:
    """Snapshots of seq ``state["seq"]``, or an ok:false reply while it is None; a status
    without models (``watch --plot`` asks one for the model's axis names)."""

    def handle(request: dict) -> list:
        if request["op"] == "status":
            return [{"ok": True, "models": {}} | _id(request)]
        assert request["op"] == "snapshot"
        if state["seq"] is None:
            return [codec.error_reply(f"model {MODEL!r} has no parameters yet", "no_parameters")
                    | _id(request)]
        return [update_payload(state["seq"], kind="snapshot", ok=True, id=request["id"])]

    return handle


def _id(request: dict) -> dict:
    return {"id": request["id"]}


def wait_subscribed(xpub: zmq.Socket, prefix: bytes, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if xpub.poll(50) and xpub.recv() == b"\x01" + prefix:
            return
    raise AssertionError(f"no subscription to {prefix!r} within {timeout} s")


def bound_socket(ctx: zmq.Context, kind: int) -> tuple[zmq.Socket, str]:
    sock = ctx.socket(kind)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"
