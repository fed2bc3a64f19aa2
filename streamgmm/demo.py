"""``make demo``: a daemon, a synthetic LiDAR and a live watcher on loopback.

1. writes a config for one model into a temporary directory and starts
   ``streamgmm run`` on free loopback ports;
2. starts ``streamgmm publish --synthetic lidar``: sweeps of a room, in sensor (azimuth)
   order, at a fixed rate;
3. watches the live mixture with :class:`~streamgmm.client.MixtureSubscriber` (the Clone
   pattern: subscribe, snapshot, then newer updates), printing one line per update;
4. asks the daemon for a refit, draws the final mixture over the points (top and side
   views, in metres) into ``demo-out/demo-mixture.png`` (untracked; ``make pictures`` writes
   the README's ``docs/img/demo-mixture.png``), and stops everything (SIGTERM; the daemon
   writes its checkpoint and exits 0). The temporary ``streamgmm-demo-*`` directory is
   removed after a good run and kept (its daemon log path printed) after a failed one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
[service]
ingest = ["tcp://127.0.0.1:{ingest}"]
publish = "tcp://127.0.0.1:{publish}"
control = "tcp://127.0.0.1:{control}"

[[model]]
name = "room"
topic = "points/lidar"
dim = 3
components = 16
publish_every_s = 0.5
refit_every_s = 0
window_points = 100000
checkpoint = "{state}/room.ckpt"
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_ready(log_path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b" ready " in log_path.read_bytes():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited early:\n{log_path.read_text()}")
        time.sleep(0.05)
    raise TimeoutError(f"daemon did not start:\n{log_path.read_text()}")


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamgmm.demo", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to stream")
    parser.add_argument("--rate", type=float, default=100_000.0, help="points per second")
    parser.add_argument("--out", default="demo-out/demo-mixture.png",
                        help="PNG of the final mixture (default demo-out/demo-mixture.png)")
    args = parser.parse_args(argv)

    from streamgmm.client import ControlClient, MixtureSubscriber

    workdir = Path(tempfile.mkdtemp(prefix="streamgmm-demo-"))
    ingest, publish, control = _free_ports(3)
    config = workdir / "demo.toml"
    config.write_text(CONFIG.format(ingest=ingest, publish=publish, control=control,
                                    state=workdir))
    log_path = workdir / "daemon.log"
    points_total = int(args.rate * args.seconds)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    print(f"demo: daemon config {config}")
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "streamgmm", "run", str(config)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
    publisher = None
    completed = False
    try:
        _wait_ready(log_path, daemon)
        print(f"demo: daemon ready (ingest :{ingest}, updates :{publish}, control :{control})")
        publisher = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "publish",
             "--endpoint", f"tcp://127.0.0.1:{ingest}", "--topic", "points/lidar",
             "--control", f"tcp://127.0.0.1:{control}",
             "--synthetic", "lidar", "--count", str(points_total), "--batch", "2048",
             "--rate", str(args.rate), "--seed", "0", "--wait-subscriber", "5"],
            env=env,
        )
        print(f"demo: publishing {points_total} LiDAR points in sweep order at "
              f"{args.rate:.0f} points/s")
        sub = MixtureSubscriber(f"tcp://127.0.0.1:{publish}", f"tcp://127.0.0.1:{control}",
                                "room", timeout=5.0)
        last = None
        deadline = time.monotonic() + args.seconds + 10
        try:
            while time.monotonic() < deadline:
                mixture = sub.recv(timeout=0.5)
                if mixture is not None:
                    last = mixture
                    top = ", ".join(f"{w:.2f}" for w in sorted(mixture.weights)[::-1][:4])
                    print(f"  seq {mixture.seq:4d} {mixture.kind:8s} n_seen {mixture.n_seen:8d}"
                          f"  avg log-lik {mixture.avg_log_likelihood:8.3f}  top weights {top}")
                if publisher.poll() is not None and last is not None and \
                        last.n_seen >= points_total:
                    break
            with ControlClient(f"tcp://127.0.0.1:{control}", timeout=60.0) as ctl:
                seq = ctl.refit("room")
                print(f"demo: refit on the retained points published as seq {seq}")
                final = ctl.snapshot("room")
        finally:
            sub.close()
        _draw(final, points_total, args.out)
        print(f"demo: wrote {args.out} (final mixture of {final.n_seen} points)")
        completed = True
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
            publisher.wait()
        code = _stop(daemon)
        if completed and code == 0:
            # Nothing to look at in the temp dir after a good run: config, log, checkpoint.
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"demo: daemon stopped with exit code {code}")
        else:  # kept, to look at what went wrong
            print(f"demo: daemon stopped with exit code {code}; log kept in {log_path}")
    return 0 if code == 0 else 1


def _draw(mixture, n_points: int, out: str) -> None:
    from streamgmm.synthetic import lidar_scene

    try:
        import matplotlib
    except ImportError:
        print("demo: matplotlib is missing (pip install 'streamgmm[plot]'): no picture")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamgmm.plotting import mixture_figure

    X = lidar_scene(n_points, seed=0)  # the same sweep the publisher sent
    gm = mixture.to_estimator()
    fig = mixture_figure(
        gm, X, sensor_origin=(0.0, 0.0, 0.0), sweep=True,
        title=f"daemon model '{mixture.model}' after the demo: seq {mixture.seq} "
        f"({mixture.kind}), {mixture.n_seen} points\nmean log-likelihood {gm.score(X):.3f} "
        "nats/point on the points sent",
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
