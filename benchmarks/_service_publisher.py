"""Helper processes of ``bench_service.py``: publishers, a bare subscriber and an echo forwarder.

    python benchmarks/_service_publisher.py paced     --endpoint E --rate R --duration S ...
    python benchmarks/_service_publisher.py throttled --endpoint E --control C --points N ...
    python benchmarks/_service_publisher.py rawsub    --bind E --control C
    python benchmarks/_service_publisher.py echo      --bind E --out E2

``paced`` and ``throttled`` print one JSON line with what they sent when they finish;
``rawsub`` and ``echo`` print ``READY`` once bound and run until SIGTERM (or ``--max-seconds``).
Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import zmq

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import gaussian_blobs  # noqa: E402

from streamgmm import codec  # noqa: E402

POOL = 16  # distinct point batches cycled through
_stop = False


def _on_signal(signum, frame) -> None:
    global _stop
    _stop = True


def _install_signals() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def _cpu_seconds() -> float:
    return time.process_time()


def _batches(batch: int, dim: int, dtype: str, seed: int,
             stream: str = "blobs") -> list[np.ndarray]:
    """``POOL`` messages of ``batch`` points: i.i.d. blobs, or ``stream="lidar"``: consecutive
    slices of one synthetic LiDAR scene in sweep (azimuth) order, as a driver sends them."""
    if stream == "lidar":
        from streamgmm.synthetic import lidar_scene

        X = lidar_scene(POOL * batch, seed=seed).astype(np.dtype(dtype))
    else:
        X = gaussian_blobs(POOL * batch, dim, seed=seed).astype(np.dtype(dtype))
    return [X[i * batch:(i + 1) * batch] for i in range(POOL)]


def _pub(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    pub = ctx.socket(zmq.PUB)
    pub.linger = 2000  # flush what is queued when we stop
    pub.connect(endpoint)
    return pub


class StatusClient:
    """``status`` over REQ with a timeout; a timed-out REQ is replaced (it cannot resend)."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.ctx, self.endpoint = ctx, endpoint
        self.sock = None

    def applied(self, timeout_s: float = 5.0) -> tuple[int, int] | None:
        """``(messages_applied, points absorbed)``, or ``None`` on timeout.

        The daemon counts a message applied when it reads it into a model's backlog, ahead
        of absorbing it: the points absorbed are ``points_applied`` less the models'
        ``backlog_points`` (a bare receiver has no models: all of them)."""
        if self.sock is None:
            self.sock = self.ctx.socket(zmq.REQ)
            self.sock.linger = 0
            self.sock.connect(self.endpoint)
        self.sock.send(codec.encode_request("status"))
        if not self.sock.poll(int(timeout_s * 1000)):
            self.sock.close(linger=0)
            self.sock = None
            return None
        reply = codec.decode_reply(self.sock.recv())
        c = reply["counters"]
        waiting = sum(int(m.get("backlog_points", 0)) for m in reply.get("models", {}).values())
        return int(c["messages_applied"]), int(c["points_applied"]) - waiting

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)


# --------------------------------------------------------------------------- paced


def _paced_leg(pub: zmq.Socket, topic: bytes, batches: list[np.ndarray], rate: float,
               duration: float, source: str, seq0: int, batch: int) -> dict:
    """One leg at ``rate`` points/s; message i goes out at ``t0 + i * batch / rate``
    (perf_counter, absolute schedule: no drift; sleeping, never spinning, so that the
    publisher leaves the CPU to the receiver)."""
    interval = batch / rate
    n_msgs = max(1, round(rate * duration / batch))
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    max_late = 0.0
    sent = 0
    t_last = t0
    for i in range(n_msgs):
        if _stop:
            break
        target = t0 + i * interval
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        else:
            max_late = max(max_late, now - target)
        payload = codec.encode_points(batches[i % POOL], seq=seq0 + i, stamp=time.time(),
                                      source=source)
        pub.send_multipart([topic, payload])
        sent += 1
        t_last = time.perf_counter()
    elapsed = (t_last - t0) + interval
    return {
        "sent_messages": sent, "sent_points": sent * batch, "t0": t0, "t_last": t_last,
        "elapsed_s": elapsed, "rate": sent * batch / elapsed, "max_late_s": max_late,
        "cpu_s": _cpu_seconds() - cpu0,
    }


def paced(args: argparse.Namespace) -> None:
    """Paced legs: one (``--rate``/``--duration``), or one per stdin line ``RATE DURATION``
    until EOF or an empty line. Prints one JSON line per leg as soon as it ends."""
    _install_signals()
    batches = _batches(args.batch, args.dim, args.dtype, args.seed, args.stream)
    ctx = zmq.Context()
    pub = _pub(ctx, args.endpoint)
    topic = args.topic.encode()
    try:
        time.sleep(args.settle)  # slow joiner: let the subscription reach us
        seq = 0
        if args.rate is not None:
            legs = [(args.rate, args.duration)]
        else:
            print("READY", flush=True)
            legs = None
        for _ in range(10_000):
            if legs is not None:
                if not legs:
                    break
                rate, duration = legs.pop()
            else:
                line = sys.stdin.readline().split()
                if len(line) != 2 or _stop:
                    break
                rate, duration = float(line[0]), float(line[1])
            result = _paced_leg(pub, topic, batches, rate, duration, args.source, seq,
                                args.batch)
            seq += result["sent_messages"]
            print(json.dumps(result), flush=True)
    finally:
        pub.close()
        ctx.term()


# --------------------------------------------------------------------------- throttled


def throttled(args: argparse.Namespace) -> dict:
    """Send ``points`` as fast as the receiver absorbs them (never more than ``max_inflight``
    messages ahead of what it absorbed), so that nothing is dropped."""
    _install_signals()
    batches = _batches(args.batch, args.dim, args.dtype, args.seed, args.stream)
    ctx = zmq.Context()
    pub = _pub(ctx, args.endpoint)
    status = StatusClient(ctx, args.control)
    topic = args.topic.encode()
    try:
        time.sleep(args.settle)
        base = status.applied()
        if base is None:
            raise SystemExit("throttled: no status reply from the receiver")
        n_msgs = -(-args.points // args.batch)
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        deadline = t0 + args.max_seconds
        sent = applied = 0
        next_check = t0
        stalls = 0
        while sent < n_msgs and not _stop and time.perf_counter() < deadline:
            now = time.perf_counter()
            if sent - applied >= args.max_inflight or now >= next_check:
                got = status.applied()
                if got is None:
                    stalls += 1
                    continue
                applied = (got[1] - base[1]) // args.batch  # messages absorbed
                next_check = time.perf_counter() + 0.25
                if sent - applied >= args.max_inflight:
                    time.sleep(0.005)
                    continue
            payload = codec.encode_points(batches[sent % POOL], seq=sent, stamp=time.time(),
                                          source=args.source)
            pub.send_multipart([topic, payload])
            sent += 1
        t_sent = time.perf_counter()
        # Wait (bounded) for the receiver to absorb the tail.
        applied_points = 0
        drain_deadline = time.perf_counter() + 60.0
        while time.perf_counter() < drain_deadline:
            got = status.applied()
            if got is not None:
                applied = got[0] - base[0]
                applied_points = got[1] - base[1]
                if applied >= sent and applied_points >= sent * args.batch:
                    break
            time.sleep(0.01)
        t_end = time.perf_counter()
        return {
            "sent_messages": sent, "sent_points": sent * args.batch,
            "applied_messages": applied, "applied_points": applied_points,
            "elapsed_s": t_end - t0, "send_s": t_sent - t0,
            "rate": applied_points / (t_end - t0) if t_end > t0 else 0.0,
            "timed_out": sent < n_msgs, "status_timeouts": stalls,
            "cpu_s": _cpu_seconds() - cpu0,
        }
    finally:
        status.close()
        pub.close()
        ctx.term()


# --------------------------------------------------------------------------- rawsub


def rawsub(args: argparse.Namespace) -> None:
    """A bare SUB that decodes every message with ``codec.decode_points`` and counts it;
    its REP socket answers ``status`` with daemon-shaped counters."""
    _install_signals()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    rep = ctx.socket(zmq.REP)
    try:
        # The daemon's default ingest options (config.SocketOptions).
        sub.setsockopt(zmq.RCVHWM, args.rcvhwm)
        sub.setsockopt(zmq.MAXMSGSIZE, args.maxmsgsize)
        sub.setsockopt(zmq.SUBSCRIBE, args.topic.encode())
        sub.linger = 0
        sub.bind(args.bind)
        rep.linger = 0
        rep.bind(args.control)
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(rep, zmq.POLLIN)
        received = applied = points = 0
        print("READY", flush=True)
        deadline = time.monotonic() + args.max_seconds
        while not _stop and time.monotonic() < deadline:
            events = dict(poller.poll(100))
            if sub in events:
                for _ in range(256):
                    try:
                        frames = sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    received += 1
                    try:
                        msg = codec.decode_points(frames[-1])
                    except codec.DecodeError:
                        continue
                    applied += 1
                    points += len(msg.points)
            if rep in events:
                rep.recv()
                rep.send(codec.encode_reply({"ok": True, "counters": {
                    "messages_received": received, "messages_applied": applied,
                    "points_applied": points}}))
    finally:
        sub.close()
        rep.close()
        ctx.term()


# --------------------------------------------------------------------------- echo


def echo(args: argparse.Namespace) -> None:
    """PUB -> [SUB -> PUB] -> SUB: forward every message unchanged, nothing else."""
    _install_signals()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    pub = ctx.socket(zmq.PUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.linger = pub.linger = 0
        sub.bind(args.bind)
        pub.bind(args.out)
        print("READY", flush=True)
        deadline = time.monotonic() + args.max_seconds
        while not _stop and time.monotonic() < deadline:
            if sub.poll(100):
                pub.send_multipart(sub.recv_multipart())
    finally:
        sub.close()
        pub.close()
        ctx.term()


# --------------------------------------------------------------------------- cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)

    def sender(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", required=True, help="ingest endpoint to connect to")
        p.add_argument("--topic", default="points/lidar")
        p.add_argument("--source", default="bench")
        p.add_argument("--batch", type=int, default=4096)
        p.add_argument("--dim", type=int, default=3)
        p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--settle", type=float, default=0.5,
                       help="seconds between connect and the first message")
        p.add_argument("--stream", default="blobs", choices=("blobs", "lidar"),
                       help="i.i.d. blobs, or slices of a LiDAR sweep in sweep order")

    p = sub.add_parser("paced")
    sender(p)
    p.add_argument("--rate", type=float, help="points per second (else legs from stdin)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")

    p = sub.add_parser("throttled")
    sender(p)
    p.add_argument("--control", required=True, help="status endpoint of the receiver")
    p.add_argument("--points", type=int, required=True)
    p.add_argument("--max-inflight", type=int, default=128, help="messages")
    p.add_argument("--max-seconds", type=float, default=120.0)

    p = sub.add_parser("rawsub")
    p.add_argument("--bind", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--topic", default="points/")
    p.add_argument("--rcvhwm", type=int, default=1000)
    p.add_argument("--maxmsgsize", type=int, default=16_777_216)
    p.add_argument("--max-seconds", type=float, default=900.0)

    p = sub.add_parser("echo")
    p.add_argument("--bind", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-seconds", type=float, default=900.0)

    args = parser.parse_args(argv)
    if args.mode == "paced":
        paced(args)
    elif args.mode == "throttled":
        print(json.dumps(throttled(args)), flush=True)
    elif args.mode == "rawsub":
        rawsub(args)
    else:
        echo(args)
    return 0



# --------------------------------------------------------------------------- soak.py helpers
#
#   python benchmarks/_service_publisher.py stamped --endpoint E --record FILE.npz ...
#   python benchmarks/_service_publisher.py updsub  --endpoint E --record FILE.npz
#
# ``stamped`` is ``paced`` reading legs ``RATE DURATION`` from stdin (prints READY first), and
# records (seq, stamp, wall time just after the send) of every message it sends; ``updsub``
# connects to a daemon's update PUB socket and records (wall time of receipt, seq, last_stamp,
# n_seen, kind) of every update. Both write FILE.npz when they stop (EOF / SIGTERM /
# ``--max-seconds``) and print one JSON line. Wall times are ``time.time()``: the two processes
# run on the same machine, so they share that clock.

_KINDS = ("online", "refit", "snapshot")


class _RecordingPub:
    """A PUB socket that records ``(seq, stamp, time.time() after the send)`` per message."""

    def __init__(self, sock: zmq.Socket, limit: int) -> None:
        import msgpack

        self.sock, self.limit, self._unpack = sock, limit, msgpack.unpackb
        self.seq: list[int] = []
        self.stamp: list[float] = []
        self.sent_at: list[float] = []

    def send_multipart(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)
        now = time.time()
        if len(self.seq) < self.limit:
            head = self._unpack(frames[-1])
            self.seq.append(int(head["seq"]))
            self.stamp.append(float(head["stamp"]))
            self.sent_at.append(now)

    def save(self, path: str) -> None:
        np.savez(path, seq=np.array(self.seq, np.int64), stamp=np.array(self.stamp),
                 sent_at=np.array(self.sent_at))


def stamped(args: argparse.Namespace) -> None:
    """Paced legs from stdin (as ``paced``), every message recorded in ``--record``."""
    _install_signals()
    batches = _batches(args.batch, args.dim, args.dtype, args.seed)
    ctx = zmq.Context()
    sock = _pub(ctx, args.endpoint)
    pub = _RecordingPub(sock, args.max_records)
    topic = args.topic.encode()
    try:
        time.sleep(args.settle)
        print("READY", flush=True)
        seq = 0
        for _ in range(10_000):
            line = sys.stdin.readline().split()
            if len(line) != 2 or _stop:
                break
            result = _paced_leg(pub, topic, batches, float(line[0]), float(line[1]),
                                args.source, seq, args.batch)
            seq += result["sent_messages"]
            print(json.dumps(result), flush=True)
    finally:
        pub.save(args.record)
        sock.close()
        ctx.term()


def updsub(args: argparse.Namespace) -> None:
    """Record every mixture update received on ``--topic`` until SIGTERM."""
    _install_signals()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    rows: list[tuple[float, int, float, int, int]] = []
    bad = 0
    try:
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, args.topic.encode())
        sub.connect(args.endpoint)
        time.sleep(args.settle)  # slow joiner
        print("READY", flush=True)
        deadline = time.monotonic() + args.max_seconds
        while not _stop and time.monotonic() < deadline:
            if not sub.poll(100):
                continue
            for _ in range(1000):
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.time()
                try:
                    upd = codec.decode_update(frames[-1])
                except codec.DecodeError:
                    bad += 1
                    continue
                if len(rows) < args.max_records:
                    kind = _KINDS.index(upd["kind"]) if upd["kind"] in _KINDS else -1
                    rows.append((now, upd["seq"], upd["last_stamp"], upd["n_seen"], kind))
    finally:
        sub.close()
        ctx.term()
        table = np.array(rows, dtype=np.float64).reshape(-1, 5)
        np.savez(args.record, received_at=table[:, 0], seq=table[:, 1].astype(np.int64),
                 last_stamp=table[:, 2], n_seen=table[:, 3].astype(np.int64),
                 kind=table[:, 4].astype(np.int64))
        print(json.dumps({"updates": len(rows), "undecodable": bad}), flush=True)


def soak_main(argv: list[str] | None = None) -> int:
    """``main`` plus the modes of soak.py (``stamped``, ``updsub``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("stamped", "updsub"):
        return main(argv)
    parser = argparse.ArgumentParser(description="soak.py helpers")
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("stamped")
    p.add_argument("--endpoint", required=True, help="ingest endpoint to connect to")
    p.add_argument("--topic", default="points/lidar")
    p.add_argument("--source", default="soak")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--dim", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--record", required=True, help=".npz file written at the end")
    p.add_argument("--max-records", type=int, default=10_000_000)
    p = sub.add_parser("updsub")
    p.add_argument("--endpoint", required=True, help="update PUB endpoint to connect to")
    p.add_argument("--topic", default="gmm/")
    p.add_argument("--settle", type=float, default=0.3)
    p.add_argument("--record", required=True, help=".npz file written at the end")
    p.add_argument("--max-records", type=int, default=10_000_000)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    (stamped if args.mode == "stamped" else updsub)(args)
    return 0


if __name__ == "__main__":
    sys.exit(soak_main())
