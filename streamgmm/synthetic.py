"""Synthetic sensor streams that arrive in sensor order, for demos, tests and benchmarks.

Real LiDARs and moving robots do not deliver i.i.d. points: a scan sweeps the scene by
azimuth, a robot sees one room and then the next. These generators reproduce that order,
which is what breaks textbook online EM.
"""

from __future__ import annotations

import numpy as np


def lidar_scene(n_points: int, seed: int = 0) -> np.ndarray:
    """Points of one 360-degree LiDAR sweep of a room, in sweep (azimuth) order.

    The room has a floor, four walls and a few boxes and poles; points carry range noise.
    Returns an array of shape (n_points, 3) in metres, ordered by azimuth.
    """
    rng = np.random.default_rng(seed)
    parts = []
    weights = np.array([0.30, 0.12, 0.12, 0.12, 0.12, 0.08, 0.06, 0.04, 0.04])
    counts = rng.multinomial(n_points, weights / weights.sum())
    half = 8.0
    # floor
    c = counts[0]
    parts.append(np.column_stack([rng.uniform(-half, half, c), rng.uniform(-half, half, c),
                                  rng.normal(0.0, 0.02, c)]))
    # four walls, 3 m high
    for i, c in enumerate(counts[1:5]):
        t = rng.uniform(-half, half, c)
        z = rng.uniform(0.0, 3.0, c)
        off = rng.normal(half, 0.03, c) * (1 if i % 2 == 0 else -1)
        parts.append(np.column_stack([t, off, z]) if i < 2 else np.column_stack([off, t, z]))
    # boxes
    for c, (cx, cy, s) in zip(counts[5:7], [(3.0, 2.0, 1.0), (-4.0, -3.0, 1.5)]):
        parts.append(np.column_stack([rng.normal(cx, s / 3, c), rng.normal(cy, s / 3, c),
                                      rng.uniform(0.0, s, c)]))
    # poles
    for c, (cx, cy) in zip(counts[7:9], [(-2.0, 4.0), (5.0, -5.0)]):
        parts.append(np.column_stack([rng.normal(cx, 0.08, c), rng.normal(cy, 0.08, c),
                                      rng.uniform(0.0, 2.5, c)]))
    X = np.vstack(parts)
    azimuth = np.arctan2(X[:, 1], X[:, 0])
    return X[np.argsort(azimuth, kind="stable")]


def moving_sensor_stream(
    n_points: int, batch_size: int = 1024, n_clusters: int = 6, dim: int = 3,
    seed: int = 0,
):
    """Batches from a sensor moving past ``n_clusters`` Gaussian blobs, one region at a time.

    Yields arrays of shape (batch_size, dim) (the last may be shorter): early batches come
    from the first blobs, later ones from the next, as when a robot drives along a corridor.
    """
    rng = np.random.default_rng(seed)
    centers = np.zeros((n_clusters, dim))
    centers[:, 0] = np.arange(n_clusters) * 4.0
    centers[:, 1:] = rng.normal(0.0, 2.0, (n_clusters, dim - 1))
    scales = rng.uniform(0.3, 1.0, (n_clusters, dim))
    sent = 0
    while sent < n_points:
        m = min(batch_size, n_points - sent)
        # The sensor position sweeps along x over the stream; it sees blobs near it.
        pos = (sent / max(n_points, 1)) * (n_clusters - 1) * 4.0
        near = np.exp(-0.5 * ((centers[:, 0] - pos) / 4.0) ** 2)
        labels = rng.choice(n_clusters, size=m, p=near / near.sum())
        yield centers[labels] + rng.normal(size=(m, dim)) * scales[labels]
        sent += m
