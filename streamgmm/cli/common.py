"""What the subcommands of ``streamgmm`` share: errors, argument types, client and file
errors as one-line messages, reading files with counts, and printing helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamgmm.core.constraints import PARAMETER_CONSTRAINTS, Interval

# The endpoints of configs/example.toml, as seen from a client on the same machine.
DEFAULT_INGEST = "tcp://127.0.0.1:5555"
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"


class CliError(Exception):
    """An error reported to the user as one line on stderr, with exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse prints the usage and exits; we want one line and a return value instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: error: {message}")


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def number_type(rule: Interval, expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` for a number that ``rule`` accepts (:mod:`streamgmm.core.constraints`).

    Parameters
    ----------
    rule : Interval
        Integers or reals, and their bounds (the same declaration the library checks with).
    expected : str
        What the message says was expected, e.g. ``"seconds >= 0"``.

    Returns
    -------
    callable
        ``parse(text)``, raising :class:`argparse.ArgumentTypeError` with
        ``expected EXPECTED, got TEXT``.
    """
    kind = int if rule.kind is numbers.Integral else float

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not rule.is_satisfied_by(value):
            got = value if kind is int else repr(text)
            raise argparse.ArgumentTypeError(f"expected {expected}, got {got}")
        return value

    parse.__name__ = expected
    return parse


positive_int = number_type(Interval(numbers.Integral, 1, None, closed="left"), "an integer >= 1")
positive_float = number_type(Interval(numbers.Real, 0, None, closed="neither"), "a number > 0")
seconds = number_type(Interval(numbers.Real, 0, None, closed="left"), "seconds >= 0")
speed = number_type(Interval(numbers.Real, 0, None, closed="left"), "a factor >= 0")
range_limit = number_type(Interval(numbers.Real, 0, None, closed="left"), "a distance >= 0")
# fit -k: the estimator's own rule for n_components.
n_components = number_type(
    next(c for c in PARAMETER_CONSTRAINTS["n_components"] if c is not None), "an integer >= 1")


def field_list(text: str) -> tuple[str, ...]:
    """``x,y,z`` as ``("x", "y", "z")``: no empty or repeated name."""
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a field is named twice in {text!r}")
    return names


def endpoint(text: str) -> str:
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


def file_formats(prefix: str = "") -> str:
    """The readable files, from the table :data:`streamgmm.formats.FORMATS`: ``.npy (NumPy
    array), .csv (CSV table), ..., or a rosbag2 directory``; one help text for every option
    and command that reads files."""
    from streamgmm.formats import FORMATS

    return prefix + ", ".join(f"{ext} ({fmt.name})" for ext, fmt in FORMATS.items()) + (
        ", or a rosbag2 directory")


def row_filter_options(sub: argparse.ArgumentParser) -> None:
    """--keep-zeros, --min-range and --max-range (see :func:`row_filter`)."""
    group = sub.add_argument_group("what is not a measurement (files and bags)")
    group.add_argument("--keep-zeros", action="store_true",
                       help="keep rows whose x, y, z are all exactly 0 (by default they "
                       "are a LiDAR's no-return points: dropped and counted)")
    group.add_argument("--min-range", type=range_limit, default=None, metavar="M",
                       help="drop rows nearer than M to the sensor origin (sqrt(x^2+y^2+"
                       "z^2), in the file's units: metres for LiDAR)")
    group.add_argument("--max-range", type=range_limit, default=None, metavar="M",
                       help="drop rows farther than M from the sensor origin")


def curve_options(sub: argparse.ArgumentParser) -> None:
    """--server-key and --client-key (see :func:`curve_keys`)."""
    group = sub.add_argument_group("CURVE (for a daemon with [service.curve])")
    group.add_argument("--server-key", metavar="FILE", default=None,
                       help="the daemon's public key file (NAME.key)")
    group.add_argument("--client-key", metavar="FILE", default=None,
                       help="this client's secret key file (NAME.key_secret)")


@contextlib.contextmanager
def client_errors(what: str, curve: Any = None) -> Iterator[None]:
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
def sigterm_as_interrupt() -> Iterator[None]:
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


def curve_keys(args: argparse.Namespace) -> Any:
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



@contextlib.contextmanager
def file_errors() -> Iterator[None]:
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


def row_filter(args: argparse.Namespace) -> Any:
    """The RowFilter of --keep-zeros, --min-range and --max-range."""
    from streamgmm.formats import RowFilter

    try:
        return RowFilter(keep_zeros=bool(getattr(args, "keep_zeros", False)),
                         min_range=getattr(args, "min_range", None),
                         max_range=getattr(args, "max_range", None))
    except ValueError as exc:
        raise CliError(str(exc).replace("min_range", "--min-range")
                       .replace("max_range", "--max-range")) from None


def note_skipped(command: str, path: Any, cloud: Any, counts: ReadCounts) -> None:
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

    with file_errors():
        try:
            for cloud in iter_clouds(path, topic=topic, fields=fields, rule=rule):
                counts.add(cloud)
                note_skipped(command, path, cloud, counts)
                yield cloud
        except DamagedFileError as exc:
            if exc.messages_read == 0:
                raise CliError(f"{exc}; nothing could be read") from None
            counts.damaged.append(one_line(str(exc)))


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



def fmt_float(value: Any, spec: str = ".4f") -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def check_output_path(path: str, option: str) -> None:
    """Refuse at once, not after a long fit or watch, an output file that cannot be written:
    its directory must exist and be writable (the file itself is written at the end)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise CliError(f"{option} {path}: is a directory; name a file")
    if not folder.is_dir():
        raise CliError(f"{option} {path}: no directory {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise CliError(f"{option} {path}: cannot write into {str(folder)!r}")


def print_components(weights: np.ndarray, means: np.ndarray, limit: int | None = None) -> None:
    order = np.argsort(weights)[::-1]
    if limit is not None:
        order = order[:limit]
    print(f"  {'k':>3}  {'weight':>8}  mean")
    # Significant digits enough for three decimals at the table's largest magnitude (4 for
    # metres around a sensor, 10 for UTM coordinates, whose 4 leading digits say nothing).
    largest = float(np.max(np.abs(means))) if np.size(means) else 0.0
    digits = 4
    if math.isfinite(largest) and largest >= 1.0:
        digits = min(15, max(4, math.floor(math.log10(largest)) + 4))
    width = max(10, digits + 6)
    for k in order:
        mean = " ".join(f"{v:{width}.{digits}g}" for v in means[k])
        print(f"  {k:>3}  {weights[k]:8.4f}  {mean}")


def jsonable(value: Any) -> Any:
    """Plain JSON values: arrays to lists, NaN/Inf to null (JSON has no NaN), bytes to hex."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def print_json(value: Any) -> None:
    print(json.dumps(jsonable(value), indent=2, sort_keys=True, allow_nan=False))

