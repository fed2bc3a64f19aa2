"""``streamgmm run`` and the control requests: ``status``, ``snapshot``, ``refit``, ``load``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamgmm.cli.common import (
    DEFAULT_CONTROL,
    CliError,
    client_errors,
    curve_keys,
    curve_options,
    endpoint,
    fmt_float,
    positive_float,
    print_components,
    print_json,
)

if TYPE_CHECKING:
    from streamgmm.client import Mixture


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


def _print_status(endpoint: str, reply: Mapping[str, Any]) -> None:
    shown = {"ok", "v", "uptime_s", "models", "counters"}
    print(f"daemon at {endpoint}: up {fmt_float(reply.get('uptime_s'), '.1f')} s")
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

def _cmd_status(args: argparse.Namespace) -> int:
    curve = curve_keys(args)
    from streamgmm.client import ControlClient

    with client_errors(f"status from {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            reply = ctl.status()
    if args.json:
        print_json(reply)
    else:
        _print_status(args.control, reply)
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    curve = curve_keys(args)
    from streamgmm.client import ControlClient

    with client_errors(f"snapshot from {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            m = ctl.snapshot(args.model)
    if args.json:
        print_json(_mixture_dict(m))
        return 0
    print(
        f"model {m.model}  seq {m.seq}  n_seen {m.n_seen}  K {m.n_components}  "
        f"d {m.n_features}  covariance {m.covariance_type}  "
        f"avg_ll {fmt_float(m.avg_log_likelihood)}"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.stamp))
    print(f"updated {stamp}  last sensor stamp {fmt_float(m.last_stamp, '.3f')}")
    for key, value in m.extra.items():
        print(f"{key}: {value}")
    print_components(m.weights, m.means)
    return 0


def _cmd_refit(args: argparse.Namespace) -> int:
    curve = curve_keys(args)
    from streamgmm.client import ControlClient

    with client_errors(f"refit via {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            seq = ctl.refit(args.model, timeout=args.timeout)
    print(f"refit of {args.model} published as seq {seq}")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    curve = curve_keys(args)
    from streamgmm.io import MixtureFileError, load_mixture

    try:
        mixture = load_mixture(args.file)
    except MixtureFileError as exc:
        raise CliError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    weight = args.weight if args.weight is not None else mixture.n_points
    from streamgmm.client import ControlClient

    with client_errors(f"load via {args.control}", curve):
        with ControlClient(args.control, timeout=args.timeout, curve=curve) as ctl:
            seq = ctl.load(args.model, covariance_type=mixture.covariance_type, weight=weight,
                           timeout=args.timeout, weights=mixture.weights,
                           means=mixture.means, covariances=mixture.covariances)
    k, d = mixture.means.shape
    print(f"loaded {args.file} ({k} components, d={d}) into {args.model} as seq {seq}")
    return 0




def add_run(commands: Any) -> None:
    """The ``run`` subcommand."""
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



def add_control(commands: Any) -> None:
    """The control subcommands: ``status``, ``snapshot``, ``refit``, ``load``."""

    def control_parser(name: str, help_text: str, timeout: float) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper()
                                  + help_text[1:] + ".")
        sub.add_argument("--control", default=DEFAULT_CONTROL, type=endpoint,
                         help=f"daemon control endpoint (default {DEFAULT_CONTROL})")
        sub.add_argument("--timeout", type=positive_float, default=timeout, metavar="S",
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
    p.add_argument("--weight", type=positive_float, default=None, metavar="N_POINTS",
                   help="prior weight in points (default: the file's n_points, else the "
                   "points the model has seen)")
    p.set_defaults(func=_cmd_load)

