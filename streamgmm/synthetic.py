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


def _sweep_order(X: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """``X`` sorted by azimuth around ``centre`` (the sensor position), as one sweep sees it."""
    azimuth = np.arctan2(X[:, 1] - centre[1], X[:, 0] - centre[0])
    return X[np.argsort(azimuth, kind="stable")]


# Three rooms of different shape: (scale x, scale y, scale z, rotation in degrees, offset x,
# offset y). lidar_scene's room is 16 m x 16 m x 3 m; these make a hall, a long narrow room
# with a high ceiling turned by 30 degrees, and a small low office, side by side along x.
_ROOMS = (
    (1.5, 1.0, 1.0, 0.0, 0.0, 0.0),
    (0.6, 1.8, 1.6, 30.0, 32.0, 6.0),
    (0.5, 0.4, 0.8, 0.0, 54.0, -4.0),
)


def rooms_stream(n_points: int, seed: int = 0) -> np.ndarray:
    """A sensor that scans three rooms of different shape, one after the other (3-D).

    Each room is a scaled, rotated and shifted :func:`lidar_scene` (floor, walls, boxes,
    poles): a 24 m x 16 m hall, a 10 m x 29 m room with a 4.8 m ceiling turned by 30 degrees,
    and an 8 m x 6 m office with a 2.4 m ceiling, placed side by side along x with their
    centres at (0, 0), (32, 6) and (54, -4). The points of one room all come before those of
    the next, each room in the azimuth order of one sweep from its centre: the stream a
    robot produces when it stops and scans room by room.

    Parameters
    ----------
    n_points : int
        Total number of points, >= 3; split as evenly as possible between the rooms (the
        first rooms get the remainder).
    seed : int, default=0
        Seed of the random generator; the same seed gives the same stream.

    Returns
    -------
    numpy.ndarray of shape (n_points, 3)
        Points in metres, float64, room 1 then room 2 then room 3. Room ``i`` starts at row
        ``sum(n_points // 3 + (j < n_points % 3) for j in range(i))``.

    Raises
    ------
    ValueError
        If `n_points` < 3.

    Examples
    --------
    >>> X = rooms_stream(3000, seed=1)
    >>> X.shape
    (3000, 3)
    """
    n_points = int(n_points)
    if n_points < 3:
        raise ValueError(f"rooms_stream needs n_points >= 3 (one per room), got {n_points}")
    counts = [n_points // 3 + (i < n_points % 3) for i in range(3)]
    seeds = np.random.SeedSequence(seed).generate_state(3)
    parts = []
    for count, room_seed, (sx, sy, sz, degrees, ox, oy) in zip(counts, seeds, _ROOMS):
        X = lidar_scene(count, seed=int(room_seed)) * np.array([sx, sy, sz])
        a = np.deg2rad(degrees)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        X[:, :2] = X[:, :2] @ rot.T + np.array([ox, oy])
        parts.append(_sweep_order(X, (ox, oy)))
    return np.vstack(parts)


def _walls(segments: np.ndarray, n_points: int, noise: float,
           rng: np.random.Generator) -> np.ndarray:
    """``n_points`` points on line segments ``(m, 4)`` (x0, y0, x1, y1), spread by length."""
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    which = rng.choice(len(segments), size=n_points, p=lengths / lengths.sum())
    t = rng.uniform(0.0, 1.0, n_points)[:, None]
    start, end = segments[which, :2], segments[which, 2:]
    return start + t * (end - start) + rng.normal(0.0, noise, (n_points, 2))


def _path_order(X: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Indices sorting ``X`` by where along the polyline ``path`` its nearest point lies.

    A robot driving along ``path`` sees a wall point when it passes closest to it, so this is
    the order in which a laser on that robot records the map.
    """
    a, b = path[:-1], path[1:]
    d = b - a
    seg_len = np.hypot(d[:, 0], d[:, 1])
    along = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1]
    best_dist = np.full(X.shape[0], np.inf)
    best_s = np.zeros(X.shape[0])
    for i in range(len(a)):
        t = np.clip(((X - a[i]) @ d[i]) / seg_len[i] ** 2, 0.0, 1.0)
        dist = np.hypot(*(X - (a[i] + t[:, None] * d[i])).T)
        closer = dist < best_dist
        best_dist[closer] = dist[closer]
        best_s[closer] = along[i] + t[closer] * seg_len[i]
    return np.argsort(best_s, kind="stable")


def _segments(rows: list[tuple[float, float, float, float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# Building A: a 40 m x 20 m office floor, a corridor along y = 8..12 with four offices on
# each side (doors left as gaps). Building B: an L-shaped lab, 30 m x 12 m plus a 12 m x 18 m
# wing, two big halls and a store room. Walls are (x0, y0, x1, y1) in metres.
_BUILDING_A = _segments(
    [(0, 0, 40, 0), (40, 0, 40, 20), (40, 20, 0, 20), (0, 20, 0, 0)]
    + [(x, 0, x, 8) for x in (10, 20, 30)] + [(x, 12, x, 20) for x in (10, 20, 30)]
    + [(x0, 8, x0 + 8.5, 8) for x0 in (0, 10, 20, 30)]
    + [(x0 + 1.5, 12, x0 + 10, 12) for x0 in (0, 10, 20, 30)]
)
_PATH_A = np.array([[1.0, 10.0], [39.0, 10.0], [35.0, 4.0], [35.0, 16.0], [25.0, 16.0],
                    [25.0, 4.0], [15.0, 4.0], [15.0, 16.0], [5.0, 16.0], [5.0, 4.0]])
_BUILDING_B = _segments([
    (0, 0, 30, 0), (30, 0, 30, 12), (30, 12, 12, 12), (12, 12, 12, 30), (12, 30, 0, 30),
    (0, 30, 0, 0),
    (15, 0, 15, 5), (15, 7.5, 15, 12),  # wall between the halls, with a door
    (0, 18, 5, 18), (7, 18, 12, 18),  # the wing's store room
    (20, 4, 24, 4), (24, 4, 24, 8), (24, 8, 20, 8), (20, 8, 20, 4),  # a pillar block
])
_PATH_B = np.array([[2.0, 2.0], [28.0, 2.0], [28.0, 10.0], [6.0, 10.0], [6.0, 28.0],
                    [2.0, 28.0], [6.0, 22.0], [10.0, 14.0]])


def two_buildings(
    seed: int = 0, n_first: int = 31_761, n_second: int = 20_870, noise: float = 0.03,
) -> tuple[np.ndarray, int]:
    """Two indoor 2-D laser maps, one after the other, each in the order a robot records it.

    Walls are noisy line segments of two different floor plans: an office floor (40 m x
    20 m, a corridor and eight offices) and an L-shaped lab (two halls, a wing with a store
    room, a pillar block). Each map is in its own frame (both start near the origin, as two
    separately recorded maps do) and ordered along the path of a robot driving through it:
    a wall point comes when the robot passes closest to it. The default sizes are those of
    the two recorded maps of issue 12.

    Parameters
    ----------
    seed : int, default=0
        Seed of the random generator; the same seed gives the same stream.
    n_first, n_second : int, default=31761, 20870
        Points of the first and of the second building, each >= 1.
    noise : float, default=0.03
        Standard deviation of the range noise across each wall, in metres (>= 0).

    Returns
    -------
    X : numpy.ndarray of shape (n_first + n_second, 2)
        Points in metres, float64: the first building in path order, then the second.
    second_start : int
        Row where the second building begins (``n_first``).

    Raises
    ------
    ValueError
        If a size is < 1 or `noise` is negative or not finite.

    Examples
    --------
    >>> X, start = two_buildings(seed=0, n_first=500, n_second=300)
    >>> X.shape, start
    ((800, 2), 500)
    """
    n_first, n_second = int(n_first), int(n_second)
    if n_first < 1 or n_second < 1:
        raise ValueError(f"two_buildings needs n_first, n_second >= 1, got {n_first}, "
                         f"{n_second}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"two_buildings needs a finite noise >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    parts = []
    for walls, path, n in ((_BUILDING_A, _PATH_A, n_first), (_BUILDING_B, _PATH_B, n_second)):
        X = _walls(walls, n, noise, rng)
        parts.append(X[_path_order(X, path)])
    return np.vstack(parts), n_first
