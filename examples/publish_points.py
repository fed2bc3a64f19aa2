"""Publish a synthetic LiDAR stream to a running daemon (``streamgmm run configs/example.toml``).

Run: ``python examples/publish_points.py [--endpoint tcp://127.0.0.1:5555] [--sweeps 5]``.
Each sweep is one 360-degree scan of a room, sent in sensor order in batches of points.
"""

from __future__ import annotations

import argparse
import time

from streamgmm.client import PointPublisher
from streamgmm.synthetic import lidar_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="daemon ingest")
    parser.add_argument("--topic", default="points/lidar")
    parser.add_argument("--sweeps", type=int, default=5, help="scans to send")
    parser.add_argument("--points", type=int, default=50_000, help="points per scan")
    parser.add_argument("--batch", type=int, default=4096, help="points per message")
    parser.add_argument("--scan-rate", type=float, default=2.0, help="scans per second")
    args = parser.parse_args()

    with PointPublisher(args.endpoint, args.topic) as pub:
        # A PUB socket drops what it sends before the daemon has subscribed: wait for it.
        if not pub.wait_for_subscriber(5.0):
            print(f"no daemon subscribed at {args.endpoint}; sending anyway")
        start = time.perf_counter()
        for sweep in range(args.sweeps):
            scan = lidar_scene(args.points, seed=sweep)
            stamp = time.time()  # one sensor time per scan
            for first in range(0, len(scan), args.batch):
                pub.send(scan[first : first + args.batch], stamp=stamp, frame="lidar")
            # Pace the scans on an absolute schedule so the rate does not drift.
            time.sleep(max(0.0, start + (sweep + 1) / args.scan_rate - time.perf_counter()))
        print(f"sent {pub.seq} messages ({args.sweeps} scans of {args.points} points)")


if __name__ == "__main__":
    main()
