"""Replaying points to a daemon: message batches, pacing, the pre-check and delivery.

What ``streamgmm publish`` does, without argparse or printing: cut synthetic sweeps or the
clouds of a file into :class:`Outgoing` messages (:func:`synthetic_batches`,
:func:`file_messages`), ask the daemon beforehand whether a model takes them
(:func:`check_against_daemon`), send them at a rate or a recording's pace (:func:`send_paced`),
and ask afterwards what became of them (:func:`ask_source`, :func:`confirm`). ZeroMQ and the
clients are imported by the functions that talk to a daemon.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "CHECK_TIMEOUT_S",
    "CONFIRM_TIMEOUT_S",
    "DEFAULT_BATCH",
    "ONE_ROW_BATCH",
    "PUBLISH_LINGER_S",
    "SYNTHETIC_POINTS",
    "Delivery",
    "Outgoing",
    "ReplayError",
    "Sent",
    "SourceAnswer",
    "ask_source",
    "check_against_daemon",
    "confirm",
    "file_messages",
    "send_paced",
    "source_counters",
    "synthetic_batches",
]

#: Points in one synthetic sweep when no count says otherwise.
SYNTHETIC_POINTS = 100_000
#: How long a publisher waits at the end for queued messages to leave before dropping them.
PUBLISH_LINGER_S = 10.0
#: Points per message when no batch size is given (a bag's clouds go one per message).
DEFAULT_BATCH = 4096
#: How long to wait for the daemon's status before sending without checking.
CHECK_TIMEOUT_S = 1.0
#: IMU samples (one row per bag message) per published message when no batch size is given.
ONE_ROW_BATCH = 100
#: How long to wait at the end for the daemon to have the end marker.
CONFIRM_TIMEOUT_S = 5.0


class ReplayError(ValueError):
    """Points that cannot be replayed as asked (wrong dimension, no model takes them)."""


class Outgoing(NamedTuple):
    """One message to send: points, sensor stamp (None: the schedule's, see
    :func:`send_paced`), frame, recorded time (pacing)."""

    points: np.ndarray
    stamp: float | None = None
    frame: str = ""
    time: float | None = None


def synthetic_batches(kind: str, *, batch: int, count: int | None = None, loop: bool = False,
                      dim: int | None = None, seed: int = 0) -> Iterator[np.ndarray]:
    """Batches of a synthetic sensor.

    Parameters
    ----------
    kind : {"lidar", "moving"}
        A LiDAR sweep of a room (3-D) or a sensor moving past blobs.
    batch : int
        Points per batch.
    count : int, optional
        Points of one sweep (default :data:`SYNTHETIC_POINTS`).
    loop : bool
        Sweeps without end, each from the next seed, of at most :data:`SYNTHETIC_POINTS`.
    dim : int, optional
        Dimension of ``moving`` (default 3); ``lidar`` is 3-D only.
    seed : int
        Seed of the first sweep.

    Yields
    ------
    numpy.ndarray
        Shape (m, d), m <= ``batch``.

    Raises
    ------
    ReplayError
        If ``lidar`` is asked for another dimension than 3.
    """
    from streamgmm.synthetic import lidar_scene, moving_sensor_stream

    dim = 3 if dim is None else dim
    if kind == "lidar" and dim != 3:
        raise ReplayError("--synthetic lidar makes 3-D points; leave out --dim or use --dim 3")
    per_pass = count or SYNTHETIC_POINTS
    if loop:
        per_pass = min(per_pass, SYNTHETIC_POINTS)
    while True:
        if kind == "lidar":
            sweep = lidar_scene(per_pass, seed=seed)
            for start in range(0, len(sweep), batch):
                yield sweep[start : start + batch]
        else:
            yield from moving_sensor_stream(per_pass, batch_size=batch, dim=dim, seed=seed)
        if not loop:
            return
        seed += 1


def _grouped(group: list[Any], frame: str, when: float | None) -> Outgoing:
    """One message of several one-row clouds (IMU samples): the last one's stamp and frame."""
    tail = group[-1]
    return Outgoing(np.concatenate([c.points for c in group]), tail.stamp, frame or tail.frame,
                    when)


def file_messages(read_pass: Callable[[int], Iterable[Any]], *, batch: int | None = None,
                  frame: str = "", loop: bool = False) -> Iterator[Outgoing]:
    """Messages from the clouds of a file, with their recorded times for pacing.

    Parameters
    ----------
    read_pass : callable
        ``read_pass(i)``: the clouds (:class:`streamgmm.formats.Cloud`) of pass ``i`` over
        the file (0 first).
    batch : int, optional
        Points per message. Without it a cloud with a time (a bag message) is one message,
        one-row clouds (IMU samples) are grouped :data:`ONE_ROW_BATCH` at a time, and other
        files are cut into :data:`DEFAULT_BATCH` points.
    frame : str
        Frame of every message (default: each cloud's).
    loop : bool
        Read the file again and again, the recorded times carrying on from the last pass.

    Yields
    ------
    Outgoing
    """
    offset = 0.0  # recorded time of a pass, carried over so that looping keeps pacing forward
    n_pass = 0
    while True:
        first_time = last = None
        sent_any = False
        group: list[Any] = []  # one-row clouds waiting to fill a message
        for cloud in read_pass(n_pass):
            data = cloud.points
            when = None
            if cloud.time is not None:
                first_time = cloud.time if first_time is None else first_time
                when = offset + cloud.time - first_time
                last = when
            if getattr(cloud, "one_row", False):
                if len(data):
                    group.append(cloud)
                if sum(len(c.points) for c in group) >= (batch or ONE_ROW_BATCH):
                    sent_any = True
                    yield _grouped(group, frame, last)
                    group = []
                continue
            step = batch or (len(data) if cloud.time is not None else DEFAULT_BATCH)
            for start in range(0, len(data), max(step, 1)):
                sent_any = True
                yield Outgoing(data[start : start + step], cloud.stamp, frame or cloud.frame,
                               when)
        if group:
            sent_any = True
            yield _grouped(group, frame, last)
        n_pass += 1
        if not loop or not sent_any:
            return
        if last is not None:
            offset = last


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def check_against_daemon(control: str, curve: Any, topic: str, dim: int,
                         what: str) -> str | None:
    """Refuse points that no model of the daemon would take, before sending any.

    Asks the daemon's ``status`` which models subscribe to a prefix of ``topic`` and their
    ``dim``.

    Parameters
    ----------
    control : str
        The daemon's control endpoint.
    curve : streamgmm.keys.CurveKeys or None
    topic : str
        The topic the points will be sent on.
    dim : int
        Their dimension.
    what : str
        What holds the points, for the message.

    Returns
    -------
    str or None
        None when checked (or nothing to check); else why nothing was checked (no answer
        within :data:`CHECK_TIMEOUT_S`: another daemon, other CURVE keys), as a note.

    Raises
    ------
    ReplayError
        If no model subscribes to ``topic``, or none of those that do has dimension ``dim``.
    """
    import zmq

    from streamgmm.client import ControlClient, ControlError

    try:
        with ControlClient(control, timeout=CHECK_TIMEOUT_S, curve=curve) as ctl:
            status = ctl.status()
    except (TimeoutError, ControlError, zmq.ZMQError) as exc:
        return f"no status from {control} ({_one_line(exc)}); topic and dimension not checked"
    models = status.get("models")
    if not isinstance(models, Mapping) or not models:
        return None
    models = {name: m for name, m in models.items() if isinstance(m, Mapping)}
    if all(isinstance(m.get("topic"), str) for m in models.values()):
        matching = {n: m for n, m in models.items() if topic.startswith(m["topic"])}
        if not matching:
            subscribed = ", ".join(f"{m['topic']!r} (model {n!r}, dim {m.get('dim')})"
                                   for n, m in models.items())
            raise ReplayError(
                f"no model subscribes to topic {topic!r} at {control}; subscribed "
                f"topic prefixes: {subscribed} (topics match by prefix: --topic "
                "points/lidar_front feeds a model of topic points/lidar); nothing sent "
                "(--no-check sends anyway)"
            )
    else:
        matching = models  # a daemon that does not report topics: the dimension only
    if any(m.get("dim") == dim for m in matching.values()):
        return None
    wanted = " and ".join(f"model {n!r} has dim {m.get('dim')}" for n, m in matching.items())
    raise ReplayError(
        f"{what} holds {dim}-D points but on topic {topic!r} {wanted} (daemon at "
        f"{control}); nothing sent (--no-check sends anyway)"
    )


class Delivery(NamedTuple):
    """What the daemon reports of one publisher's messages (op ``source``)."""

    applied: int
    rejected: int
    points_applied: int
    end_seq: int


def source_counters(reply: Mapping[str, Any]) -> Delivery:
    """The :class:`Delivery` counters of a ``source`` reply (0, or -1 for ``end_seq``, when
    absent)."""
    def get(key: str, default: int = 0) -> int:
        value = reply.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return Delivery(get("messages_applied"), get("messages_rejected"), get("points_applied"),
                    get("end_seq", -1))


class SourceAnswer(NamedTuple):
    """The daemon's answer to ``source``: the reply, or why there is none."""

    reply: dict | None
    why: str = ""
    #: The daemon answered but refused the op: it does not report deliveries (an older one).
    refused: bool = False


def ask_source(control: str, curve: Any, source: str, timeout: float) -> SourceAnswer:
    """Ask the daemon what became of the messages of ``source``.

    Parameters
    ----------
    control : str
        The daemon's control endpoint.
    curve : streamgmm.keys.CurveKeys or None
    source : str
        The publisher id.
    timeout : float
        Seconds to wait for the reply.

    Returns
    -------
    SourceAnswer
    """
    import zmq

    from streamgmm.client import ControlClient, ControlError

    try:
        with ControlClient(control, timeout=timeout, curve=curve) as ctl:
            return SourceAnswer(ctl.source(source))
    except TimeoutError:
        hint = ("is the daemon running, and does it accept these keys?" if curve
                else "is the daemon running?")
        return SourceAnswer(None, f"no answer from {control} within {timeout:.1f} s ({hint})")
    except ControlError as exc:
        return SourceAnswer(None, f"the daemon at {control} does not report deliveries (an "
                            f"older version? it says: {_one_line(exc)})", refused=True)
    except zmq.ZMQError as exc:
        return SourceAnswer(None, f"cannot ask {control}: {exc}")


def confirm(control: str, curve: Any, source: str, marker: int,
            timeout: float) -> tuple[Delivery | None, bool, str]:
    """Poll the daemon until it has this publisher's end marker or ``timeout`` passes.

    Returns
    -------
    tuple
        ``(counters or None, marker seen, why not)``.
    """
    deadline = time.monotonic() + timeout
    last = None
    why = ""
    while True:
        remaining = deadline - time.monotonic()
        answer = ask_source(control, curve, source, max(min(remaining, 2.0), 0.2))
        why = answer.why
        if answer.reply is not None:
            last = source_counters(answer.reply)
            if last.end_seq == marker:
                return last, True, ""
        if time.monotonic() >= deadline:
            return last, False, why
        time.sleep(0.05)


def still_absorbing(control: str, curve: Any, topic: str) -> tuple[int, float]:
    """Points the daemon's models on ``topic`` hold read but not yet absorbed, and the
    seconds that takes at their measured cost (NaN if unknown); ``(0, 0.0)`` if no status
    answers within :data:`CHECK_TIMEOUT_S`.

    The daemon reads ahead of what it absorbs: once it has a stream's end marker, its
    backlog may still hold much of the stream (``backlog_points`` in ``status``).
    """
    import zmq

    from streamgmm.client import ControlClient, ControlError

    try:
        with ControlClient(control, timeout=CHECK_TIMEOUT_S, curve=curve) as ctl:
            models = ctl.status().get("models")
    except (TimeoutError, ControlError, zmq.ZMQError):
        return 0, 0.0
    points, seconds = 0, 0.0
    for model in (models.values() if isinstance(models, Mapping) else ()):
        if not (isinstance(model, Mapping) and isinstance(model.get("topic"), str)
                and topic.startswith(model["topic"])):
            continue
        backlog = model.get("backlog_points")
        if isinstance(backlog, int) and backlog > 0:
            points += backlog
            cost = model.get("seconds_per_point")
            cost = float(cost) if isinstance(cost, (int, float)) else float("nan")
            seconds = max(seconds, backlog * cost if cost > 0 else float("nan"))
    return points, seconds


class Sent(NamedTuple):
    """What :func:`send_paced` sent: messages, points, when it started, and whether it was
    interrupted (KeyboardInterrupt)."""

    messages: int
    points: int
    start: float
    interrupted: bool


def send_paced(send: Callable[[np.ndarray, float | None, str], Any],
               messages: Iterable[Outgoing], *, rate: float | None = None,
               speed: float = 1.0, count: int | None = None) -> Sent:
    """Send messages at a fixed rate, or at their recorded pace, or as fast as possible.

    Parameters
    ----------
    send : callable
        ``send(points, stamp, frame)``, e.g. a bound :meth:`PointPublisher.send` wrapper.
    messages : iterable of Outgoing
    rate : float, optional
        Points per second; overrides ``speed``. The last message takes its time slot too,
        so the achieved rate is honest.
    speed : float
        Factor of the recorded pace of messages with a ``time`` (0: as fast as possible).
    count : int, optional
        Stop after this many points (the last message is cut).

    A message without a sensor stamp is stamped with the time its schedule gives it: the
    start plus ``points / rate``, or plus its recorded time, or the start itself when sent
    as fast as possible; never the moment it happened to leave.

    Returns
    -------
    Sent
        A KeyboardInterrupt (Ctrl-C, or SIGTERM made one) ends the sending early.
    """
    n_messages = points = 0
    interrupted = False
    start = time.perf_counter()
    epoch = time.time()
    try:
        for out in messages:
            batch = out.points
            if count is not None:
                batch = batch[: count - points]
            if len(batch):
                # Absolute schedules from the start: sleeping errors never accumulate.
                if rate:
                    delay = start + points / rate - time.perf_counter()
                elif out.time is not None and speed > 0:
                    delay = start + out.time / speed - time.perf_counter()
                else:
                    delay = 0.0
                if delay > 0:
                    time.sleep(delay)
                stamp = out.stamp
                if stamp is None:
                    # Points without sensor time get the stamps of the schedule, not of the
                    # sending: the daemon groups messages into steps by their stamps
                    # (streamgmm.daemon.steps), so its model does not depend on how fast
                    # this machine sent them.
                    stamp = epoch + (points / rate if rate else (out.time or 0.0))
                send(batch, stamp, out.frame)
                n_messages += 1
                points += len(batch)
            if count is not None and points >= count:
                break
        if rate:
            delay = start + points / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        interrupted = True
    return Sent(n_messages, points, start, interrupted)
