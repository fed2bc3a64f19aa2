"""``streamgmm publish``: replay a file or a synthetic sensor to the daemon.

The batches, pacing, pre-check and delivery questions are :mod:`streamgmm.replay`; this
module turns options into calls and results into lines and exit statuses.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from streamgmm.cli.common import (
    DEFAULT_CONTROL,
    DEFAULT_INGEST,
    CliError,
    ReadCounts,
    client_errors,
    curve_keys,
    curve_options,
    endpoint,
    field_list,
    file_formats,
    iter_file_clouds,
    positive_float,
    positive_int,
    row_filter,
    row_filter_options,
    seconds,
    speed,
)
from streamgmm.replay import (
    CHECK_TIMEOUT_S,
    CONFIRM_TIMEOUT_S,
    DEFAULT_BATCH,
    PUBLISH_LINGER_S,
    SYNTHETIC_POINTS,
    Delivery,
    Outgoing,
    ReplayError,
    ask_source,
    check_against_daemon,
    confirm,
    file_messages,
    send_paced,
    source_counters,
    still_absorbing,
    synthetic_batches,
)

# Exit status of `publish` when the daemon answered and not every message was applied, and
# when no daemon answered the question at all (delivery unknown).
EXIT_NOT_APPLIED = 1
EXIT_NOT_CONFIRMED = 3


def _file_batches(args: argparse.Namespace, counts: ReadCounts) -> Iterator[Outgoing]:
    """Messages from --file (:func:`streamgmm.replay.file_messages`); what is not a
    measurement is dropped and counted into ``counts`` (first pass only)."""
    rule = row_filter(args)

    def read_pass(n_pass: int) -> Iterator[Any]:
        for cloud in iter_file_clouds(args.file, topic=args.ros_topic, fields=args.fields,
                                      rule=rule, counts=counts if n_pass == 0 else ReadCounts(),
                                      command="publish"):
            data = cloud.points
            if len(data) and args.dim is not None and data.shape[1] != args.dim:
                raise CliError(
                    f"{args.file} holds {data.shape[1]}-D points, not --dim {args.dim}"
                )
            yield cloud

    return file_messages(read_pass, batch=args.batch, frame=args.frame, loop=args.loop)


def _control_of(args: argparse.Namespace) -> str | None:
    """The daemon's control endpoint: --control, else the example's when --endpoint is the
    example's ingest endpoint, else unknown (None)."""
    if args.control is not None:
        return args.control
    return DEFAULT_CONTROL if args.endpoint == DEFAULT_INGEST else None


def _cmd_publish(args: argparse.Namespace) -> int:
    curve = curve_keys(args)
    counts = ReadCounts()  # rows dropped from --file before sending
    if args.file is not None:
        batches = _file_batches(args, counts)
    else:
        if args.ros_topic is not None or args.fields is not None:
            raise CliError("--ros-topic and --fields apply to --file only")
        if args.min_range is not None or args.max_range is not None or args.keep_zeros:
            raise CliError("--min-range, --max-range and --keep-zeros apply to --file only")
        args.batch = args.batch or DEFAULT_BATCH
        batches = (Outgoing(b) for b in synthetic_batches(
            args.synthetic, batch=args.batch, count=args.count, loop=args.loop, dim=args.dim,
            seed=args.seed))
    try:
        # Load/generate the first batch before opening the socket, so bad input fails fast.
        first = next(batches, None)
        if first is None:
            dropped = counts.dropped_clause()
            raise CliError("no points to send" + (f" ({dropped})" if dropped else ""))
        dim = int(first.points.shape[1])
        control = _control_of(args)
        if not args.no_check and control is not None:
            what = args.file if args.file is not None else f"--synthetic {args.synthetic}"
            note = check_against_daemon(control, curve, args.topic, dim, what)
            if note:
                print(f"streamgmm publish: note: {note}", file=sys.stderr)
    except ReplayError as exc:
        raise CliError(str(exc)) from None
    if args.lossless is None:
        # As fast as possible: wait for the daemon rather than drop. Paced like a live sensor
        # (--rate, or a recording's --speed): drop what a full queue cannot take, as it would.
        args.lossless = not args.rate and (args.speed == 0 or first.time is None)
    return _send(args, curve, counts, itertools.chain([first], batches), dim)


def _send(args: argparse.Namespace, curve: Any, counts: ReadCounts,
          batches: Iterator[Outgoing], dim: int) -> int:
    import zmq

    from streamgmm.client import PointPublisher

    source = args.source or f"{_socket_name()}-{os.getpid()}"
    control = None if args.no_confirm else _control_of(args)
    baseline = Delivery(0, 0, 0, -1)
    answered = False  # the daemon answered before we sent: worth waiting for at the end
    can_confirm = control is not None
    why_not = "" if can_confirm else (
        "delivery not confirmed: the daemon's control endpoint is not known (give --control, "
        "or --no-confirm)")
    if can_confirm:
        # What the daemon knew of this source before: the answer at the end is compared
        # with it. No answer now is not final (the daemon may come up); an older daemon is.
        answer = ask_source(control, curve, source, CHECK_TIMEOUT_S)
        if answer.reply is not None:
            baseline = source_counters(answer.reply)
            answered = True
        elif answer.refused:
            can_confirm, why_not = False, f"delivery not confirmed: {answer.why}"

    marker: int | None = None
    # confirm()'s (counters, marker seen, why not) and the seconds it waited at most.
    confirmation: tuple | None = None
    delivered = 0.0
    # A context of our own: terminating it waits until the queued messages have left (see the
    # end), so the summary measures delivery, not how fast ZeroMQ accepts messages.
    context = zmq.Context()
    try:
        with client_errors(f"cannot publish to {args.endpoint}", curve):
            pub = PointPublisher(args.endpoint, args.topic, source=source, bind=args.bind,
                                 curve=curve, context=context,
                                 linger_ms=int(PUBLISH_LINGER_S * 1000),
                                 lossless=args.lossless)
    except BaseException:
        context.destroy(linger=0)
        raise
    start = time.perf_counter()
    interrupted = False
    try:
        if args.wait_subscriber > 0 and not pub.wait_for_subscriber(args.wait_subscriber):
            print(
                f"streamgmm publish: warning: no subscriber to {args.topic!r} after "
                f"{args.wait_subscriber:g} s; sending anyway (messages may be lost)",
                file=sys.stderr,
            )

        def send(points: np.ndarray, stamp: float | None, frame: str) -> None:
            pub.send(points, stamp=stamp, frame=frame or args.frame)

        sent = send_paced(send, batches, rate=args.rate, speed=args.speed, count=args.count)
        start, interrupted = sent.start, sent.interrupted
        messages, points = sent.messages, sent.points
        if can_confirm and messages:
            # After everything else on the same connection: once the daemon has it, every
            # message before it has arrived or was lost.
            marker = pub.send_end(dim)
            # Asked before the connection closes: a peer that closes while the daemon's
            # queue is full loses what libzmq had not read from it yet.
            assert control is not None
            wait = _confirm_wait(args, answered, interrupted)
            confirmation = (*confirm(control, curve, source, marker, wait), wait)
            delivered = time.perf_counter()
    finally:
        # After an interrupt hand over what is queued for a moment only: the user wants out.
        pub.close(linger_ms=1000 if interrupted else None)
        flush_start = time.perf_counter()
        context.term()  # returns once every queued message is handed to the network (or linger)
        end = time.perf_counter()
    if confirmation is not None and confirmation[1]:
        end = delivered  # the daemon had every message then
    return _report(args, curve, counts, control, baseline, can_confirm, why_not, marker,
                   confirmation, messages, points, end - start, end - flush_start,
                   interrupted)


def _confirm_wait(args: argparse.Namespace, answered: bool, interrupted: bool) -> float:
    """How long to wait for the daemon to have the end marker: --confirm-timeout, less when
    nobody answered before sending (no miracle to wait for) or after an interrupt."""
    wait = args.confirm_timeout if answered else min(args.confirm_timeout, 2 * CHECK_TIMEOUT_S)
    return min(wait, 1.0) if interrupted else wait


def _socket_name() -> str:
    import socket

    return socket.gethostname()


def _report(args: argparse.Namespace, curve: Any, counts: ReadCounts, control: str | None,
            baseline: Delivery, can_confirm: bool, why_not: str, marker: int | None,
            confirmation: tuple | None, messages: int, points: int, seconds_taken: float,
            flush_seconds: float, interrupted: bool) -> int:
    """Print the summary lines; the exit status (0, EXIT_NOT_APPLIED, EXIT_NOT_CONFIRMED)."""
    if flush_seconds >= (1.0 if interrupted else PUBLISH_LINGER_S) - 0.05:
        print(
            f"streamgmm publish: warning: messages still queued after "
            f"{flush_seconds:.1f} s were dropped (the receiver did not keep up)",
            file=sys.stderr,
        )
    for warning in counts.damaged:
        print(f"streamgmm publish: warning: {warning}", file=sys.stderr)
    achieved = points / seconds_taken if seconds_taken > 0 else float("inf")
    dropped = counts.dropped_clause()
    print(
        f"sent {messages} messages, {points} points in {seconds_taken:.3f} s "
        f"({achieved:.0f} points/s)" + (f"; {dropped}" if dropped else "")
    )
    if args.no_confirm:
        return 0
    if not can_confirm or marker is None or confirmation is None:
        if messages and why_not:
            print(f"streamgmm publish: {why_not}", file=sys.stderr)
        return 0 if not messages else EXIT_NOT_CONFIRMED
    final, seen, why, wait = confirmation
    assert control is not None  # a confirmation was asked of it
    if final is None:
        print(f"sent {messages}, applied ?, rejected ?, lost ? (delivery not confirmed: {why})")
        print(f"streamgmm publish: error: no daemon answered at {control}; {messages} messages "
              "not confirmed", file=sys.stderr)
        return EXIT_NOT_CONFIRMED
    applied = final.applied - baseline.applied
    rejected = final.rejected - baseline.rejected
    lost = max(messages - applied - rejected, 0)
    line = (f"sent {messages}, applied {applied}, rejected {rejected}, lost {lost} "
            f"({final.points_applied - baseline.points_applied} points applied)")
    if not seen:
        line += (f"; the daemon has not seen the end of this stream within {wait:g} s, so "
                 "the lost ones may still be on their way")
    print(line)
    if seen and applied:
        backlog, seconds = still_absorbing(control, curve, args.topic)
        if backlog:
            eta = f", about {seconds:.0f} s more" if math.isfinite(seconds) else ""
            print(f"streamgmm publish: note: the daemon is still absorbing {backlog} points it "
                  f"has read{eta} (backlog_points in 'streamgmm status'; n_seen grows until "
                  "then)", file=sys.stderr)
    if seen and applied == messages:
        return 0
    what = []
    if rejected:
        what.append(f"{rejected} rejected (see 'streamgmm status' and the daemon's log)")
    if lost:
        what.append(f"{lost} lost" if seen else f"{lost} not seen")
    print(f"streamgmm publish: error: not every message was applied: {', '.join(what)}",
          file=sys.stderr)
    return EXIT_NOT_APPLIED



def add_parser(commands: Any) -> None:
    """The ``publish`` subcommand."""
    p = commands.add_parser(
        "publish", help="send points from a file or a synthetic sensor to the daemon",
        description="Replay a file (" + file_formats() + "; of a bag, its PointCloud2, Imu "
        "or LaserScan messages) or a synthetic moving sensor as point messages [topic, "
        "payload], in batches, optionally at a fixed rate; rows with NaN/Inf are dropped and "
        "counted; prints a summary line. See docs/formats.md.",
    )
    p.add_argument("--endpoint", default=DEFAULT_INGEST, type=endpoint,
                   help=f"daemon ingest endpoint (default {DEFAULT_INGEST})")
    p.add_argument("--topic", default="points/lidar",
                   help="topic of the messages (default points/lidar)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="FILE",
                        help=file_formats("points: "))
    source.add_argument("--synthetic", choices=("lidar", "moving"),
                        help="a LiDAR sweep of a room (3-D) or a sensor moving past blobs")
    p.add_argument("--dim", type=positive_int, default=None,
                   help="point dimension (synthetic moving: default 3; a file must match)")
    p.add_argument("--rate", type=positive_float, default=None, metavar="POINTS_PER_S",
                   help="points per second (default: as fast as possible)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help=f"points per message (default {DEFAULT_BATCH}; a bag: one message per "
                   "cloud, split at --batch when given)")
    p.add_argument("--ros-topic", default=None, metavar="TOPIC",
                   help="topic of a bag: PointCloud2, Imu or LaserScan (may be left out when "
                   "it has one PointCloud2 topic, or one readable topic)")
    p.add_argument("--fields", type=field_list, default=None, metavar="x,y,z",
                   help="fields to send, in order: of a point cloud or PointCloud2 (default "
                   "x,y,z), an Imu (default linear_acceleration,angular_velocity; a group "
                   "or one axis, e.g. angular_velocity.z), a LaserScan (default x,y), or the "
                   "header names of a CSV/Parquet table (default: every column but time)")
    p.add_argument("--speed", type=speed, default=1.0, metavar="FACTOR",
                   help="replay a bag at FACTOR times its recorded pace (default 1; 0 = as "
                   "fast as possible); --rate overrides it")
    p.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=None,
                   help="wait while the daemon's queue is full instead of dropping messages "
                   "(default: on when sending as fast as possible, off when paced by --rate "
                   "or a recording's --speed, as a live sensor is)")
    p.add_argument("--count", type=positive_int, default=None, metavar="N_POINTS",
                   help="stop after this many points (default: the file once, or "
                   f"{SYNTHETIC_POINTS} synthetic points)")
    p.add_argument("--loop", action="store_true",
                   help="repeat the file (or new synthetic sweeps) until --count or Ctrl-C")
    p.add_argument("--bind", action="store_true",
                   help="bind the endpoint (for a daemon that connects to publishers)")
    p.add_argument("--source", default=None, help="publisher id (default HOSTNAME-PID)")
    p.add_argument("--frame", default="", help="coordinate frame carried in each message")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument("--wait-subscriber", type=seconds, default=2.0, metavar="S",
                   help="wait up to S seconds for the daemon to subscribe before sending, so "
                   "the first messages are not lost (default 2; 0 = do not wait)")
    p.add_argument("--control", default=None, type=endpoint,
                   help="control endpoint of the daemon, asked (1 s at most) which model "
                   "subscribes to --topic and its dim before sending; default "
                   f"{DEFAULT_CONTROL} when --endpoint is the default, else no check")
    p.add_argument("--no-check", action="store_true",
                   help="send without asking the daemon (its counters still show rejections)")
    p.add_argument("--no-confirm", action="store_true",
                   help="do not ask the daemon at the end what arrived; exit 0 once sent")
    p.add_argument("--confirm-timeout", type=seconds, default=CONFIRM_TIMEOUT_S, metavar="S",
                   help="how long to wait at the end for the daemon to have received this "
                   f"stream's end marker (default {CONFIRM_TIMEOUT_S:g})")
    row_filter_options(p)
    curve_options(p)
    p.set_defaults(func=_cmd_publish)

