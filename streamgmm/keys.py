"""CURVE key pairs for the daemon and its clients (``streamgmm keygen``).

Key files are ZeroMQ certificates as written by ``zmq.auth.create_certificates``:
``NAME.key`` holds the public key (safe to copy to peers) and ``NAME.key_secret`` both keys.
pyzmq writes them with the process umask; the secret file is made 0600 here, because the
daemon refuses to start with a secret key that others can read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CurveKeys:
    """What a client needs to talk to a CURVE-enabled daemon.

    Attributes
    ----------
    server_public : bytes
        The daemon's public key (Z85, 40 bytes).
    client_public, client_secret : bytes
        The client's own key pair (Z85).
    """

    server_public: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def from_files(cls, server_public_file: str | os.PathLike, client_secret_file: str | os.PathLike
                   ) -> CurveKeys:
        """Load from the daemon's ``.key`` file and the client's ``.key_secret`` file."""
        import zmq.auth

        server_public, _ = zmq.auth.load_certificate(os.fspath(server_public_file))
        client_public, client_secret = zmq.auth.load_certificate(os.fspath(client_secret_file))
        if not client_secret:
            raise ValueError(f"{client_secret_file} holds no secret key (use NAME.key_secret)")
        return cls(server_public, client_public, client_secret)

    def apply(self, socket) -> None:
        """Configure a client socket; call before connect."""
        socket.curve_serverkey = self.server_public
        socket.curve_publickey = self.client_public
        socket.curve_secretkey = self.client_secret


def generate_keys(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) into ``directory``.

    Returns the (public, secret) file paths. An existing key of that name is never
    overwritten.
    """
    import zmq.auth

    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another name or remove it first")
    directory.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret file must never exist with wider permissions
    try:
        made_public, made_secret = zmq.auth.create_certificates(os.fspath(directory), name)
    finally:
        os.umask(old)
    os.chmod(made_secret, 0o600)
    os.chmod(made_public, 0o644)
    return Path(made_public), Path(made_secret)
