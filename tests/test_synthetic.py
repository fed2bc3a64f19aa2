"""The sensor-ordered stream generators of streamgmm.synthetic: shapes, order, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.synthetic import lidar_scene, rooms_stream, two_buildings


def _room_slices(n: int) -> list[slice]:
    counts = [n // 3 + (i < n % 3) for i in range(3)]
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@pytest.mark.parametrize("n", [3, 1000, 3001, 3002])
def test_rooms_stream_shape_and_split(n: int) -> None:
    X = rooms_stream(n, seed=0)
    assert X.shape == (n, 3) and X.dtype == np.float64
    assert np.isfinite(X).all()
    assert sum(s.stop - s.start for s in _room_slices(n)) == n


def test_rooms_stream_rooms_come_one_after_another() -> None:
    X = rooms_stream(9000, seed=3)
    rooms = [X[s] for s in _room_slices(len(X))]
    centres = [r[:, :2].mean(axis=0) for r in rooms]
    # The rooms lie side by side along x and do not overlap there.
    for a, b in zip(rooms, rooms[1:]):
        assert a[:, 0].max() < b[:, 0].min()
    assert centres[0][0] < centres[1][0] < centres[2][0]
    # Different shapes: footprint extents and ceiling heights differ between rooms.
    extents = [np.ptp(r, axis=0) for r in rooms]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(extents[i] - extents[j]).max() > 2.0
    # Each room is one sweep: azimuth around its sensor position (documented) never
    # decreases.
    for room, sensor in zip(rooms, [(0.0, 0.0), (32.0, 6.0), (54.0, -4.0)]):
        az = np.arctan2(room[:, 1] - sensor[1], room[:, 0] - sensor[0])
        assert np.all(np.diff(az) >= 0.0)


def test_rooms_stream_order_is_not_iid() -> None:
    X = rooms_stream(6000, seed=0)
    # The first third of the stream holds room 1 only: all its x are left of room 2's.
    assert X[:2000, 0].max() < X[2000:4000, 0].min()


def test_rooms_stream_deterministic() -> None:
    np.testing.assert_array_equal(rooms_stream(2000, seed=7), rooms_stream(2000, seed=7))
    assert not np.array_equal(rooms_stream(2000, seed=7), rooms_stream(2000, seed=8))


def test_rooms_stream_first_room_is_a_scaled_lidar_scene() -> None:
    X = rooms_stream(3000, seed=0)
    first = X[:1000]
    # The hall: lidar_scene's 16 m room widened to 24 m in x, same height.
    assert np.ptp(first[:, 0]) == pytest.approx(24.0, abs=0.5)
    assert np.ptp(first[:, 1]) == pytest.approx(16.0, abs=0.5)
    assert first[:, 2].max() == pytest.approx(lidar_scene(1000)[:, 2].max(), abs=0.2)


def test_rooms_stream_rejects_too_few_points() -> None:
    with pytest.raises(ValueError, match="n_points >= 3"):
        rooms_stream(2)


def test_two_buildings_default_sizes() -> None:
    X, start = two_buildings(seed=0)
    assert X.shape == (31_761 + 20_870, 2) and start == 31_761
    assert X.dtype == np.float64 and np.isfinite(X).all()


def test_two_buildings_different_floor_plans() -> None:
    X, start = two_buildings(seed=1, n_first=4000, n_second=3000)
    a, b = X[:start], X[start:]
    assert a.shape == (4000, 2) and b.shape == (3000, 2)
    # Office floor 40 m x 20 m; L-shaped lab 30 m x 30 m: different footprints.
    assert np.ptp(a, axis=0) == pytest.approx([40.0, 20.0], abs=0.5)
    assert np.ptp(b, axis=0) == pytest.approx([30.0, 30.0], abs=0.5)
    # The lab's L: no wall points in the empty corner x > 13, y > 13.
    assert not np.any((b[:, 0] > 13) & (b[:, 1] > 13))


def test_two_buildings_points_lie_on_walls() -> None:
    X, start = two_buildings(seed=2, n_first=2000, n_second=2000, noise=0.0)
    a = X[:start]
    # Without noise every point of the office floor is on a wall: x or y on the grid of
    # its wall lines (outer walls, office walls, corridor walls).
    on_x = np.isin(np.round(a[:, 0], 9), [0, 10, 20, 30, 40])
    on_y = np.isin(np.round(a[:, 1], 9), [0, 8, 12, 20])
    assert np.all(on_x | on_y)


def test_two_buildings_recorded_order_follows_the_path() -> None:
    X, start = two_buildings(seed=0, n_first=6000, n_second=4000)
    a = X[:start]
    # The robot starts at the corridor's west end and drives east: early points are near
    # x = 0, points a quarter into the stream further east, and neighbours in the stream
    # are close in space (a random order would put them ~20 m apart).
    assert np.median(a[:300, 0]) < 5.0
    assert np.median(a[1200:1500, 0]) > np.median(a[:300, 0]) + 5.0
    steps = np.hypot(*np.diff(a, axis=0).T)
    shuffled = np.random.default_rng(0).permutation(a)
    assert np.median(steps) < 0.2 * np.median(np.hypot(*np.diff(shuffled, axis=0).T))


def test_two_buildings_deterministic() -> None:
    a, sa = two_buildings(seed=5, n_first=1000, n_second=800)
    b, sb = two_buildings(seed=5, n_first=1000, n_second=800)
    np.testing.assert_array_equal(a, b)
    assert sa == sb == 1000
    c, _ = two_buildings(seed=6, n_first=1000, n_second=800)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_first": 0}, "n_first, n_second >= 1"),
    ({"n_second": -1}, "n_first, n_second >= 1"),
    ({"noise": -0.1}, "noise >= 0"),
    ({"noise": float("nan")}, "noise >= 0"),
])
def test_two_buildings_rejects_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        two_buildings(**kwargs)
