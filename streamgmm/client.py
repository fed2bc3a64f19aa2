"""Clients of the streamgmm daemon: publish points, ask for status/snapshots/refits, follow a model.

Three roles, one per section of the protocol (see ``docs/protocol.md``):

- :class:`PointPublisher` sends sensor points ``[topic, payload]`` to the daemon's ingest socket.
- :class:`ControlClient` sends control requests (``status``, ``snapshot``, ``refit``) to the
  daemon's ROUTER socket and waits for the reply, with a timeout.
- :class:`MixtureSubscriber` keeps a live copy of one model's mixture with the Clone pattern:
  subscribe to the updates first, then ask for a snapshot, then apply only updates whose ``seq``
  is newer, and re-sync by snapshot whenever a ``seq`` is skipped.

Every payload is encoded and decoded by :mod:`streamgmm.codec`. The sockets here are not
thread-safe: use one client object from one thread.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from streamgmm import codec

if TYPE_CHECKING:
    from streamgmm.estimator import GaussianMixture

# One CurveKeys type for the whole package: (server_public, client_public, client_secret),
# loadable from key files with CurveKeys.from_files(); re-exported here for the clients.
from streamgmm.keys import CurveKeys

__all__ = [
    "ControlClient",
    "ControlError",
    "CurveKeys",
    "Mixture",
    "MixtureSubscriber",
    "PointPublisher",
]

# Keys of an update map that become Mixture fields; the rest are protocol extensions.
_MIXTURE_KEYS = codec.UPDATE_KEYS
# The request counter this module adds to control requests (echoed by the daemon, if it does).
_ID_KEY = "id"
# Keys of a snapshot reply that belong to the request/reply exchange, not to the mixture.
_REPLY_KEYS = frozenset((_ID_KEY, "ok"))
# The code of the daemon's refusal of an unknown model (codec.ERROR_CODES): the one refusal
# a subscriber does not wait out.
_NO_SUCH_MODEL = "unknown_model"


class ControlError(RuntimeError):
    """The daemon answered a control request with ``{"ok": false, "error": ...}``.

    Parameters
    ----------
    message : str
        The daemon's ``error`` text (or a description of a malformed reply).
    reply : dict, optional
        The whole decoded reply, when there was one.

    Attributes
    ----------
    code : str or None
        The reply's machine-readable ``code`` (one of :data:`streamgmm.codec.ERROR_CODES`);
        None for a malformed reply or a daemon older than the codes. Branch on it, not on
        the message.
    """

    def __init__(self, message: str, reply: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply = dict(reply) if reply is not None else None
        code = None if reply is None else reply.get("code")
        self.code: str | None = code if isinstance(code, str) else None


def _apply_curve(sock: zmq.Socket, curve: CurveKeys | None) -> None:
    # CURVE options must be set before connect/bind to take effect on that connection. The
    # socket is the CURVE client whether it binds or connects (the daemon is the server).
    if curve is None:
        return
    sock.curve_serverkey = curve.server_public
    sock.curve_publickey = curve.client_public
    sock.curve_secretkey = curve.client_secret


def _as_topic(topic: str | bytes) -> bytes:
    if isinstance(topic, bytes):
        return topic
    if isinstance(topic, str):
        return topic.encode("utf-8")
    raise TypeError(f"topic must be str or bytes, not {type(topic).__name__}")


def _check_timeout(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _ms(seconds: float) -> int:
    # zmq poll takes whole milliseconds; round up so a short wait is not a busy loop.
    return max(0, math.ceil(seconds * 1000.0))


# ---------------------------------------------------------------------------------------------
# 1. Sensor points
# ---------------------------------------------------------------------------------------------


class PointPublisher:
    """Publish sensor points to the daemon (protocol section 1).

    The socket is an XPUB: it sends like a PUB, and it also sees the subscriptions of its
    peers, so :meth:`wait_for_subscriber` can hold the first message until the daemon listens
    (a PUB drops whatever it sends before the subscription has arrived).

    Parameters
    ----------
    endpoint : str
        The daemon's ingest endpoint, e.g. ``"tcp://127.0.0.1:5555"``.
    topic : str or bytes
        Topic frame of every message, e.g. ``"points/lidar"``; the daemon routes by prefix.
    source : str, optional
        Publisher id carried in every message; default ``"<hostname>-<pid>"``.
    bind : bool, default=False
        Bind `endpoint` instead of connecting to it (for a daemon configured with ``connect``).
    context : zmq.Context, optional
        Default: the process-wide ``zmq.Context.instance()``.
    sndhwm : int, default=1000
        Messages queued per subscriber before new ones are dropped.
    linger_ms : int, default=1000
        How long :meth:`close` may wait to flush queued messages.
    curve : CurveKeys, optional
        CURVE keys; ``None`` sends in the clear.
    lossless : bool, default=False
        Never drop a message at the high-water mark: :meth:`send` waits while a
        subscriber's queue is full (``ZMQ_XPUB_NODROP``), so a publisher faster than the
        daemon goes at the daemon's pace and every message arrives (for a replay at full
        speed). Off, a full queue drops new messages, which the daemon counts as lost: what
        a live sensor that must not fall behind does. Ctrl-C interrupts a waiting send.

    Attributes
    ----------
    seq : int
        The ``seq`` of the next message (0 for the first).
    topic : bytes
    source : str

    Examples
    --------
    >>> with PointPublisher("tcp://127.0.0.1:5555", "points/lidar") as pub:  # doctest: +SKIP
    ...     pub.wait_for_subscriber(5.0)
    ...     pub.send(np.random.rand(1000, 3))
    """

    def __init__(
        self,
        endpoint: str,
        topic: str | bytes,
        *,
        source: str | None = None,
        bind: bool = False,
        context: zmq.Context | None = None,
        sndhwm: int = 1000,
        linger_ms: int = 1000,
        curve: CurveKeys | None = None,
        lossless: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.lossless = bool(lossless)
        self.topic = _as_topic(topic)
        self.source = f"{socket.gethostname()}-{os.getpid()}" if source is None else source
        if not isinstance(self.source, str):
            raise TypeError("source must be str")
        self.seq = 0
        self.first_seq = 0  # of this run: an end marker tells the daemon (send_end)
        # prefix -> still subscribed; XPUB reports an unsubscribe once the last peer holding
        # that prefix is gone, so this tells whether someone listens to our topic right now.
        self._subscriptions: dict[bytes, bool] = {}
        ctx = context if context is not None else zmq.Context.instance()
        sock = ctx.socket(zmq.XPUB)
        try:
            # Verbose: pass every subscribe on, also repeats of a known prefix (a second
            # subscriber with the same prefix must wake wait_for_subscriber too).
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            if self.lossless:
                # A send that finds a subscriber's queue full waits instead of dropping.
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.sndhwm = sndhwm
            sock.linger = linger_ms
            _apply_curve(sock, curve)
            if bind:
                sock.bind(endpoint)
            else:
                sock.connect(endpoint)
        except Exception:
            sock.close(linger=0)
            raise
        self._sock: zmq.Socket | None = sock

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            raise RuntimeError("the publisher is closed")
        return self._sock

    def _read_subscription(self, sock: zmq.Socket) -> bool:
        """Read one pending subscription frame; True if it subscribes to our topic."""
        frame = sock.recv(zmq.NOBLOCK)
        if not frame or frame[0] not in (0, 1):
            return False  # not a subscription message: nothing a SUB sends, ignore it
        prefix = frame[1:]
        subscribed = frame[0] == 1
        self._subscriptions[prefix] = subscribed
        return subscribed and self.topic.startswith(prefix)

    def _drain_subscriptions(self, sock: zmq.Socket) -> None:
        # Unread subscription frames would pile up in the socket; read what is there.
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._read_subscription(sock)

    @property
    def has_subscriber(self) -> bool:
        """Whether a subscription matching the topic is known to be active (no waiting)."""
        sock = self._socket()
        self._drain_subscriptions(sock)
        return any(on and self.topic.startswith(p) for p, on in self._subscriptions.items())

    def wait_for_subscriber(self, timeout: float = 5.0) -> bool:
        """Wait until a subscriber whose prefix matches the topic has subscribed.

        Parameters
        ----------
        timeout : float, default=5.0
            Seconds to wait at most.

        Returns
        -------
        bool
            True as soon as such a subscription is active, False after `timeout`.
        """
        timeout = _check_timeout("timeout", timeout)
        if self.has_subscriber:
            return True
        sock = self._socket()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(_ms(remaining), zmq.POLLIN):
                return False
            if self._read_subscription(sock):
                return True

    def send(self, points: Any, *, stamp: float | None = None, frame: str = "") -> int:
        """Send one message of points.

        Parameters
        ----------
        points : array_like of shape (n, d)
            Real numbers, ``n >= 1`` and ``d >= 1``; float32 travels as ``<f4``, everything
            else as ``<f8``. Rows with NaN or Inf are sent as they are (the daemon drops them).
        stamp : float, optional
            Sensor time in seconds; default ``time.time()``. The daemon folds a model's
            messages into online steps by their stamps (docs/protocol.md, section 1,
            "Steps"): give the sensor's time, so that the model does not depend on how fast
            the messages were sent.
        frame : str, default=""
            Coordinate frame of the points.

        Returns
        -------
        int
            The ``seq`` of the message sent.

        Raises
        ------
        ValueError
            If `points` is not of shape (n, d) with n, d >= 1, or `stamp` is not finite.
        TypeError
            If `points` is not real numeric.
        """
        sock = self._socket()
        arr = np.asarray(points)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"points must be real numbers, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            # An empty message would only be counted as rejected ("empty") by the daemon.
            raise ValueError(f"points must have shape (n, d) with n, d >= 1, got {arr.shape}")
        if arr.dtype != np.float32:
            arr = arr.astype(np.float64, copy=False)
        seq = self.seq
        payload = codec.encode_points(
            arr,
            seq=seq,
            stamp=time.time() if stamp is None else stamp,
            source=self.source,
            frame=frame,
        )
        self._drain_subscriptions(sock)
        sock.send_multipart([self.topic, payload], copy=False)
        self.seq = seq + 1
        return seq

    def send_end(self, dim: int, *, stamp: float | None = None) -> int:
        """Send the end-of-stream marker (docs/protocol.md, "End-of-stream markers").

        It follows every message sent so far on the same connection, so once the daemon
        has it (its ``source`` request reports ``end_seq`` equal to the returned seq), each
        earlier message has arrived or was lost. Send it only to a daemon that answers the
        ``source`` request: an older one counts it as a rejected ``empty`` message.

        Parameters
        ----------
        dim : int
            The dimension of the points sent (the marker carries an empty (0, dim) array).
        stamp : float, optional
            Default ``time.time()``.

        Returns
        -------
        int
            The marker's ``seq`` (one above the last message's).
        """
        sock = self._socket()
        seq = self.seq
        payload = codec.encode_points(
            np.empty((0, max(int(dim), 1))), seq=seq,
            stamp=time.time() if stamp is None else stamp, source=self.source,
            end=True, first_seq=self.first_seq,
        )
        self._drain_subscriptions(sock)
        sock.send_multipart([self.topic, payload], copy=False)
        self.seq = seq + 1
        return seq

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, flushing queued messages for up to ``linger_ms`` (default: as set)."""
        if self._sock is not None:
            self._sock.close(linger=linger_ms)
            self._sock = None

    def __enter__(self) -> PointPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# 2. Mixtures
# ---------------------------------------------------------------------------------------------


# eq=False: a generated __eq__/__hash__ would compare/hash the arrays and fail.
@dataclass(frozen=True, eq=False)
class Mixture:
    """One received mixture: a published update or a snapshot (protocol section 2).

    Attributes
    ----------
    model : str
    seq : int
        Number of the last update this state belongs to (counts from 1 per model).
    stamp : float
        Daemon wall-clock time of the update, seconds since the epoch.
    n_seen : int
        Points absorbed into the model since it was created.
    kind : {"online", "refit", "snapshot"}
    covariance_type : {"full", "diag", "spherical", "tied"}
    weights : numpy.ndarray of shape (K,)
    means : numpy.ndarray of shape (K, d)
    covariances : numpy.ndarray
        (K, d, d) full, (K, d) diag, (K,) spherical, (d, d) tied.
    avg_log_likelihood : float
        Predictive mean log-density of the points absorbed since the previous update (NaN
        when there were none).
    last_stamp : float
        Latest sensor stamp absorbed into the model (NaN when none yet).
    extra : dict
        Keys of the map beyond protocol version 1 (extensions), as received.
    """

    model: str
    seq: int
    stamp: float
    n_seen: int
    kind: str
    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    avg_log_likelihood: float
    last_stamp: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_update(cls, update: Mapping[str, Any]) -> Mixture:
        """Build from a map decoded by :func:`streamgmm.codec.decode_update`.

        Parameters
        ----------
        update : Mapping
            The decoded update or snapshot reply.

        Returns
        -------
        Mixture
            Arrays converted to float64.
        """
        extra = {
            k: v for k, v in update.items() if k not in _MIXTURE_KEYS and k not in _REPLY_KEYS
        }
        return cls(
            model=str(update["model"]),
            seq=int(update["seq"]),
            stamp=float(update["stamp"]),
            n_seen=int(update["n_seen"]),
            kind=str(update["kind"]),
            covariance_type=str(update["covariance_type"]),
            weights=np.asarray(update["weights"], dtype=np.float64),
            means=np.asarray(update["means"], dtype=np.float64),
            covariances=np.asarray(update["covariances"], dtype=np.float64),
            avg_log_likelihood=float(update["avg_log_likelihood"]),
            last_stamp=float(update["last_stamp"]),
            extra=extra,
        )

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return int(self.weights.shape[0])

    @property
    def n_features(self) -> int:
        """Dimension d."""
        return int(self.means.shape[1])

    @property
    def frame(self) -> str:
        """Coordinate frame of the points the model absorbed (extension ``frame``).

        ``""`` when the update does not say (no publisher named one, or an older daemon).
        """
        frame = self.extra.get("frame")
        return frame if isinstance(frame, str) else ""

    @property
    def sample(self) -> np.ndarray | None:
        """Uniform sample of the points absorbed since the previous update (extension).

        Sent by a daemon whose model sets ``sample_points`` (docs/protocol.md).

        Returns
        -------
        numpy.ndarray of shape (m, d) or None
            The points; ``None`` when the update has none, or when its ``sample`` is not a
            valid ``[m, d]`` array of this mixture's ``d`` (an extension never makes the
            update itself unusable).
        """
        raw = self.extra.get("sample")
        if raw is None:
            return None
        try:
            points = codec.decode_array(raw)
        except codec.DecodeError:
            return None
        if points.ndim != 2 or points.shape[1] != self.n_features:
            return None
        if not np.isfinite(points).all():
            points = points[np.isfinite(points).all(axis=1)]
        return points

    def to_estimator(self) -> GaussianMixture:
        """A :class:`~streamgmm.GaussianMixture` holding this mixture.

        Returns
        -------
        GaussianMixture
            Ready for ``predict``, ``score_samples`` and ``sample``; ``n_seen_`` is this
            mixture's ``n_seen``.
        """
        # Imported here: the estimator pulls in scipy (and scikit-learn when installed), which
        # a client that only publishes or asks for status should not wait for.
        from streamgmm.estimator import GaussianMixture

        gm = GaussianMixture.from_parameters(
            self.weights, self.means, self.covariances, self.covariance_type
        )
        gm.n_seen_ = self.n_seen
        return gm


# ---------------------------------------------------------------------------------------------
# 3. Control
# ---------------------------------------------------------------------------------------------


class ControlClient:
    """Request/reply client of the daemon's control socket (protocol section 3).

    A DEALER socket that behaves like REQ (an empty delimiter frame, then one msgpack frame)
    but never gets stuck: after a timeout it drops the socket and opens a fresh one (the Lazy
    Pirate pattern), so a late reply to an abandoned request can never be read as the reply
    to the next one. Each request also carries a counter ``"id"``; a reply that echoes a
    different ``id`` is discarded.

    Parameters
    ----------
    endpoint : str
        The daemon's control endpoint, e.g. ``"tcp://127.0.0.1:5557"``.
    timeout : float, default=5.0
        Seconds to wait for each reply.
    context : zmq.Context, optional
        Default: ``zmq.Context.instance()``.
    curve : CurveKeys, optional
        CURVE keys; ``None`` talks in the clear.

    Examples
    --------
    >>> with ControlClient("tcp://127.0.0.1:5557") as ctl:  # doctest: +SKIP
    ...     print(ctl.status()["models"])
    ...     mixture = ctl.snapshot("lidar")
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 5.0,
        context: zmq.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = _check_timeout("timeout", timeout)
        self._context = context if context is not None else zmq.Context.instance()
        self._curve = curve
        self._next_id = 0
        self._closed = False
        self._sock: zmq.Socket | None = None
        self._sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = self._context.socket(zmq.DEALER)
        try:
            sock.linger = 0
            _apply_curve(sock, self._curve)
            sock.connect(self.endpoint)
        except Exception:
            sock.close(linger=0)
            raise
        return sock

    def _reset(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock = self._open()

    def _exchange(self, op: str, fields: Mapping[str, Any], timeout: float) -> tuple[bytes, dict]:
        """Send one request, return (raw reply payload, decoded reply map)."""
        if self._closed or self._sock is None:
            raise RuntimeError("the control client is closed")
        self._next_id += 1
        request_id = self._next_id
        payload = codec.encode_request(op, **{**fields, _ID_KEY: request_id})
        self._sock.send_multipart([b"", payload])
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sock.poll(_ms(remaining), zmq.POLLIN):
                # The request may still be answered later: start over on a fresh socket.
                self._reset()
                raise TimeoutError(
                    f"no reply from {self.endpoint} to {op!r} within {timeout:g} s"
                )
            frames = self._sock.recv_multipart()
            # REQ-style [b"", reply]; also accept a bare [reply] from a ROUTER that skips it.
            if len(frames) == 2 and frames[0] == b"":
                raw = frames[1]
            elif len(frames) == 1:
                raw = frames[0]
            else:
                continue
            try:
                reply = codec.decode_reply(raw)
            except codec.DecodeError as exc:
                raise ControlError(
                    f"malformed reply from {self.endpoint} to {op!r}: {exc}"
                ) from None
            if _ID_KEY in reply and reply[_ID_KEY] != request_id:
                continue  # answer to an earlier request
            reply.pop(_ID_KEY, None)
            return raw, reply

    @staticmethod
    def _raise_if_error(op: str, reply: Mapping[str, Any]) -> None:
        if reply.get("ok") is False:
            raise ControlError(str(reply.get("error", f"{op!r} failed")), reply)

    def request(self, op: str, /, **fields: Any) -> dict:
        """Send a control request and return the decoded reply.

        Parameters
        ----------
        op : str
            Operation: ``"status"``, ``"snapshot"``, ``"refit"`` or an extension.
        **fields
            Further keys of the request, e.g. ``model="lidar"``.

        Returns
        -------
        dict
            The reply map (``"id"`` removed).

        Raises
        ------
        TimeoutError
            No reply within ``timeout`` seconds.
        ControlError
            The reply says ``ok: false``, or is not a msgpack map.
        """
        _, reply = self._exchange(op, fields, self.timeout)
        self._raise_if_error(op, reply)
        return reply

    def status(self) -> dict:
        """The daemon's status: uptime, models and counters (see ``docs/protocol.md``)."""
        return self.request("status")

    def source(self, source: str) -> dict:
        """What the daemon saw of one publisher's messages (op ``source``, an extension).

        Parameters
        ----------
        source : str
            The publisher id (``PointPublisher.source``).

        Returns
        -------
        dict
            ``known`` and the counters of docs/protocol.md (``messages_applied``,
            ``messages_rejected``, ``messages_lost``, ``end_seq``, ...).

        Raises
        ------
        ControlError
            If the daemon refuses, e.g. an older one that does not know the op.
        TimeoutError
            If no reply came in time.
        """
        return self.request("source", source=source)

    def snapshot(self, model: str | None = None) -> Mixture:
        """The current mixture of a model, labelled with the ``seq`` of its last update.

        Parameters
        ----------
        model : str, optional
            May be left out when the daemon runs one model.

        Returns
        -------
        Mixture
            With ``kind == "snapshot"``.

        Raises
        ------
        TimeoutError
            No reply within ``timeout`` seconds.
        ControlError
            The daemon refused (unknown model, no parameters yet...) or the snapshot does not
            validate.
        """
        return self._snapshot(model, self.timeout)

    def _snapshot(self, model: str | None, timeout: float) -> Mixture:
        fields = {} if model is None else {"model": model}
        raw, reply = self._exchange("snapshot", fields, timeout)
        self._raise_if_error("snapshot", reply)
        try:
            update = codec.decode_update(raw)
        except codec.DecodeError as exc:
            raise ControlError(f"invalid snapshot from {self.endpoint}: {exc}", reply) from None
        return Mixture.from_update(update)

    def refit(self, model: str, timeout: float = 120.0) -> int:
        """Run a batch EM refit of a model on its retained points now.

        Parameters
        ----------
        model : str
        timeout : float, default=120.0
            Seconds to wait for the reply (a refit of many points takes a while).

        Returns
        -------
        int
            The ``seq`` of the published refit update.

        Raises
        ------
        TimeoutError, ControlError
        """
        _, reply = self._exchange("refit", {"model": model}, _check_timeout("timeout", timeout))
        self._raise_if_error("refit", reply)
        seq = reply.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ControlError(f"refit reply without an integer 'seq': {reply!r}", reply)
        return seq

    def load(
        self,
        model: str,
        weights,
        means,
        covariances,
        covariance_type: str | None = None,
        weight: float | None = None,
        timeout: float = 10.0,
    ) -> int:
        """Replace a model's parameters by a mixture fitted elsewhere (op ``load``).

        The daemon publishes the mixture as a ``kind: "refit"`` update and continues its
        online updates from it, as a prior worth ``weight`` points (default: the points the
        model has seen). Dimension, number of components and covariance type must be the
        model's, or the daemon refuses.

        Parameters
        ----------
        model : str
        weights : array_like of shape (K,)
        means : array_like of shape (K, d)
        covariances : array_like
            Shaped per covariance type, as in an update.
        covariance_type : str, optional
            Checked against the model's (default: assumed to be the model's).
        weight : float, optional
            Prior weight of the mixture in points (e.g. the points of the batch fit).
        timeout : float, default=10.0

        Returns
        -------
        int
            The ``seq`` of the published refit update.

        Raises
        ------
        TimeoutError, ControlError
        """
        fields: dict[str, object] = {
            "model": model,
            "weights": codec.encode_array(np.asarray(weights, dtype=np.float64), "<f8"),
            "means": codec.encode_array(np.asarray(means, dtype=np.float64), "<f8"),
            "covariances": codec.encode_array(np.asarray(covariances, dtype=np.float64), "<f8"),
        }
        if covariance_type is not None:
            fields["covariance_type"] = covariance_type
        if weight is not None:
            fields["weight"] = float(weight)
        _, reply = self._exchange("load", fields, _check_timeout("timeout", timeout))
        self._raise_if_error("load", reply)
        seq = reply.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ControlError(f"load reply without an integer 'seq': {reply!r}", reply)
        return seq

    def close(self) -> None:
        """Close the socket (pending requests are abandoned)."""
        self._closed = True
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Clone pattern subscriber
# ---------------------------------------------------------------------------------------------


class MixtureSubscriber:
    """A live copy of one model's mixture, kept in step with the Clone pattern.

    The SUB socket subscribes to ``gmm/<model>`` first; then a snapshot is requested, so no
    update published meanwhile is missed (it waits in the SUB queue). After that only updates
    with a ``seq`` greater than the last applied one are applied: older ones, queued before the
    snapshot, are dropped. A ``seq`` that skips (a lost update) is counted in :attr:`gaps` and
    triggers a re-sync by snapshot (:attr:`resyncs`). A ``seq`` that goes back with a newer
    daemon stamp means the daemon restarted without its checkpoint; that re-syncs too.

    When the snapshot is refused (the model has no parameters yet) or unanswered, the
    subscriber keeps listening: the first live update is a whole mixture and is applied; the
    snapshot is retried every `retry_interval` seconds until then.

    Parameters
    ----------
    publish_endpoint : str
        The daemon's update endpoint, e.g. ``"tcp://127.0.0.1:5556"``.
    control_endpoint : str
        The daemon's control endpoint, e.g. ``"tcp://127.0.0.1:5557"``.
    model : str
        Model name.
    context : zmq.Context, optional
        Default: ``zmq.Context.instance()``.
    timeout : float, default=5.0
        Seconds to wait for a snapshot reply.
    curve : CurveKeys, optional
        CURVE keys for both sockets.
    retry_interval : float, default=1.0
        Seconds between snapshot attempts while no mixture is known.

    Attributes
    ----------
    current : Mixture or None
        The last mixture returned.
    gaps : int
        Updates whose ``seq`` skipped ahead.
    resyncs : int
        Snapshots requested to re-sync after a gap or a daemon restart.
    rejected : int
        Received frames that did not decode as an update of this model (skipped).
    stale : int
        Updates dropped because their ``seq`` was not newer than the applied one.
    last_error : str or None
        Why the last snapshot attempt failed, if it did.

    Examples
    --------
    >>> with MixtureSubscriber("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557",
    ...                        "lidar") as sub:  # doctest: +SKIP
    ...     for mixture in sub:
    ...         print(mixture.seq, mixture.weights)
    """

    def __init__(
        self,
        publish_endpoint: str,
        control_endpoint: str,
        model: str,
        *,
        context: zmq.Context | None = None,
        timeout: float = 5.0,
        curve: CurveKeys | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self.model = model
        self.topic = codec.update_topic(model)
        self.timeout = _check_timeout("timeout", timeout)
        self.retry_interval = _check_timeout("retry_interval", retry_interval)
        self.current: Mixture | None = None
        self.gaps = 0
        self.resyncs = 0
        self.rejected = 0
        self.stale = 0
        self.last_error: str | None = None
        self._seq: int | None = None  # seq of the applied state; None = not in sync
        self._next_snapshot = 0.0  # monotonic time of the next snapshot attempt
        ctx = context if context is not None else zmq.Context.instance()
        sub = ctx.socket(zmq.SUB)
        try:
            sub.linger = 0
            _apply_curve(sub, curve)
            # Subscribe before anything else: the Clone pattern needs the updates queued
            # while the snapshot is on its way.
            sub.setsockopt(zmq.SUBSCRIBE, self.topic)
            sub.connect(publish_endpoint)
            self._control = ControlClient(
                control_endpoint, timeout=self.timeout, context=ctx, curve=curve
            )
        except Exception:
            sub.close(linger=0)
            raise
        self._sub: zmq.Socket | None = sub

    # -------------------------------------------------------------- internals

    def _snapshot(self, deadline: float | None) -> Mixture | None:
        """One snapshot attempt; None (and last_error set) when it fails."""
        timeout = self.timeout
        if deadline is not None:
            # Stay close to the caller's deadline, but give the daemon a fair chance to answer.
            timeout = min(timeout, max(deadline - time.monotonic(), 0.25))
        try:
            mixture = self._control._snapshot(self.model, timeout)
            if mixture.model != self.model:
                raise ControlError(f"snapshot is of model {mixture.model!r}, not {self.model!r}")
        except (ControlError, TimeoutError) as exc:
            self.last_error = str(exc)
            if isinstance(exc, ControlError) and exc.code == _NO_SUCH_MODEL:
                # Unlike "no parameters yet", this will not change while the daemon runs:
                # waiting for it would only hide a typo in the model name.
                raise
            self._next_snapshot = time.monotonic() + self.retry_interval
            return None
        self.last_error = None
        return mixture

    def _apply(self, mixture: Mixture) -> Mixture:
        self._seq = mixture.seq
        self.current = mixture
        return mixture

    def _resync(self, update: Mixture, deadline: float | None) -> Mixture:
        """After a gap or restart: take a snapshot, apply the newer of it and `update`."""
        self.resyncs += 1
        snap = self._snapshot(deadline)
        # Both are whole mixtures; the snapshot is normally the newer (seq >= update's).
        if snap is not None and snap.seq >= update.seq:
            return self._apply(snap)
        return self._apply(update)

    def _decode(self, frames: list[bytes]) -> Mixture | None:
        if frames[0] != self.topic:
            # The subscription is a prefix: "gmm/lidar" also receives "gmm/lidar2". Those are
            # another model's updates, not errors.
            return None
        try:
            if len(frames) != 2:
                raise codec.DecodeError("schema", f"{len(frames)} frames, expected 2")
            mixture = Mixture.from_update(codec.decode_update(frames[1]))
        except codec.DecodeError:
            self.rejected += 1
            return None
        if mixture.model != self.model:
            self.rejected += 1
            return None
        return mixture

    def _handle(self, update: Mixture, deadline: float | None) -> Mixture | None:
        """Apply one decoded update; returns the mixture to hand out, or None."""
        if self._seq is None:
            # Not in sync yet (no snapshot): a live update carries the whole state.
            return self._apply(update)
        current = self.current
        if update.seq <= self._seq:
            if current is not None and update.seq < self._seq and update.stamp > current.stamp:
                # seq went back on newer daemon time: restarted without checkpoint.
                return self._resync(update, deadline)
            self.stale += 1
            return None
        if update.seq > self._seq + 1:
            self.gaps += 1
            return self._resync(update, deadline)
        return self._apply(update)

    # -------------------------------------------------------------- public API

    def recv(self, timeout: float | None = None) -> Mixture | None:
        """The next mixture: the first snapshot, then each newer update.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; ``None`` waits forever. A snapshot round trip may overrun a very
            short timeout by up to 0.25 s.

        Returns
        -------
        Mixture or None
            None when nothing new arrived within `timeout`.

        Raises
        ------
        ControlError
            The daemon has no model of this name (its message lists the models it has).
        """
        if self._sub is None:
            raise RuntimeError("the subscriber is closed")
        deadline = None
        if timeout is not None:
            deadline = time.monotonic() + _check_timeout("timeout", timeout)
        while True:
            now = time.monotonic()
            if self._seq is None and now >= self._next_snapshot:
                snap = self._snapshot(deadline)
                if snap is not None:
                    return self._apply(snap)
                now = time.monotonic()
            wait = None if deadline is None else deadline - now
            if self._seq is None:
                until_retry = max(self._next_snapshot - now, 0.0)
                wait = until_retry if wait is None else min(wait, until_retry)
            # A zero wait still polls once, so recv(timeout=0) sees what is already queued.
            if self._sub.poll(None if wait is None else _ms(max(wait, 0.0)), zmq.POLLIN):
                # Drain what is queued without waiting before checking the deadline again.
                while self._sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    update = self._decode(self._sub.recv_multipart())
                    if update is not None:
                        mixture = self._handle(update, deadline)
                        if mixture is not None:
                            return mixture
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Mixture]:
        """Yield mixtures forever (the snapshot first)."""
        while True:
            mixture = self.recv()
            if mixture is not None:
                yield mixture

    def close(self) -> None:
        """Close both sockets."""
        if self._sub is not None:
            self._sub.close(linger=0)
            self._sub = None
        self._control.close()

    def __enter__(self) -> MixtureSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
