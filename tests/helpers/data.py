"""Small data sets the daemon and CLI tests share."""

from __future__ import annotations

import numpy as np

# One small model of 3-D points that publishes after every message and never refits on a
# timer: what most daemon and CLI tests run.
MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
         "publish_every_s": 0.0, "refit_every_s": 0.0}


def blobs(n: int, seed: int = 0, dim: int = 3) -> np.ndarray:
    """``n`` points around three well-separated centres (unit spread)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0] * dim, [5.0] * dim, [-5.0] + [5.0] * (dim - 1)])
    return centers[rng.integers(0, 3, n)] + rng.normal(size=(n, dim))
