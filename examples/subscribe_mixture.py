"""Follow a model of a running daemon and score points under each new mixture.

Run: ``python examples/subscribe_mixture.py [--model lidar] [--count 10]`` next to
``streamgmm run configs/example.toml`` and ``python examples/publish_points.py``. The
subscriber gets the current mixture (a snapshot) first, then every newer update.
"""

from __future__ import annotations

import argparse

import numpy as np

from streamgmm.client import ControlClient, MixtureSubscriber
from streamgmm.synthetic import lidar_scene, moving_sensor_stream


def held_out_points(dim: int, n: int = 5_000) -> np.ndarray:
    """Points to score, from the synthetic source that feeds a model of this dimension.

    A 3-D model gets another LiDAR scan of the room (``publish --synthetic lidar``); any
    other dimension gets points of the moving sensor's scene (``publish --synthetic moving
    --dim D``, whose blobs its seed places: seed 0, the CLI's default), e.g. the 6-D imu.
    """
    if dim == 3:
        return lidar_scene(n, seed=123)
    return np.vstack(list(moving_sensor_stream(n, batch_size=n, dim=dim, seed=0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="daemon updates")
    parser.add_argument("--control", default="tcp://127.0.0.1:5557", help="daemon control")
    parser.add_argument("--model", default="lidar")
    parser.add_argument("--count", type=int, default=10, help="mixtures to print")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each")
    args = parser.parse_args()

    with ControlClient(args.control) as ctl:
        models = ctl.status()["models"]
    print(f"daemon models: {', '.join(models)}")

    test_points: np.ndarray | None = None  # made for the model's dimension once it is known
    with MixtureSubscriber(args.endpoint, args.control, args.model) as sub:
        for _ in range(args.count):
            mixture = sub.recv(timeout=args.timeout)
            if mixture is None:
                print(f"nothing within {args.timeout:g} s ({sub.last_error or 'no updates'})")
                break
            gm = mixture.to_estimator()  # a streamgmm.GaussianMixture
            if test_points is None:
                test_points = held_out_points(mixture.n_features)
            score = gm.score(test_points)
            print(f"seq {mixture.seq:>5} {mixture.kind:<8} n_seen {mixture.n_seen:>8} "
                  f"K {mixture.n_components}  held-out log-likelihood {score:8.3f}")
        print(f"gaps {sub.gaps}, resyncs {sub.resyncs}, rejected {sub.rejected}")


if __name__ == "__main__":
    main()
