"""The ``streamgmm`` command: run the daemon, publish points, watch mixtures, query, fit offline.

Every subcommand has ``--help``. Errors print one line on stderr and exit with status 2;
``watch`` exits 1 when no mixture arrived before its ``--timeout``. The ZeroMQ clients are
imported by the subcommands that need them, so ``streamgmm fit`` and ``--help`` stay light.
See ``docs/cli.md`` for examples.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

import streamgmm
from streamgmm.core.params import COVARIANCE_TYPES

if TYPE_CHECKING:
    from streamgmm.client import Mixture

__all__ = ["CliError", "build_parser", "main"]

# The endpoints of configs/example.toml, as seen from a client on the same machine.
DEFAULT_INGEST = "tcp://127.0.0.1:5555"
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"

# Points in one synthetic sweep when --count does not say otherwise.
SYNTHETIC_POINTS = 100_000
# How long `publish` waits at the end for queued messages to leave before dropping them.
PUBLISH_LINGER_S = 10.0
# Points per message without --batch (a bag's clouds go one per message instead).
DEFAULT_BATCH = 4096
# How long `publish` waits for the daemon's status before it sends without checking.
CHECK_TIMEOUT_S = 1.0
# IMU samples (one row per bag message) per published message without --batch.
ONE_ROW_BATCH = 100
# How long `publish` waits at the end for the daemon to have its end marker.
CONFIRM_TIMEOUT_S = 5.0
# Exit status of `publish` when the daemon answered and not every message was applied, and
# when no daemon answered the question at all (delivery unknown).
EXIT_NOT_APPLIED = 1
EXIT_NOT_CONFIRMED = 3


class CliError(Exception):
    """An error reported to the user as one line on stderr, with exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; we want one line and a return value instead.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: error: {message}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a factor >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a factor >= 0, got {text!r}")
    return value


def _field_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a field is named twice in {text!r}")
    return names


def _range_limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a distance >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a distance >= 0, got {text!r}")
    return value


def _foxglove_address(text: str) -> tuple[str, int]:
    """``watch --foxglove [HOST:]PORT``; empty: 127.0.0.1:8765."""
    if text == "":
        return ("127.0.0.1", 8765)
    from streamgmm.foxglove_view import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


@contextlib.contextmanager
def _client_errors(what: str, curve: Any = None) -> Iterator[None]:
    """Turn the expected failures of a client call into a CliError."""
    import zmq

    from streamgmm.client import ControlError

    try:
        yield
    except TimeoutError as exc:
        # A CURVE handshake that fails (wrong or unknown key) looks like silence too.
        hint = "is the daemon running, and does it accept these keys?" if curve else (
            "is the daemon running?"
        )
        raise CliError(f"{exc} ({hint})") from None
    except ControlError as exc:
        raise CliError(f"{what}: the daemon says: {exc}") from None
    except zmq.ZMQError as exc:
        raise CliError(f"{what}: {exc}") from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, so ``kill`` ends a command the way
    Ctrl-C does: ``publish`` prints its summary, ``watch`` writes its plot."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _endpoint(text: str) -> str:
    """A ZeroMQ endpoint; without ``scheme://`` zmq would only say "Invalid argument", and a
    TCP port above 65535 would wrap around to another port."""
    if "://" not in text:
        hint = f"tcp://{text}" if ":" in text else f"ipc://{text}"
        raise argparse.ArgumentTypeError(
            f"{text!r} has no transport scheme: write tcp://HOST:PORT or ipc://PATH "
            f"(did you mean {hint}?)"
        )
    if text.startswith("tcp://"):
        _, sep, port = text[len("tcp://"):].rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text!r} has no port: write tcp://HOST:PORT")
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise argparse.ArgumentTypeError(
                f"{text!r}: the port must be a number from 1 to 65535 (got {port!r})")
    return text


def _curve_keys(args: argparse.Namespace) -> Any:
    """CurveKeys from --server-key/--client-key, or None when neither is given."""
    server, client = args.server_key, args.client_key
    if server is None and client is None:
        return None
    if server is None or client is None:
        raise CliError("give both --server-key and --client-key (or neither)")
    from streamgmm.keys import CurveKeys

    try:
        return CurveKeys.from_files(server, client)
    except OSError as exc:
        raise CliError(f"cannot read key file {exc.filename}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"bad key file: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Loading points from files
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_errors() -> Iterator[None]:
    """Turn the errors of streamgmm.formats into a CliError (one line, exit 2)."""
    try:
        yield
    except OSError as exc:
        name = exc.filename if exc.filename is not None else "the file"
        raise CliError(f"cannot read {name}: {exc.strerror or exc}") from None
    except (ValueError, ImportError) as exc:  # FormatError, MissingExtraError
        raise CliError(str(exc)) from None


class ReadCounts:
    """What reading files dropped and noticed, for the summary lines of publish and fit."""

    def __init__(self) -> None:
        self.nonfinite = 0
        self.zeros = 0
        self.out_of_range = 0
        self.clouds = 0
        self.damaged: list[str] = []  # one warning per damaged file
        self.noted: set[str] = set()

    def add(self, cloud: Any) -> None:
        self.clouds += 1
        self.nonfinite += cloud.dropped
        self.zeros += getattr(cloud, "zeros", 0)
        self.out_of_range += getattr(cloud, "out_of_range", 0)

    def dropped_clause(self) -> str:
        """``"dropped 3 zero rows (no return), 2 rows with NaN/Inf"`` or ``""``."""
        parts = []
        if self.zeros:
            parts.append(f"{self.zeros} zero rows (no return)")
        if self.nonfinite:
            parts.append(f"{self.nonfinite} rows with NaN/Inf")
        if self.out_of_range:
            parts.append(f"{self.out_of_range} rows out of range")
        return ("dropped " + ", ".join(parts)) if parts else ""


def _row_filter(args: argparse.Namespace) -> Any:
    """The RowFilter of --keep-zeros, --min-range and --max-range."""
    from streamgmm.formats import RowFilter

    try:
        return RowFilter(keep_zeros=bool(getattr(args, "keep_zeros", False)),
                         min_range=getattr(args, "min_range", None),
                         max_range=getattr(args, "max_range", None))
    except ValueError as exc:
        raise CliError(str(exc).replace("min_range", "--min-range")
                       .replace("max_range", "--max-range")) from None


def _note_skipped(command: str, path: Any, cloud: Any, counts: ReadCounts) -> None:
    """Say once per file which columns were left out as time or counters."""
    skipped = getattr(cloud, "skipped", ())
    key = str(path)
    if skipped and key not in counts.noted:
        counts.noted.add(key)
        names = ", ".join(repr(n) for n in skipped)
        print(f"streamgmm {command}: note: {path}: left out column {names}: its name says "
              "time or a counter, not a coordinate (name it in --fields to use it)",
              file=sys.stderr)


def iter_file_clouds(path: str | Path, *, topic: str | None, fields: Sequence[str] | None,
                     rule: Any, counts: ReadCounts, command: str) -> Iterator[Any]:
    """The clouds of a file (:func:`streamgmm.formats.iter_clouds`), counted into ``counts``.

    A bag damaged part-way ends after its last complete message with a warning kept in
    ``counts.damaged``; one where nothing could be read, and every other error, is a
    CliError.
    """
    from streamgmm.formats import DamagedFileError, iter_clouds

    with _file_errors():
        try:
            for cloud in iter_clouds(path, topic=topic, fields=fields, rule=rule):
                counts.add(cloud)
                _note_skipped(command, path, cloud, counts)
                yield cloud
        except DamagedFileError as exc:
            if exc.messages_read == 0:
                raise CliError(f"{exc}; nothing could be read") from None
            counts.damaged.append(_one_line(str(exc)))


def load_points(path: str | Path, fields: Sequence[str] | None = None, *,
                topic: str | None = None, rule: Any = None,
                counts: ReadCounts | None = None, command: str = "fit") -> np.ndarray:
    """Read points of shape (n, d) from any file :mod:`streamgmm.formats` reads.

    Parameters
    ----------
    path : str or Path
        ``.npy``/``.csv``/``.parquet``, a point cloud or a ROS bag (see ``docs/formats.md``).
    fields : sequence of str, optional
        Fields of formats that name them (default ``x, y, z``; a bag: its message type's).
    topic : str, optional
        The topic of a bag.
    rule : streamgmm.formats.RowFilter, optional
        Zero rows and range limits (default: zero rows dropped, no limit).
    counts : ReadCounts, optional
        Filled with what was dropped (and a damaged bag's warning).
    command : str
        For notes on stderr.

    Returns
    -------
    numpy.ndarray
        Shape (n, d), n >= 1, float32 or float64; without NaN/Inf, zero and out-of-range
        rows.

    Raises
    ------
    CliError
        If the file cannot be read or no point is left.
    """
    counts = counts if counts is not None else ReadCounts()
    parts = [c.points for c in iter_file_clouds(path, topic=topic, fields=fields, rule=rule,
                                                 counts=counts, command=command) if len(c.points)]
    if not parts:
        dropped = counts.dropped_clause()
        raise CliError(f"{path}: no points to use" + (f" ({dropped})" if dropped else ""))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def _fmt_float(value: Any, spec: str = ".4f") -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _print_components(weights: np.ndarray, means: np.ndarray, limit: int | None = None) -> None:
    order = np.argsort(weights)[::-1]
    if limit is not None:
        order = order[:limit]
    print(f"  {'k':>3}  {'weight':>8}  mean")
    for k in order:
        mean = " ".join(f"{v:10.4g}" for v in means[k])
        print(f"  {k:>3}  {weights[k]:8.4f}  {mean}")


def _jsonable(value: Any) -> Any:
    """Plain JSON values: arrays to lists, NaN/Inf to null (JSON has no NaN), bytes to hex."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(_jsonable(value), indent=2, sort_keys=True, allow_nan=False))


def _mixture_dict(m: Mixture) -> dict[str, Any]:
    return {
        "model": m.model,
        "seq": m.seq,
        "stamp": m.stamp,
        "n_seen": m.n_seen,
        "kind": m.kind,
        "covariance_type": m.covariance_type,
        "weights": m.weights,
        "means": m.means,
        "covariances": m.covariances,
        "avg_log_likelihood": m.avg_log_likelihood,
        "last_stamp": m.last_stamp,
        **m.extra,
    }


def _mixture_line(m: Mixture, previous: Mixture | None = None) -> str:
    top = np.sort(m.weights)[::-1][:3]
    line = (
        f"{m.model} seq {m.seq:>6}  {m.kind:<8}  n_seen {m.n_seen:>10}  "
        f"avg_ll {_fmt_float(m.avg_log_likelihood, '9.4f')}  K {m.n_components}  "
        f"top w {' '.join(f'{w:.3f}' for w in top)}"
    )
    # Drift made visible: say when the daemon saw the stream leave what the model describes.
    changes = m.extra.get("n_change_points")
    before = None if previous is None else previous.extra.get("n_change_points")
    if isinstance(changes, int) and isinstance(before, int) and changes > before:
        line += f"  CHANGE POINT ({changes} so far; moves {m.extra.get('n_moves', 0)})"
    return line


def _print_status(endpoint: str, reply: Mapping[str, Any]) -> None:
    shown = {"ok", "v", "uptime_s", "models", "counters"}
    print(f"daemon at {endpoint}: up {_fmt_float(reply.get('uptime_s'), '.1f')} s")
    models = reply.get("models")
    if isinstance(models, Mapping):
        print("models:")
        for name, info in models.items():
            if isinstance(info, Mapping):
                fields = "  ".join(f"{k} {v}" for k, v in info.items())
            else:
                fields = str(info)
            print(f"  {name}  {fields}")
    counters = reply.get("counters")
    if isinstance(counters, Mapping):
        print("counters:")
        for key, value in counters.items():
            if isinstance(value, Mapping):
                detail = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
                print(f"  {key}: {detail}")
            else:
                print(f"  {key} {value}")
    for key, value in reply.items():
        if key not in shown:
            print(f"{key}: {value}")


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    # Imported here: every other subcommand runs without loading the daemon.
    from streamgmm.daemon.config import LOG_LEVELS
    from streamgmm.daemon.service import run_daemon

    if args.log_level is not None and args.log_level not in LOG_LEVELS:
        raise CliError(
            f"--log-level must be one of {', '.join(LOG_LEVELS)} (got {args.log_level!r})"
        )
    return int(run_daemon(args.config, log_level=args.log_level))


def _synthetic_batches(args: argparse.Namespace) -> Iterator[np.ndarray]:
    from streamgmm.synthetic import lidar_scene, moving_sensor_stream

    dim = 3 if args.dim is None else args.dim
    if args.synthetic == "lidar" and dim != 3:
        raise CliError("--synthetic lidar makes 3-D points; leave out --dim or use --dim 3")
    # One sweep/pass of --count points; with --loop, passes of at most SYNTHETIC_POINTS each,
    # each from the next seed, until --count (or forever).
    per_pass = args.count or SYNTHETIC_POINTS
    if args.loop:
        per_pass = min(per_pass, SYNTHETIC_POINTS)
    seed = args.seed
    while True:
        if args.synthetic == "lidar":
            sweep = lidar_scene(per_pass, seed=seed)
            for start in range(0, len(sweep), args.batch):
                yield sweep[start : start + args.batch]
        else:
            yield from moving_sensor_stream(per_pass, batch_size=args.batch, dim=dim, seed=seed)
        if not args.loop:
            return
        seed += 1


class _Outgoing(NamedTuple):
    """One message to send: points, sensor stamp (None: now), frame, recorded time (pacing)."""

    points: np.ndarray
    stamp: float | None = None
    frame: str = ""
    time: float | None = None


def _grouped(args: argparse.Namespace, group: list[Any], when: float | None) -> _Outgoing:
    """One message of several one-row clouds (IMU samples): the last one's stamp and frame."""
    tail = group[-1]
    return _Outgoing(np.concatenate([c.points for c in group]), tail.stamp,
                     args.frame or tail.frame, when)


def _file_batches(args: argparse.Namespace, counts: ReadCounts) -> Iterator[_Outgoing]:
    """Messages from --file: bag clouds one per message (split at --batch when given; IMU
    samples grouped --batch at a time, default :data:`ONE_ROW_BATCH`), other files in --batch
    slices; what is not a measurement is dropped and counted into ``counts``."""
    rule = _row_filter(args)
    offset = 0.0  # recorded time of a pass, carried over so that --loop keeps pacing forward
    first_pass = True
    while True:
        first_time = last = None
        sent_any = False
        group: list[Any] = []  # one-row clouds (IMU samples) waiting to fill a message
        pass_counts = counts if first_pass else ReadCounts()

        for cloud in iter_file_clouds(args.file, topic=args.ros_topic, fields=args.fields,
                                      rule=rule, counts=pass_counts, command="publish"):
            data = cloud.points
            if len(data) and args.dim is not None and data.shape[1] != args.dim:
                raise CliError(
                    f"{args.file} holds {data.shape[1]}-D points, not --dim {args.dim}"
                )
            when = None
            if cloud.time is not None:
                first_time = cloud.time if first_time is None else first_time
                when = offset + cloud.time - first_time
                last = when
            if getattr(cloud, "one_row", False):
                if len(data):
                    group.append(cloud)
                if sum(len(c.points) for c in group) >= (args.batch or ONE_ROW_BATCH):
                    sent_any = True
                    yield _grouped(args, group, last)
                    group = []
                continue
            step = args.batch or (len(data) if cloud.time is not None else DEFAULT_BATCH)
            for start in range(0, len(data), max(step, 1)):
                sent_any = True
                yield _Outgoing(data[start : start + step], cloud.stamp,
                                args.frame or cloud.frame, when)
        if group:
            sent_any = True
            yield _grouped(args, group, last)
        first_pass = False
        if not args.loop or not sent_any:
            return
        if last is not None:
            offset = last


def _control_of(args: argparse.Namespace) -> str | None:
    """The daemon's control endpoint: --control, else the example's when --endpoint is the
    example's ingest endpoint, else unknown (None)."""
    if args.control is not None:
        return args.control
    return DEFAULT_CONTROL if args.endpoint == DEFAULT_INGEST else None


def _check_against_daemon(args: argparse.Namespace, curve: Any, dim: int) -> None:
    """Refuse points that no model of the daemon would take, before sending any.

    Asks the daemon's ``status`` (``--control``; by default the example's control endpoint
    when ``--endpoint`` is the example's ingest endpoint, otherwise nothing is asked) which
    models subscribe to a prefix of ``--topic`` and their ``dim``. No answer within
    :data:`CHECK_TIMEOUT_S` (another daemon elsewhere, other CURVE keys): a note, then the
    points are sent unchecked, as the daemon counts what it rejects anyway.
    """
    import zmq

    from streamgmm.client import ControlClient, ControlError

    control = _control_of(args)
    if control is None:
        return  # the control endpoint of that daemon is not known
    try:
        with ControlClient(control, timeout=CHECK_TIMEOUT_S, curve=curve) as ctl:
            status = ctl.status()
    except (TimeoutError, ControlError, zmq.ZMQError) as exc:
        print(f"streamgmm publish: note: no status from {control} ({_one_line(exc)}); "
              "topic and dimension not checked", file=sys.stderr)
        return
    models = status.get("models")
    if not isinstance(models, Mapping) or not models:
        return
    models = {name: m for name, m in models.items() if isinstance(m, Mapping)}
    if all(isinstance(m.get("topic"), str) for m in models.values()):
        matching = {n: m for n, m in models.items() if args.topic.startswith(m["topic"])}
        if not matching:
            subscribed = ", ".join(f"{m['topic']!r} (model {n!r}, dim {m.get('dim')})"
                                   for n, m in models.items())
            raise CliError(
                f"no model subscribes to topic {args.topic!r} at {control}; subscribed "
                f"topic prefixes: {subscribed} (topics match by prefix: --topic "
                "points/lidar_front feeds a model of topic points/lidar); nothing sent "
                "(--no-check sends anyway)"
            )
    else:
        matching = models  # a daemon that does not report topics: the dimension only
    if any(m.get("dim") == dim for m in matching.values()):
        return
    wanted = " and ".join(f"model {n!r} has dim {m.get('dim')}" for n, m in matching.items())
    what = args.file if args.file is not None else f"--synthetic {args.synthetic}"
    raise CliError(
        f"{what} holds {dim}-D points but on topic {args.topic!r} {wanted} (daemon at "
        f"{control}); nothing sent (--no-check sends anyway)"
    )


class _Delivery(NamedTuple):
    """What the daemon reports of this publisher's messages (op ``source``)."""

    applied: int
    rejected: int
    points_applied: int
    end_seq: int


def _source_counters(reply: Mapping[str, Any]) -> _Delivery:
    def get(key: str, default: int = 0) -> int:
        value = reply.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return _Delivery(get("messages_applied"), get("messages_rejected"), get("points_applied"),
                     get("end_seq", -1))


def _ask_source(control: str, curve: Any, source: str, timeout: float) -> tuple[Any, str]:
    """``(reply or None, why not)``: the daemon's ``source`` answer about ``source``."""
    import zmq

    from streamgmm.client import ControlClient, ControlError

    try:
        with ControlClient(control, timeout=timeout, curve=curve) as ctl:
            return ctl.source(source), ""
    except TimeoutError:
        hint = ("is the daemon running, and does it accept these keys?" if curve
                else "is the daemon running?")
        return None, f"no answer from {control} within {timeout:.1f} s ({hint})"
    except ControlError as exc:
        return None, (f"the daemon at {control} does not report deliveries (an older "
                      f"version? it says: {_one_line(exc)})")
    except zmq.ZMQError as exc:
        return None, f"cannot ask {control}: {exc}"


def _confirm(control: str, curve: Any, source: str, marker: int,
             timeout: float) -> tuple[_Delivery | None, bool, str]:
    """Poll the daemon until it has this publisher's end marker or ``timeout`` passes.

    Returns ``(counters or None, marker seen, why not)``.
    """
    deadline = time.monotonic() + timeout
    last = None
    why = ""
    while True:
        remaining = deadline - time.monotonic()
        reply, why = _ask_source(control, curve, source, max(min(remaining, 2.0), 0.2))
        if reply is not None:
            last = _source_counters(reply)
            if last.end_seq == marker:
                return last, True, ""
        if time.monotonic() >= deadline:
            return last, False, why
        time.sleep(0.05)


def _cmd_publish(args: argparse.Namespace) -> int:
    import socket as _socket

    curve = _curve_keys(args)
    counts = ReadCounts()  # rows dropped from --file before sending
    if args.file is not None:
        batches = _file_batches(args, counts)
    else:
        if args.ros_topic is not None or args.fields is not None:
            raise CliError("--ros-topic and --fields apply to --file only")
        if args.min_range is not None or args.max_range is not None or args.keep_zeros:
            raise CliError("--min-range, --max-range and --keep-zeros apply to --file only")
        args.batch = args.batch or DEFAULT_BATCH
        batches = (_Outgoing(b) for b in _synthetic_batches(args))
    # Load/generate the first batch before opening the socket, so bad input fails fast.
    first = next(batches, None)
    if first is None:
        dropped = counts.dropped_clause()
        raise CliError("no points to send" + (f" ({dropped})" if dropped else ""))
    dim = int(first.points.shape[1])
    if not args.no_check:
        _check_against_daemon(args, curve, dim)

    import zmq

    from streamgmm.client import PointPublisher

    source = args.source or f"{_socket.gethostname()}-{os.getpid()}"
    control = None if args.no_confirm else _control_of(args)
    baseline = _Delivery(0, 0, 0, -1)
    answered = False  # the daemon answered before we sent: worth waiting for at the end
    can_confirm = control is not None
    why_not = "" if can_confirm else (
        "delivery not confirmed: the daemon's control endpoint is not known (give --control, "
        "or --no-confirm)")
    if can_confirm:
        # What the daemon knew of this source before: the answer at the end is compared
        # with it. No answer now is not final (the daemon may come up); an older daemon is.
        reply, why = _ask_source(control, curve, source, CHECK_TIMEOUT_S)
        if reply is not None:
            baseline = _source_counters(reply)
            answered = True
        elif "does not report" in why:
            can_confirm, why_not = False, f"delivery not confirmed: {why}"

    messages = points = 0
    marker: int | None = None
    interrupted = False
    # A context of our own: terminating it waits until the queued messages have left (see the
    # end), so the summary measures delivery, not how fast ZeroMQ accepts messages.
    context = zmq.Context()
    try:
        with _client_errors(f"cannot publish to {args.endpoint}", curve):
            pub = PointPublisher(args.endpoint, args.topic, source=source, bind=args.bind,
                                 curve=curve, context=context,
                                 linger_ms=int(PUBLISH_LINGER_S * 1000))
    except BaseException:
        context.destroy(linger=0)
        raise
    try:
        if args.wait_subscriber > 0 and not pub.wait_for_subscriber(args.wait_subscriber):
            print(
                f"streamgmm publish: warning: no subscriber to {args.topic!r} after "
                f"{args.wait_subscriber:g} s; sending anyway (messages may be lost)",
                file=sys.stderr,
            )
        start = time.perf_counter()
        try:
            out: _Outgoing | None = first
            while out is not None:
                batch = out.points
                if args.count is not None:
                    batch = batch[: args.count - points]
                if len(batch):
                    # Absolute schedules from the start: sleeping errors never accumulate.
                    if args.rate:
                        delay = start + points / args.rate - time.perf_counter()
                    elif out.time is not None and args.speed > 0:
                        delay = start + out.time / args.speed - time.perf_counter()
                    else:
                        delay = 0.0
                    if delay > 0:
                        time.sleep(delay)
                    pub.send(batch, stamp=out.stamp, frame=out.frame or args.frame)
                    messages += 1
                    points += len(batch)
                if args.count is not None and points >= args.count:
                    break
                out = next(batches, None)
            if args.rate:
                # The last batch takes its time slot too, so the achieved rate is honest.
                delay = start + points / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
            interrupted = True
        if can_confirm and messages:
            # After everything else on the same connection: once the daemon has it, every
            # message before it has arrived or was lost.
            marker = pub.send_end(dim)
    finally:
        # After an interrupt hand over what is queued for a moment only: the user wants out.
        pub.close(linger_ms=1000 if interrupted else None)
        flush_start = time.perf_counter()
        context.term()  # returns once every queued message is handed to the network (or linger)
        end = time.perf_counter()
    seconds = end - start
    if end - flush_start >= (1.0 if interrupted else PUBLISH_LINGER_S) - 0.05:
        print(
            f"streamgmm publish: warning: messages still queued after "
            f"{end - flush_start:.1f} s were dropped (the receiver did not keep up)",
            file=sys.stderr,
        )
    for warning in counts.damaged:
        print(f"streamgmm publish: warning: {warning}", file=sys.stderr)
    achieved = points / seconds if seconds > 0 else float("inf")
    dropped = counts.dropped_clause()
    print(
        f"sent {messages} messages, {points} points in {seconds:.3f} s "
        f"({achieved:.0f} points/s)" + (f"; {dropped}" if dropped else "")
    )
    if args.no_confirm:
        return 0
    if not can_confirm or marker is None:
        if messages and why_not:
            print(f"streamgmm publish: {why_not}", file=sys.stderr)
        return 0 if not messages else EXIT_NOT_CONFIRMED
    # Nobody answered before sending either: do not wait the full time for a miracle.
    wait = args.confirm_timeout if answered else min(args.confirm_timeout, 2 * CHECK_TIMEOUT_S)
    wait = min(wait, 1.0) if interrupted else wait
    final, seen, why = _confirm(control, curve, source, marker, wait)
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


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install 'streamgmm[plot]'") from None


def _model_axes(args: argparse.Namespace, curve: Any) -> list[str] | None:
    """Axis names for --plot: --axes, else the model's ``axes`` in the daemon's status."""
    if args.axes is not None:
        return list(args.axes)
    import zmq

    from streamgmm.client import ControlClient, ControlError

    try:
        with ControlClient(args.control, timeout=CHECK_TIMEOUT_S, curve=curve) as ctl:
            info = ctl.status().get("models", {}).get(args.model, {})
    except (TimeoutError, ControlError, zmq.ZMQError, AttributeError):
        return None
    axes = info.get("axes") if isinstance(info, Mapping) else None
    return [str(a) for a in axes] if isinstance(axes, list) and axes else None


def _write_plot(path: str, m: Mixture, axes: Sequence[str] | None = None) -> None:
    if m.n_features < 2:
        raise CliError(f"--plot needs points of at least 2 dimensions, model has {m.n_features}")
    if axes is not None and len(axes) != m.n_features:
        raise CliError(f"--axes names {len(axes)} axes, the model has {m.n_features}")
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    from streamgmm import plotting

    title = (f"model '{m.model}': seq {m.seq} ({m.kind}), {m.n_seen} points seen, "
             f"K={m.n_components}")
    try:
        if m.n_features == 3 and (axes is None or list(axes) == ["x", "y", "z"]):
            # A 3-D model is taken for a point cloud in metres: top and side views.
            fig = plotting.mixture_figure(m.to_estimator(), unit="m", title=title)
        else:
            # Anything else (IMU samples, a 2-D scan, features): a view per pair of axes.
            fig = plotting.pairs_figure(m.to_estimator(), axis_names=axes, title=title)
    except ValueError as exc:
        raise CliError(f"cannot draw the mixture: {exc}") from None
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _open_rerun(args: argparse.Namespace) -> Any:
    """A RerunView for --rerun/--rerun-save, or None; a missing rerun-sdk is a CliError."""
    if not (args.rerun or args.rerun_save):
        return None
    from streamgmm.rerun_view import RerunView, ViewerError

    try:
        return RerunView(save=args.rerun_save, spawn=True)
    except ImportError as exc:
        raise CliError(str(exc)) from None
    except ViewerError as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # cannot write the .rrd, or rerun's own errors
        raise CliError(f"cannot open the rerun view: {_one_line(exc)}") from None


def _open_foxglove(args: argparse.Namespace) -> Any:
    """A FoxgloveView for --foxglove/--foxglove-save, or None; failures are a CliError."""
    if args.foxglove is None and args.foxglove_save is None:
        return None
    from streamgmm.foxglove_view import FoxgloveView

    where = "" if args.foxglove is None else f" on {args.foxglove[0]}:{args.foxglove[1]}"
    try:
        view = FoxgloveView(serve=args.foxglove, save=args.foxglove_save)
    except ImportError as exc:
        raise CliError(str(exc)) from None
    except FileExistsError as exc:
        raise CliError(f"--foxglove-save: {exc}") from None
    except (OSError, RuntimeError) as exc:  # the port is taken, the file cannot be written
        raise CliError(f"cannot open the Foxglove view{where}: {exc}") from None
    if view.port is not None:
        host = args.foxglove[0]
        shown = f"[{host}]" if ":" in host else host
        print(f"streamgmm watch: Foxglove WebSocket at ws://{shown}:{view.port} "
              "(Foxglove: Open connection > Foxglove WebSocket)", file=sys.stderr, flush=True)
    return view


def _log_views(mixture: Mixture, rerun_view: Any, foxglove_view: Any) -> None:
    """Hand one mixture (and its sample of points, if any) to the open views."""
    if rerun_view is not None:
        rerun_view.log_mixture(mixture)
        sample = mixture.sample
        if sample is not None:
            rerun_view.log_points(sample, seq=mixture.seq, stamp=mixture.last_stamp)
    if foxglove_view is not None:
        if mixture.n_features not in (2, 3):
            raise CliError(f"--foxglove draws models of 2 or 3 dimensions; model "
                           f"{mixture.model!r} has {mixture.n_features}")
        foxglove_view.log_mixture(mixture)


def _cmd_watch(args: argparse.Namespace) -> int:
    if args.plot:
        _check_matplotlib()
    curve = _curve_keys(args)
    view = _open_rerun(args)
    try:
        fox = _open_foxglove(args)
    except CliError:
        if view is not None:
            view.close()
        raise
    from streamgmm.client import MixtureSubscriber

    received = 0
    last: Mixture | None = None
    streaming = False  # a live update arrived (--idle counts from then on)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        with _client_errors(f"cannot watch {args.endpoint}", curve):
            sub = MixtureSubscriber(args.endpoint, args.control, args.model, curve=curve)
    except CliError:
        for opened in (view, fox):
            if opened is not None:
                opened.close()
        raise
    try:
        # An unknown model is refused at once (ControlError): exit 2 with the daemon's list.
        with _client_errors(f"cannot watch model {args.model!r}", curve):
            while args.count is None or received < args.count:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    break
                if args.idle is not None and streaming:
                    # --idle: the stream has ended when no update came for that long.
                    wait = args.idle if wait is None else min(wait, args.idle)
                mixture = sub.recv(timeout=wait)
                if mixture is None:
                    break
                received += 1
                previous, last = last, mixture
                # A snapshot alone (an idle daemon) does not start the --idle clock.
                streaming = streaming or mixture.kind != "snapshot"
                print(_mixture_line(mixture, previous), flush=True)
                _log_views(mixture, view, fox)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main): stop, then plot as usual
        pass
    finally:
        sub.close()
        if view is not None:
            view.close()
        if fox is not None:
            fox.close()
    if last is None:
        why = f" (last snapshot error: {sub.last_error})" if sub.last_error else ""
        waited = "" if args.timeout is None else f" within {args.timeout:g} s"
        print(
            _one_line(
                f"streamgmm watch: no mixture of model {args.model!r} from {args.endpoint}"
                f"{waited}{why}"
            ),
            file=sys.stderr,
        )
        return 1
    if sub.gaps or sub.resyncs or sub.rejected:
        print(
            f"streamgmm watch: {received} mixtures, {sub.gaps} gaps, {sub.resyncs} resyncs, "
            f"{sub.rejected} rejected",
            file=sys.stderr,
        )
    if args.plot:
        axes = _model_axes(args, curve) if last.n_features != 3 or args.axes else None
        _write_plot(args.plot, last, axes)
        print(f"wrote {args.plot}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    curve = _curve_keys(args)
    from streamgmm.client import ControlClient

    with _client_errors(f"status from {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            reply = ctl.status()
    if args.json:
        _print_json(reply)
    else:
        _print_status(args.control, reply)
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    curve = _curve_keys(args)
    from streamgmm.client import ControlClient

    with _client_errors(f"snapshot from {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            m = ctl.snapshot(args.model)
    if args.json:
        _print_json(_mixture_dict(m))
        return 0
    print(
        f"model {m.model}  seq {m.seq}  n_seen {m.n_seen}  K {m.n_components}  "
        f"d {m.n_features}  covariance {m.covariance_type}  "
        f"avg_ll {_fmt_float(m.avg_log_likelihood)}"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.stamp))
    print(f"updated {stamp}  last sensor stamp {_fmt_float(m.last_stamp, '.3f')}")
    for key, value in m.extra.items():
        print(f"{key}: {value}")
    _print_components(m.weights, m.means)
    return 0


def _cmd_refit(args: argparse.Namespace) -> int:
    curve = _curve_keys(args)
    from streamgmm.client import ControlClient

    with _client_errors(f"refit via {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            seq = ctl.refit(args.model, timeout=args.timeout)
    print(f"refit of {args.model} published as seq {seq}")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    curve = _curve_keys(args)
    try:
        with np.load(args.file, allow_pickle=False) as npz:
            missing = [k for k in ("weights", "means", "covariances") if k not in npz]
            if missing:
                raise CliError(f"{args.file} lacks {', '.join(missing)} (write it with "
                               "'streamgmm fit --out')")
            fields = {k: np.asarray(npz[k]) for k in ("weights", "means", "covariances")}
            ctype = str(npz["covariance_type"]) if "covariance_type" in npz else None
            weight = args.weight
            if weight is None and "n_points" in npz:
                weight = float(npz["n_points"])
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    from streamgmm.client import ControlClient

    with _client_errors(f"load via {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            seq = ctl.load(args.model, covariance_type=ctype, weight=weight,
                           timeout=args.timeout, **fields)
    k, d = fields["means"].shape
    print(f"loaded {args.file} ({k} components, d={d}) into {args.model} as seq {seq}")
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from streamgmm.keys import generate_keys

    try:
        public, secret = generate_keys(args.directory, args.name)
    except FileExistsError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write keys into {args.directory}: {exc.strerror or exc}") from None
    print(f"public key {public} (give it to peers)")
    print(f"secret key {secret} (mode 0600, keep it private)")
    return 0


_SHARD_SUFFIXES = (".npy", ".parquet")


def _is_shard_input(text: str) -> bool:
    """A glob, a directory that is not a rosbag2 bag, or a .parquet file: Dask shards."""
    if os.path.isdir(text):
        return not os.path.isfile(os.path.join(text, "metadata.yaml"))
    return any(c in text for c in "*?[") or text.endswith(".parquet")


def _all_shards(inputs: Sequence[str]) -> bool:
    """Do the inputs name only .npy/.parquet shards (globs, directories of them)?"""
    import glob

    for item in inputs:
        if os.path.isdir(item):
            if os.path.isfile(os.path.join(item, "metadata.yaml")):
                return False  # a rosbag2 directory
            continue
        names = glob.glob(item) if any(c in item for c in "*?[") else [item]
        if any(not n.endswith(_SHARD_SUFFIXES) for n in names):
            return False
    return True


def _expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files named by paths and globs; a rosbag2 directory stays one input."""
    import glob

    out: list[str] = []
    for item in inputs:
        if any(c in item for c in "*?[") and not os.path.exists(item):
            found = sorted(glob.glob(item))
            if not found:
                raise CliError(f"no file matches {item!r}")
            out.extend(found)
        else:
            out.append(item)
    return out


def _read_fit_inputs(args: argparse.Namespace) -> tuple[list[np.ndarray], ReadCounts]:
    """Every input file's points (a bag: one array per message), filtered and counted."""
    rule = _row_filter(args)
    counts = ReadCounts()
    parts: list[np.ndarray] = []
    files = _expand_inputs(args.file)
    for path in files:
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "metadata.yaml")):
            raise CliError(f"{path}: a directory of shards cannot be mixed with other files "
                           "(give its .npy/.parquet files, or fit it alone)")
        for cloud in iter_file_clouds(path, topic=args.ros_topic, fields=args.fields,
                                      rule=rule, counts=counts, command="fit"):
            if len(cloud.points):
                parts.append(cloud.points)
    if not parts:
        dropped = counts.dropped_clause()
        raise CliError(f"no points to fit in {' '.join(files)}"
                       + (f" ({dropped})" if dropped else ""))
    if len({p.shape[1] for p in parts}) > 1:
        dims = sorted({p.shape[1] for p in parts})
        raise CliError(f"the inputs disagree on the dimension: {dims} (choose the same "
                       "--fields)")
    for warning in counts.damaged:
        print(f"streamgmm fit: warning: {warning}", file=sys.stderr)
    dropped = counts.dropped_clause()
    if dropped:
        print(f"streamgmm fit: {dropped}", file=sys.stderr)
    return parts, counts


def _save_mixture(path: str, gm: Any, covariance_type: str) -> None:
    try:
        with open(path, "wb") as fh:
            np.savez(
                fh,
                weights=gm.weights_,
                means=gm.means_,
                covariances=gm.covariances_,
                covariance_type=np.array(covariance_type),
                # The points behind the fit: the prior weight `streamgmm load` sends.
                n_points=np.array(int(getattr(gm, "n_seen_", 0))),
            )
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")


def _fit_options_used(args: argparse.Namespace) -> bool:
    return (args.ros_topic is not None or args.fields is not None or args.keep_zeros
            or args.min_range is not None or args.max_range is not None)


def _cmd_fit_distributed(args: argparse.Namespace) -> int:
    """``fit`` on a Dask cluster (--scheduler) or a local one (several shards, --workers):
    ``.npy``/``.parquet`` shards are read by the workers themselves; any other file (a bag, a
    point cloud) is read here, filtered, and its clouds sent to the workers as chunks."""
    from streamgmm import ConvergenceWarning, GaussianMixture

    try:
        from streamgmm import dask_em

        dask_em.require_dask()
        import distributed  # noqa: F401
    except ImportError:
        raise CliError("fitting on a cluster needs dask.distributed: "
                       "pip install 'streamgmm[dask]'") from None

    where = args.scheduler or f"a local cluster of {args.workers or os.cpu_count()} workers"

    def progress(n_iter: int, lower_bound: float, seconds: float) -> None:
        if n_iter == 1:
            print(f"streamgmm fit: EM on {where}", file=sys.stderr)
        print(f"iteration {n_iter}  lower bound {lower_bound:.6f}  {seconds:.2f} s",
              file=sys.stderr, flush=True)

    gm = GaussianMixture(
        n_components=args.components, covariance_type=args.covariance_type,
        max_iter=args.max_iter, n_init=args.n_init, random_state=args.seed,
    )
    shards = _all_shards(args.file)
    if shards and _fit_options_used(args):
        raise CliError("--ros-topic, --fields, --keep-zeros, --min-range and --max-range apply "
                       "to files read here (bags, point clouds, CSV), not to .npy/.parquet "
                       "shards, which the workers read as they are")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if shards:
                info = dask_em.fit_shards(args.file, gm, scheduler=args.scheduler,
                                          n_workers=args.workers, progress=progress)
                what = "shards"
            else:
                from streamgmm import dask_clouds

                parts, _ = _read_fit_inputs(args)
                info = dask_clouds.fit_arrays(parts, gm, scheduler=args.scheduler,
                                              n_workers=args.workers, progress=progress)
                what = "chunks"
    except ConnectionError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(f"cannot fit {' '.join(args.file)}: {exc}") from None
    print(f"fitted {args.components} components ({args.covariance_type}) to "
          f"{info['n_points']} points in {info['n_shards']} {what}, d={gm.n_features_in_}, "
          f"on {info['n_workers']} workers in {info['seconds']:.2f} s")
    print(
        f"converged: {gm.converged_}  iterations: {gm.n_iter_}  "
        f"lower bound: {gm.lower_bound_:.6f} (mean log-likelihood per point)"
    )
    _print_components(gm.weights_, gm.means_)
    if args.out:
        _save_mixture(args.out, gm, args.covariance_type)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from streamgmm import ConvergenceWarning, GaussianMixture

    several_shards = len(args.file) > 1 or _is_shard_input(args.file[0])
    if args.scheduler or args.workers is not None or (several_shards and _all_shards(args.file)):
        return _cmd_fit_distributed(args)
    parts, _ = _read_fit_inputs(args)
    X = parts[0] if len(parts) == 1 else np.concatenate(parts)
    gm = GaussianMixture(
        n_components=args.components,
        covariance_type=args.covariance_type,
        max_iter=args.max_iter,
        n_init=args.n_init,
        random_state=args.seed,
    )
    try:
        with warnings.catch_warnings():
            # Reported below as "converged: False" instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
    except ValueError as exc:
        raise CliError(f"cannot fit {' '.join(args.file)}: {exc}") from None
    n, d = X.shape
    print(f"fitted {args.components} components ({args.covariance_type}) to {n} points, d={d}")
    print(
        f"converged: {gm.converged_}  iterations: {gm.n_iter_}  "
        f"lower bound: {gm.lower_bound_:.6f} (mean log-likelihood per point)"
    )
    print(f"BIC: {gm.bic(X):.6g}")
    _print_components(gm.weights_, gm.means_)
    if args.out:
        _save_mixture(args.out, gm, args.covariance_type)
    return 0


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamgmm`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog="streamgmm",
        description="Streaming Gaussian mixtures of sensor point streams over ZeroMQ.",
        epilog="Run 'streamgmm COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {streamgmm.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def row_filter_options(sub: argparse.ArgumentParser) -> None:
        group = sub.add_argument_group("what is not a measurement (files and bags)")
        group.add_argument("--keep-zeros", action="store_true",
                           help="keep rows whose x, y, z are all exactly 0 (by default they "
                           "are a LiDAR's no-return points: dropped and counted)")
        group.add_argument("--min-range", type=_range_limit, default=None, metavar="M",
                           help="drop rows nearer than M to the sensor origin (sqrt(x^2+y^2+"
                           "z^2), in the file's units: metres for LiDAR)")
        group.add_argument("--max-range", type=_range_limit, default=None, metavar="M",
                           help="drop rows farther than M from the sensor origin")

    def curve_options(sub: argparse.ArgumentParser) -> None:
        group = sub.add_argument_group("CURVE (for a daemon with [service.curve])")
        group.add_argument("--server-key", metavar="FILE", default=None,
                           help="the daemon's public key file (NAME.key)")
        group.add_argument("--client-key", metavar="FILE", default=None,
                           help="this client's secret key file (NAME.key_secret)")

    p = commands.add_parser(
        "run", help="run the daemon in the foreground",
        description="Run the daemon with a TOML configuration (see configs/example.toml). "
        "SIGTERM or SIGINT write the checkpoints and exit 0; a bad configuration exits 2.",
    )
    p.add_argument("config", metavar="CONFIG.toml", help="daemon configuration file")
    # The levels are the config's (streamgmm.daemon.config.LOG_LEVELS), checked by _cmd_run so
    # that building the parser does not import the daemon.
    p.add_argument("--log-level", metavar="LEVEL", default=None,
                   help="override the configuration's service.log_level (same values)")
    p.set_defaults(func=_cmd_run)

    p = commands.add_parser(
        "publish", help="send points from a file or a synthetic sensor to the daemon",
        description="Replay a file (.npy/.csv, a point cloud .pcd/.ply/.las/.laz/KITTI .bin, "
        "or the PointCloud2 messages of a ROS bag .mcap/.db3/.bag) or a synthetic moving sensor "
        "as point messages [topic, payload], in batches, optionally at a fixed rate; rows with "
        "NaN/Inf are dropped and counted; prints a summary line. See docs/formats.md.",
    )
    p.add_argument("--endpoint", default=DEFAULT_INGEST, type=_endpoint,
                   help=f"daemon ingest endpoint (default {DEFAULT_INGEST})")
    p.add_argument("--topic", default="points/lidar",
                   help="topic of the messages (default points/lidar)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="FILE",
                        help="points: .npy, .csv (optional header), .pcd, .ply, .las, .laz, "
                        "KITTI .bin, or a ROS bag (.mcap, .db3, .bag, a rosbag2 directory)")
    source.add_argument("--synthetic", choices=("lidar", "moving"),
                        help="a LiDAR sweep of a room (3-D) or a sensor moving past blobs")
    p.add_argument("--dim", type=_positive_int, default=None,
                   help="point dimension (synthetic moving: default 3; a file must match)")
    p.add_argument("--rate", type=_positive_float, default=None, metavar="POINTS_PER_S",
                   help="points per second (default: as fast as possible)")
    p.add_argument("--batch", type=_positive_int, default=None,
                   help=f"points per message (default {DEFAULT_BATCH}; a bag: one message per "
                   "cloud, split at --batch when given)")
    p.add_argument("--ros-topic", default=None, metavar="TOPIC",
                   help="topic of a bag: PointCloud2, Imu or LaserScan (may be left out when "
                   "it has one PointCloud2 topic, or one readable topic)")
    p.add_argument("--fields", type=_field_list, default=None, metavar="x,y,z",
                   help="fields to send, in order: of a point cloud or PointCloud2 (default "
                   "x,y,z), an Imu (default linear_acceleration,angular_velocity; a group "
                   "or one axis, e.g. angular_velocity.z), a LaserScan (default x,y), or the "
                   "header names of a CSV/Parquet table (default: every column but time)")
    p.add_argument("--speed", type=_speed, default=1.0, metavar="FACTOR",
                   help="replay a bag at FACTOR times its recorded pace (default 1; 0 = as "
                   "fast as possible); --rate overrides it")
    p.add_argument("--count", type=_positive_int, default=None, metavar="N_POINTS",
                   help="stop after this many points (default: the file once, or "
                   f"{SYNTHETIC_POINTS} synthetic points)")
    p.add_argument("--loop", action="store_true",
                   help="repeat the file (or new synthetic sweeps) until --count or Ctrl-C")
    p.add_argument("--bind", action="store_true",
                   help="bind the endpoint (for a daemon that connects to publishers)")
    p.add_argument("--source", default=None, help="publisher id (default HOSTNAME-PID)")
    p.add_argument("--frame", default="", help="coordinate frame carried in each message")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    p.add_argument("--wait-subscriber", type=_seconds, default=2.0, metavar="S",
                   help="wait up to S seconds for the daemon to subscribe before sending, so "
                   "the first messages are not lost (default 2; 0 = do not wait)")
    p.add_argument("--control", default=None, type=_endpoint,
                   help="control endpoint of the daemon, asked (1 s at most) which model "
                   "subscribes to --topic and its dim before sending; default "
                   f"{DEFAULT_CONTROL} when --endpoint is the default, else no check")
    p.add_argument("--no-check", action="store_true",
                   help="send without asking the daemon (its counters still show rejections)")
    p.add_argument("--no-confirm", action="store_true",
                   help="do not ask the daemon at the end what arrived; exit 0 once sent")
    p.add_argument("--confirm-timeout", type=_seconds, default=CONFIRM_TIMEOUT_S, metavar="S",
                   help="how long to wait at the end for the daemon to have received this "
                   f"stream's end marker (default {CONFIRM_TIMEOUT_S:g})")
    row_filter_options(p)
    curve_options(p)
    p.set_defaults(func=_cmd_publish)

    p = commands.add_parser(
        "watch", help="print each mixture update of a model",
        description="Follow one model (snapshot first, then each newer update) and print one "
        "line per mixture. Exits 0 after --count mixtures or --timeout seconds, 1 if none "
        "arrived.",
    )
    p.add_argument("--endpoint", default=DEFAULT_PUBLISH, type=_endpoint,
                   help=f"daemon update endpoint (default {DEFAULT_PUBLISH})")
    p.add_argument("--control", default=DEFAULT_CONTROL, type=_endpoint,
                   help=f"daemon control endpoint (default {DEFAULT_CONTROL})")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--count", type=_positive_int, default=None,
                   help="stop after this many mixtures")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--idle", type=_positive_float, default=None, metavar="S",
                   help="stop when no update came for S seconds once updates flow (the "
                   "stream has ended); the first snapshot alone does not start the clock")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw the last mixture at exit (also after Ctrl-C or SIGTERM): top "
                   "view and, for 3-D models, side view; needs matplotlib")
    p.add_argument("--axes", type=_field_list, default=None, metavar="NAMES",
                   help="names of the model's axes for --plot, comma-separated (default: the "
                   "model's 'axes' from the daemon's status, else x[0], x[1], ...)")
    p.add_argument("--rerun", action="store_true",
                   help="show every update live in a rerun viewer as 3-D ellipsoids (1 and 2 "
                   "sigma); needs rerun-sdk: pip install 'streamgmm[rerun]'")
    p.add_argument("--rerun-save", metavar="OUT.rrd", default=None,
                   help="log the updates to an .rrd file instead (open it with: rerun OUT.rrd)")
    p.add_argument("--foxglove", metavar="[HOST:]PORT", nargs="?", type=_foxglove_address,
                   const=_foxglove_address(""), default=None,
                   help="serve every update live to Foxglove (Open connection > Foxglove "
                   "WebSocket) as ellipsoids at 1 and 2 sigma, 2-D or 3-D models (default "
                   "127.0.0.1:8765; 0.0.0.0 serves every interface, only when asked; port 0 "
                   "picks a free one); needs foxglove-sdk: pip install 'streamgmm[foxglove]'")
    p.add_argument("--foxglove-save", metavar="FILE.mcap", default=None,
                   help="record the same messages with their stamps in a new MCAP file, to "
                   "open beside a robot's bag (an existing file is refused)")
    curve_options(p)
    p.set_defaults(func=_cmd_watch)

    def control_parser(name: str, help_text: str, timeout: float) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper()
                                  + help_text[1:] + ".")
        sub.add_argument("--control", default=DEFAULT_CONTROL, type=_endpoint,
                         help=f"daemon control endpoint (default {DEFAULT_CONTROL})")
        sub.add_argument("--timeout", type=_positive_float, default=timeout, metavar="S",
                         help=f"seconds to wait for the reply (default {timeout:g})")
        curve_options(sub)
        return sub

    p = control_parser("status", "print the daemon's models and counters", 2.0)
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.set_defaults(func=_cmd_status)

    p = control_parser("snapshot", "print the current mixture of a model", 5.0)
    p.add_argument("--model", default=None,
                   help="model name (may be left out when the daemon has one model)")
    p.add_argument("--json", action="store_true",
                   help="print the mixture as JSON (arrays as lists, NaN as null)")
    p.set_defaults(func=_cmd_snapshot)

    p = control_parser("refit", "refit a model by batch EM on its retained points", 120.0)
    p.add_argument("--model", required=True, help="model name")
    p.set_defaults(func=_cmd_refit)

    p = control_parser("load", "replace a model's mixture by one saved by 'fit --out'", 10.0)
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("file", metavar="FILE.npz", help="weights, means, covariances (np.savez)")
    p.add_argument("--weight", type=_positive_float, default=None, metavar="N_POINTS",
                   help="prior weight in points (default: the file's n_points, else the "
                   "points the model has seen)")
    p.set_defaults(func=_cmd_load)

    p = commands.add_parser(
        "fit", help="fit a mixture to a file offline (batch EM)",
        description="Batch EM on the points of a file (.npy, .csv, or any point cloud or bag "
        "that publish --file reads; their x,y,z); prints convergence, BIC, weights and means, "
        "and with --out saves the parameters with numpy.savez. Shards (a glob, a directory, "
        "several files) or --scheduler run EM on Dask workers, with progress on stderr.",
    )
    p.add_argument("file", metavar="FILE", nargs="+",
                   help="points of shape (n, d): .npy, .csv, .pcd, ...; or shards for a "
                   "cluster: several files, a glob ('logs/*.npy'), a directory, .parquet")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", default=None,
                   help="run EM on this Dask scheduler's workers (needs streamgmm[dask]); "
                   "several shards without it run on a local cluster")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="workers of the local cluster (default: the machine's cores)")
    p.add_argument("--components", "-k", type=_positive_int, required=True,
                   help="number of components K")
    p.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full",
                   help="covariance shape (default full)")
    p.add_argument("--max-iter", type=_positive_int, default=100,
                   help="EM iterations at most (default 100)")
    p.add_argument("--n-init", type=_positive_int, default=1,
                   help="initialisations; the best is kept (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--ros-topic", default=None, metavar="TOPIC",
                   help="topic of a bag, as for publish --file")
    p.add_argument("--fields", type=_field_list, default=None, metavar="x,y,z",
                   help="fields to fit, as for publish --file")
    row_filter_options(p)
    p.add_argument("--out", metavar="MODEL.npz", default=None,
                   help="save weights, means, covariances and covariance_type (np.savez)")
    p.set_defaults(func=_cmd_fit)

    p = commands.add_parser(
        "keygen", help="write a CURVE key pair (NAME.key, NAME.key_secret)",
        description="Write a CURVE key pair into DIR: NAME.key (public, for peers) and "
        "NAME.key_secret (mode 0600). An existing pair is never overwritten.",
    )
    p.add_argument("directory", metavar="DIR", help="directory of the key files (created)")
    p.add_argument("name", metavar="NAME", help="key name, e.g. server or robot1")
    p.set_defaults(func=_cmd_keygen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamgmm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an error (one line on stderr), 1 when ``watch``
        received nothing; ``run`` returns the daemon's status.
    """
    parser = build_parser()
    command = None
    try:
        args = parser.parse_args(argv)
        command = args.command
        if command == "run":  # the daemon handles its signals itself
            return args.func(args)
        with _sigterm_as_interrupt():
            return args.func(args)
    except CliError as exc:
        message = _one_line(str(exc))
        if not message.startswith("streamgmm"):  # parser errors carry the prog already
            message = f"streamgmm {command}: error: {message}"
        print(message, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`streamgmm watch ... | head`): stop quietly like other tools;
        # point stdout at devnull so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

if __name__ == "__main__":
    sys.exit(main())
