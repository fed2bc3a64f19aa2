"""CPU cost of ``streamgmm watch --foxglove`` at 20 updates/s of K=64 (issue 21).

A stand-in daemon in this process (a PUB socket sending section-2 updates of a 3-D, K=64,
full-covariance mixture at a fixed rate, optionally with a ``sample`` of points, and a ROUTER
answering the snapshot) feeds ``streamgmm watch`` run as a subprocess. The watcher's CPU time
(user + system, from ``/proc/PID/stat``) over a steady window of wall time is its load in
percent of one core. Legs, each a fresh watcher:

1. ``watch`` alone (decoding and printing: the baseline);
2. ``watch --foxglove 127.0.0.1:0`` with no Foxglove client connected;
3. ``watch --foxglove 127.0.0.1:0 --foxglove-save FILE`` with a WebSocket client subscribed to
   every channel (the server encodes and sends every message; the client, in this process,
   counts what it receives, so that "keeps up" is checked, not assumed);
4. as 3, with ``sample`` = 2048 points per update (``sample_points = 2048``).

Goal: legs 3 and 4 below 5 % of a core, and the client gets every update that was sent
(minus at most the few sent before it subscribed).

Run: ``.venv/bin/python benchmarks/bench_foxglove.py [--seconds 20] [--rate 20] [--quick]``
(about 1.5 minutes; ``--quick``: 5 s per leg). Needs the ``foxglove`` extra and websockets.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, load_line  # noqa: E402

from streamgmm import codec  # noqa: E402

MODEL = "bench"
K, D = 64, 3
GOAL_PERCENT = 5.0


def _mixture(rng: np.random.Generator) -> dict:
    a = rng.normal(size=(K, D, D)) * 0.3
    w = rng.random(K) + 0.2
    return {"weights": w / w.sum(), "means": rng.normal(size=(K, D)) * 10,
            "covariances": a @ a.transpose(0, 2, 1) + 0.01 * np.eye(D)}


def _update(seq: int, kind: str, params: dict, sample: np.ndarray | None, **extra) -> bytes:
    if sample is not None:
        extra["sample"] = codec.encode_array(sample.astype(np.float32), "<f4")
        extra["sample_of"] = 10 * len(sample)
    return codec.encode_update(
        model=MODEL, seq=seq, stamp=time.time(), n_seen=1000 * seq, kind=kind,
        covariance_type="full", avg_log_likelihood=-3.0, last_stamp=1.75e9 + seq / 20,
        n_change_points=0, frame="lidar", **params, **extra)


class FakeDaemon:
    """PUB of updates at a fixed rate + ROUTER answering ``snapshot``, on loopback TCP."""

    def __init__(self, ctx: zmq.Context, rate: float, sample_points: int) -> None:
        self.rate = rate
        self.sample_points = sample_points
        self.rng = np.random.default_rng(21)
        self.params = _mixture(self.rng)
        self.pub = ctx.socket(zmq.PUB)
        self.pub.linger = 0
        port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self.publish_endpoint = f"tcp://127.0.0.1:{port}"
        self.router = ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.control_endpoint = f"tcp://127.0.0.1:{port}"
        self.seq = 1
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        topic = codec.update_topic(MODEL)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        while not self.stop.is_set():
            timeout = max(0.0, next_at - time.monotonic())
            if poller.poll(timeout * 1000):
                frames = self.router.recv_multipart()
                reply = _update(self.seq, "snapshot", self.params, None, ok=True)
                self.router.send_multipart([*frames[:-1], reply])
                continue
            self.seq += 1
            # The mixture moves a little, as a live one does.
            self.params["means"] += self.rng.normal(scale=0.01, size=(K, D))
            sample = (self.rng.normal(size=(self.sample_points, D)) * 10
                      if self.sample_points else None)
            self.pub.send_multipart([topic, _update(self.seq, "online", self.params, sample)])
            self.sent += 1
            next_at += period

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pub.close()
        self.router.close()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WsCounter:
    """A Foxglove WebSocket client that subscribes to every channel and counts messages."""

    def __init__(self, port: int) -> None:
        from websockets.sync.client import connect

        self._connection = connect(f"ws://127.0.0.1:{port}", compression=None, proxy=None,
                                   subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"])
        self.ws = self._connection.__enter__()
        self.counts: dict[str, int] = {}
        self.topics: dict[int, str] = {}
        self.subscribed: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                frame = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            if isinstance(frame, str):
                msg = json.loads(frame)
                if msg["op"] == "advertise":
                    for ch in msg["channels"]:
                        if ch["id"] not in self.subscribed:
                            self.subscribed.add(ch["id"])
                            self.topics[ch["id"]] = ch["topic"]
                            self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                                {"id": ch["id"], "channelId": ch["id"]}]}))
            elif frame[0] == 0x01:
                (sub,) = struct.unpack_from("<I", frame, 1)
                topic = self.topics.get(sub, "?")
                self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self._connection.__exit__(None, None, None)


def leg(name: str, flags: list[str], *, seconds: float, rate: float, client: bool,
        sample_points: int, tmp: Path) -> dict:
    ctx = zmq.Context()
    daemon = FakeDaemon(ctx, rate, sample_points)
    daemon.thread.start()
    args = [sys.executable, "-m", "streamgmm", "watch", "--endpoint", daemon.publish_endpoint,
            "--control", daemon.control_endpoint, "--model", MODEL, *flags]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    counter = None
    try:
        port = None
        if "--foxglove" in flags:
            line = proc.stderr.readline()
            port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        time.sleep(3.0)  # imports done, subscription made, first updates through
        if client and port is not None:
            counter = WsCounter(port)
            time.sleep(1.0)
        sent0 = daemon.sent
        c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        got0 = dict(counter.counts) if counter else {}
        time.sleep(seconds)
        c1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        sent = daemon.sent - sent0
        got = ({k: v - got0.get(k, 0) for k, v in counter.counts.items()} if counter else {})
    finally:
        if counter is not None:
            counter.close()
        proc.terminate()
        proc.wait(30)
        daemon.close()
        ctx.destroy(linger=0)
    return {"leg": name, "cpu_percent": 100 * (c1 - c0) / (t1 - t0), "sent": sent,
            "received": got}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per leg (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="updates/s (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 s per leg")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    print(header("bench_foxglove: CPU of streamgmm watch --foxglove"))
    print(f"K={K} D={D} full covariances, {args.rate:g} updates/s, {args.seconds:g} s per leg")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        specs = [
            ("watch (baseline)", [], False, 0),
            ("--foxglove, no client", ["--foxglove", "127.0.0.1:0"], False, 0),
            ("--foxglove + client + --foxglove-save",
             ["--foxglove", "127.0.0.1:0", "--foxglove-save", str(tmp_path / "a.mcap")],
             True, 0),
            ("as above, sample of 2048 points",
             ["--foxglove", "127.0.0.1:0", "--foxglove-save", str(tmp_path / "b.mcap")],
             True, 2048),
        ]
        for name, flags, client, sample in specs:
            r = leg(name, flags, seconds=args.seconds, rate=args.rate, client=client,
                    sample_points=sample, tmp=tmp_path)
            rows.append(r)
            recv = r["received"].get(f"/streamgmm/{MODEL}/mixture")
            kept = "" if not client else f"  client got {recv} of {r['sent']} SceneUpdates"
            if sample:
                kept += f", {r['received'].get(f'/streamgmm/{MODEL}/points')} PointClouds"
            verdict = "" if "baseline" in name else (
                "  PASS" if r["cpu_percent"] < GOAL_PERCENT else "  MISS")
            print(f"{name:40s} {r['cpu_percent']:5.2f} % of a core{verdict}{kept}", flush=True)
    print(f"goal: < {GOAL_PERCENT:g} % of a core with a client at {args.rate:g} updates/s")
    print(load_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
