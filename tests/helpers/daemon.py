"""Test harness: the real daemon as a subprocess on ipc:// endpoints in a temp dir.

Tests talk to it only through the wire (PUB/SUB/ROUTER with the codec), with every wait
bounded in time, and the fixture kills whatever is left when a test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from streamgmm import codec

READY_TIMEOUT_S = 20.0


def write_config(directory: Path, models: list[dict], service: dict | None = None) -> Path:
    """A TOML config with ipc endpoints under ``directory``; returns its path."""
    lines = [
        "[service]",
        f'ingest = ["ipc://{directory}/ingest"]',
        f'publish = "ipc://{directory}/publish"',
        f'control = "ipc://{directory}/control"',
    ]
    tables = {}
    for key, value in (service or {}).items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {_toml(value)}")
    for name, table in tables.items():
        lines.append(f"[service.{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in table.items())
    for model in models:
        lines.append("[[model]]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in model.items())
    path = directory / "daemon.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


class Daemon:
    """A running ``streamgmm run CONFIG`` with wire helpers."""

    def __init__(self, config_path: Path, curve=None) -> None:
        self.config_path = config_path
        self.directory = config_path.parent
        self.log_path = self.directory / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", str(config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        self.ctx = zmq.Context()
        self._wait_ready()
        self.curve = curve  # CurveKeys used by every socket of the harness
        self.pub = self._socket(zmq.PUB)
        self.pub.connect(f"ipc://{self.directory}/ingest")
        self.sub = self._socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"gmm/")
        self.sub.connect(f"ipc://{self.directory}/publish")
        time.sleep(0.3)  # let both subscriptions reach their publishers (slow joiner)
        self.seq: dict[str, int] = {}

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        if self.curve is not None:
            self.curve.apply(sock)
        return sock

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if b" ready " in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.02)
        raise TimeoutError(f"daemon not ready: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, topic: str, points: np.ndarray, source: str = "test", seq: int | None = None,
             stamp: float | None = None, frame: str = "") -> None:
        if seq is None:
            seq = self.seq.get(source, -1) + 1
        self.seq[source] = seq
        stamp = time.time() if stamp is None else stamp
        payload = codec.encode_points(points, seq=seq, stamp=stamp, source=source, frame=frame)
        self.pub.send_multipart([topic.encode(), payload])

    def send_raw(self, frames: list[bytes]) -> None:
        self.pub.send_multipart(frames)

    def request(self, timeout: float = 10.0, **fields) -> dict:
        req = self._socket(zmq.REQ)
        req.connect(f"ipc://{self.directory}/control")
        try:
            req.send(codec.encode_request(**fields))
            if not req.poll(int(timeout * 1000)):
                raise TimeoutError(f"no reply to {fields} within {timeout} s")
            reply = req.recv()
        finally:
            req.close()
        try:
            return codec.decode_update(reply)
        except codec.DecodeError:
            return codec.decode_reply(reply)

    def status(self) -> dict:
        return self.request(op="status")

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05) -> dict:
        """Poll ``status`` until ``predicate(status)`` holds; returns that status."""
        deadline = time.monotonic() + timeout
        status = self.status()
        while not predicate(status):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; last status {status}")
            time.sleep(interval)
            status = self.status()
        return status

    def settle(self, timeout: float = 30.0) -> dict:
        """Wait until no refit (scheduled or requested) is running."""
        return self.wait_for(
            lambda s: not any(m["refit_running"] for m in s["models"].values()), timeout
        )

    def updates(self, timeout: float = 1.0) -> list[dict]:
        """Every update received until ``timeout`` seconds pass without one."""
        out = []
        while self.sub.poll(int(timeout * 1000)):
            topic, payload = self.sub.recv_multipart()
            out.append(codec.decode_update(payload))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self.ctx.closed:
            self.ctx.destroy(linger=0)
        if not self._log.closed:
            self._log.close()
