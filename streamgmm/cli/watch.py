"""``streamgmm watch``: follow a model's mixtures, print a line each, draw or show them."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streamgmm.cli.common import (
    DEFAULT_CONTROL,
    DEFAULT_PUBLISH,
    CliError,
    check_output_path,
    client_errors,
    curve_keys,
    curve_options,
    endpoint,
    field_list,
    fmt_float,
    one_line,
    positive_float,
    positive_int,
    seconds,
)
from streamgmm.replay import CHECK_TIMEOUT_S

if TYPE_CHECKING:
    from streamgmm.client import Mixture


def _foxglove_address(text: str) -> tuple[str, int]:
    """``watch --foxglove [HOST:]PORT``; empty: 127.0.0.1:8765."""
    if text == "":
        return ("127.0.0.1", 8765)
    from streamgmm.foxglove_view import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mixture_line(m: Mixture, previous: Mixture | None = None) -> str:
    top = np.sort(m.weights)[::-1][:3]
    line = (
        f"{m.model} seq {m.seq:>6}  {m.kind:<8}  n_seen {m.n_seen:>10}  "
        f"avg_ll {fmt_float(m.avg_log_likelihood, '9.4f')}  K {m.n_components}  "
        f"top w {' '.join(f'{w:.3f}' for w in top)}"
    )
    # Drift made visible: say when the daemon saw the stream leave what the model describes.
    changes = m.extra.get("n_change_points")
    before = None if previous is None else previous.extra.get("n_change_points")
    if isinstance(changes, int) and isinstance(before, int) and changes > before:
        line += f"  CHANGE POINT ({changes} so far; moves {m.extra.get('n_moves', 0)})"
    return line


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
        raise CliError(f"cannot open the rerun view: {one_line(exc)}") from None


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
        check_output_path(args.plot, "--plot")
    for option, path in (("--rerun-save", args.rerun_save),
                         ("--foxglove-save", args.foxglove_save)):
        if path:
            check_output_path(path, option)
    curve = curve_keys(args)
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
        with client_errors(f"cannot watch {args.endpoint}", curve):
            sub = MixtureSubscriber(args.endpoint, args.control, args.model, curve=curve)
    except CliError:
        for opened in (view, fox):
            if opened is not None:
                opened.close()
        raise
    try:
        # An unknown model is refused at once (ControlError): exit 2 with the daemon's list.
        with client_errors(f"cannot watch model {args.model!r}", curve):
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
            one_line(
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



def add_parser(commands: Any) -> None:
    """The ``watch`` subcommand."""
    p = commands.add_parser(
        "watch", help="print each mixture update of a model",
        description="Follow one model (snapshot first, then each newer update) and print one "
        "line per mixture. Exits 0 after --count mixtures or --timeout seconds, 1 if none "
        "arrived.",
    )
    p.add_argument("--endpoint", default=DEFAULT_PUBLISH, type=endpoint,
                   help=f"daemon update endpoint (default {DEFAULT_PUBLISH})")
    p.add_argument("--control", default=DEFAULT_CONTROL, type=endpoint,
                   help=f"daemon control endpoint (default {DEFAULT_CONTROL})")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--count", type=positive_int, default=None,
                   help="stop after this many mixtures")
    p.add_argument("--timeout", type=seconds, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--idle", type=positive_float, default=None, metavar="S",
                   help="stop when no update came for S seconds once updates flow (the "
                   "stream has ended); the first snapshot alone does not start the clock")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw the last mixture at exit (also after Ctrl-C or SIGTERM): top "
                   "view and, for 3-D models, side view; needs matplotlib")
    p.add_argument("--axes", type=field_list, default=None, metavar="NAMES",
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

