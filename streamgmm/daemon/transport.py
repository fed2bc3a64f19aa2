"""The daemon's ZeroMQ sockets, and nothing else: bytes in, bytes out.

Three sockets, as in the ZeroMQ Guide's Clone pattern:

- ``ingest``  SUB, binds ``service.ingest`` and connects ``service.connect``; subscribed to
  every model's topic prefix. Frames: ``[topic, payload]``.
- ``updates`` PUB, binds ``service.publish``. Frames: ``[b"gmm/<model>", payload]``.
- ``control`` ROUTER, binds ``service.control``. Frames in: ``[identity, (b""), payload]``
  from REQ or DEALER peers; the reply goes back with the same envelope.

Socket options come from ``[service.sockets]``; every option except the HWMs must be set
before bind/connect to take effect, so they are all set right after the socket is made.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass

import zmq

from streamgmm.daemon.config import ConfigError, CurveConfig, ServiceConfig, SocketOptions

__all__ = [
    "BindError",
    "ControlRequest",
    "Transport",
    "ZAP_DOMAIN",
    "check_secret_file",
    "load_server_keys",
]

ZAP_DOMAIN = "streamgmm"


class BindError(RuntimeError):
    """An endpoint of the configuration could not be bound or connected."""

    def __init__(self, key: str, endpoint: str, reason: str) -> None:
        super().__init__(f"{key}: cannot use endpoint {endpoint!r}: {reason}")
        self.key = key


def check_secret_file(key: str, path: str) -> None:
    """A secret key file must exist and be readable by its owner only (mode 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            key, f"{path!r} is readable by others (mode {mode:04o}); run: chmod 600 {path}"
        )


def load_server_keys(curve: CurveConfig) -> tuple[bytes, bytes]:
    """The daemon's (public, secret) CURVE keys, after checking the files' safety."""
    import zmq.auth

    check_secret_file("service.curve.server_secret_key", curve.server_secret_key)
    if not os.path.isdir(curve.allowed_clients):
        raise ConfigError(
            "service.curve.allowed_clients", f"{curve.allowed_clients!r} is not a directory"
        )
    try:
        public, secret = zmq.auth.load_certificate(curve.server_secret_key)
    except (OSError, ValueError) as exc:
        raise ConfigError("service.curve.server_secret_key", f"not a key file: {exc}") from None
    if not secret:
        raise ConfigError(
            "service.curve.server_secret_key",
            f"{curve.server_secret_key!r} holds no secret key (use the .key_secret file)",
        )
    return public, secret


@dataclass(frozen=True)
class ControlRequest:
    """One request from the ROUTER socket, with the envelope its reply needs."""

    envelope: tuple[bytes, ...]
    payload: bytes
    n_frames: int


def _common_options(sock: zmq.Socket, opts: SocketOptions, heartbeats: bool = True) -> None:
    sock.setsockopt(zmq.LINGER, opts.linger_ms)
    if heartbeats and opts.heartbeat_ivl_ms:
        sock.setsockopt(zmq.HEARTBEAT_IVL, opts.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, opts.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, opts.heartbeat_ttl_ms)
    sock.setsockopt(zmq.HANDSHAKE_IVL, opts.handshake_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, opts.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, opts.reconnect_ivl_max_ms)


def _ipc_in_use(endpoint: str) -> bool:
    """Does a live process listen on this ``ipc://`` path?

    libzmq binds an ipc path by deleting whatever file is there, so a second daemon with the
    same config would silently take a running one's sockets (on tcp the bind fails with
    "Address already in use"). A path a connect reaches is in use; a stale file left by a
    killed daemon refuses the connect and is taken over, as libzmq would.
    """
    path = endpoint[len("ipc://"):]
    if not endpoint.startswith("ipc://") or path.startswith("@") or not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _bind(sock: zmq.Socket, key: str, endpoint: str, connect: bool = False) -> None:
    if not connect and _ipc_in_use(endpoint):
        raise BindError(key, endpoint, "Address already in use (another process listens "
                        "on this ipc path)")
    try:
        (sock.connect if connect else sock.bind)(endpoint)
    except zmq.ZMQError as exc:
        raise BindError(key, endpoint, exc.strerror) from None


class Transport:
    """Owns the zmq context and the daemon's three sockets.

    Parameters
    ----------
    config : ServiceConfig
    topics : iterable of str
        Topic prefixes the ingest socket subscribes to.
    context : zmq.Context, optional
    """

    def __init__(
        self, config: ServiceConfig, topics: Iterable[str], context: zmq.Context | None = None
    ) -> None:
        self._own_context = context is None
        self.context = context or zmq.Context()
        opts = config.sockets
        self.ingest = self.updates = self.control = None
        self.curve = config.curve
        self.authenticator = None
        try:
            keys = None
            if self.curve is not None:
                keys = load_server_keys(self.curve)
                self._start_authenticator()

            def secure(sock: zmq.Socket, heartbeats: bool = True) -> zmq.Socket:
                _common_options(sock, opts, heartbeats)
                if keys is not None:
                    sock.curve_publickey, sock.curve_secretkey = keys
                    sock.curve_server = True
                    sock.zap_domain = ZAP_DOMAIN.encode()
                return sock

            # No heartbeats on ingest: when its queue is full libzmq stops reading the
            # connection, pongs go unread, the heartbeat times out and the publisher
            # reconnects; its old and new pipes are then fair-queued, interleaving old and
            # new messages and breaking the per-source sequence accounting under overload.
            self.ingest = secure(self.context.socket(zmq.SUB), heartbeats=False)
            self.ingest.setsockopt(zmq.RCVHWM, opts.rcvhwm)
            self.ingest.setsockopt(zmq.MAXMSGSIZE, opts.maxmsgsize)
            for topic in sorted(set(topics)):
                self.ingest.setsockopt(zmq.SUBSCRIBE, topic.encode())
            for endpoint in config.ingest:
                _bind(self.ingest, "service.ingest", endpoint)
            for endpoint in config.connect:
                _bind(self.ingest, "service.connect", endpoint, connect=True)

            self.updates = secure(self.context.socket(zmq.PUB))
            self.updates.setsockopt(zmq.SNDHWM, opts.sndhwm)
            _bind(self.updates, "service.publish", config.publish)

            self.control = secure(self.context.socket(zmq.ROUTER))
            # Requests are small; a peer sending megabytes is not a client of ours.
            self.control.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
            _bind(self.control, "service.control", config.control)
        except BaseException:
            self.close(linger=0)
            raise
        self.poller = zmq.Poller()
        self.poller.register(self.ingest, zmq.POLLIN)
        self.poller.register(self.control, zmq.POLLIN)

    def _start_authenticator(self) -> None:
        # ZAP handler thread (pyzmq): checks every CURVE client's public key against the
        # certificates in allowed_clients.
        from zmq.auth.thread import ThreadAuthenticator

        self.authenticator = ThreadAuthenticator(self.context)
        self.authenticator.start()
        self.reload_clients()

    def reload_clients(self) -> None:
        """Re-read the allowed client certificates (SIGHUP); new handshakes use the new set."""
        if self.authenticator is not None:
            self.authenticator.configure_curve(
                domain=ZAP_DOMAIN, location=self.curve.allowed_clients
            )

    def bound_endpoints(self) -> dict[str, str]:
        """The endpoints actually bound (ports resolved when ``*``/0 was asked for)."""
        return {
            "ingest": self.ingest.getsockopt_string(zmq.LAST_ENDPOINT),
            "publish": self.updates.getsockopt_string(zmq.LAST_ENDPOINT),
            "control": self.control.getsockopt_string(zmq.LAST_ENDPOINT),
        }

    def poll(self, timeout_ms: float) -> tuple[bool, bool]:
        """Wait for input; returns ``(ingest_ready, control_ready)``."""
        events = dict(self.poller.poll(max(0, int(timeout_ms))))
        return self.ingest in events, self.control in events

    def poll_control(self, timeout_ms: float) -> bool:
        """Wait for a control request only (while a long online step runs)."""
        return bool(self.control.poll(max(0, int(timeout_ms)), zmq.POLLIN))

    def recv_points(self) -> list[bytes] | None:
        """One ingest message as its frames, or ``None`` when none is queued."""
        try:
            return self.ingest.recv_multipart(zmq.NOBLOCK, copy=True)
        except zmq.Again:
            return None

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Send one update; PUB never blocks (a slow subscriber loses, then resyncs)."""
        try:
            self.updates.send_multipart([topic, payload], zmq.NOBLOCK)
        except zmq.Again:
            pass

    def recv_control(self) -> ControlRequest | None:
        """One control request, or ``None``; the payload is the last frame."""
        try:
            frames = self.control.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        # [identity, b"", payload] from REQ, [identity, payload] from a bare DEALER.
        envelope = tuple(frames[:-1]) if len(frames) >= 2 else tuple(frames)
        return ControlRequest(envelope, frames[-1] if len(frames) >= 2 else b"", len(frames))

    def reply(self, request: ControlRequest, payload: bytes) -> None:
        """Send a reply along the request's envelope; a vanished peer is ignored."""
        try:
            self.control.send_multipart([*request.envelope, payload], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            pass

    def close(self, linger: int | None = None) -> None:
        """Close every socket (flushing for ``linger`` ms) and the context if we own it."""
        for sock in (self.ingest, self.updates, self.control):
            if sock is not None and not sock.closed:
                sock.close(linger=linger)
        if self.authenticator is not None:
            self.authenticator.stop()
        if self._own_context:
            self.context.term()
