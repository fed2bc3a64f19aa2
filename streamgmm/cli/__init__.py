"""The ``streamgmm`` command: run the daemon, publish points, watch mixtures, query, fit offline.

Every subcommand has ``--help``. Errors print one line on stderr and exit with status 2;
``watch`` exits 1 when no mixture arrived before its ``--timeout``. The ZeroMQ clients are
imported by the subcommands that need them, so ``streamgmm fit`` and ``--help`` stay light.
See ``docs/cli.md`` for examples.

One module per group of subcommands: :mod:`~streamgmm.cli.daemon` (``run``, ``status``,
``snapshot``, ``refit``, ``load``), :mod:`~streamgmm.cli.publish`,
:mod:`~streamgmm.cli.watch`, :mod:`~streamgmm.cli.fit`, :mod:`~streamgmm.cli.keygen`; what
they share is :mod:`~streamgmm.cli.common`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

import streamgmm
from streamgmm.cli import daemon, fit, keygen, publish, watch
from streamgmm.cli.common import CliError, Parser, one_line, sigterm_as_interrupt

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamgmm`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = Parser(
        prog="streamgmm",
        description="Streaming Gaussian mixtures of sensor point streams over ZeroMQ.",
        epilog="Run 'streamgmm COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {streamgmm.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    daemon.add_run(commands)
    publish.add_parser(commands)
    watch.add_parser(commands)
    daemon.add_control(commands)
    fit.add_parser(commands)
    keygen.add_parser(commands)

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
        with sigterm_as_interrupt():
            return args.func(args)
    except CliError as exc:
        message = one_line(str(exc))
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
