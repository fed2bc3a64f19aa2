"""``streamgmm keygen``: write a CURVE key pair."""

from __future__ import annotations

import argparse
from typing import Any

from streamgmm.cli.common import CliError


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



def add_parser(commands: Any) -> None:
    """The ``keygen`` subcommand."""
    p = commands.add_parser(
        "keygen", help="write a CURVE key pair (NAME.key, NAME.key_secret)",
        description="Write a CURVE key pair into DIR: NAME.key (public, for peers) and "
        "NAME.key_secret (mode 0600). An existing pair is never overwritten.",
    )
    p.add_argument("directory", metavar="DIR", help="directory of the key files (created)")
    p.add_argument("name", metavar="NAME", help="key name, e.g. server or robot1")
    p.set_defaults(func=_cmd_keygen)
