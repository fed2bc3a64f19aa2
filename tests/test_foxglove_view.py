"""Mixture -> Foxglove ellipsoids (pure numpy), the SceneUpdate built from it, and the MCAP."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from streamgmm import codec
from streamgmm.client import Mixture
from streamgmm.foxglove_view import (
    DEFAULT_FRAME,
    FLAT_THICKNESS,
    covariance_from_pose,
    full_covariances,
    mixture_ellipsoids,
    parse_address,
    stamp_ns,
)


def random_mixture(k: int, d: int, covariance_type: str = "full", seed: int = 0,
                   **extra) -> Mixture:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(k, d, d))
    full = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(d)
    cov = {"full": full, "diag": np.abs(rng.normal(size=(k, d))) + 0.1,
           "spherical": np.abs(rng.normal(size=k)) + 0.1, "tied": full[0]}[covariance_type]
    w = rng.random(k) + 0.1
    return Mixture(model="lidar", seq=7, stamp=1.7e9, n_seen=1234, kind="online",
                   covariance_type=covariance_type, weights=w / w.sum(),
                   means=rng.normal(size=(k, d)) * 5, covariances=cov,
                   avg_log_likelihood=-3.25, last_stamp=1.6e9 + 0.5, extra=dict(extra))


def rebuild(quats: np.ndarray, sizes: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Covariances from poses and diameters, by scipy (independent of the module's inverse)."""
    rot = Rotation.from_quat(quats).as_matrix()  # scipy: (x, y, z, w)
    half = sizes / (2 * sigma)
    return rot @ (half[:, :, None] ** 2 * np.eye(3)) @ rot.transpose(0, 2, 1)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_3d_ellipsoids_give_back_the_covariances(covariance_type: str) -> None:
    m = random_mixture(16, 3, covariance_type)
    e = mixture_ellipsoids(m.weights, m.means, m.covariances, m.covariance_type)
    want = full_covariances(covariance_type, m.covariances, 16, 3)
    np.testing.assert_allclose(e.centers, m.means)
    np.testing.assert_allclose(np.linalg.norm(e.orientations, axis=1), 1.0)
    for sigma in (1.0, 2.0):
        np.testing.assert_allclose(rebuild(e.orientations, 2 * sigma * e.half_axes, sigma),
                                   want, rtol=1e-9, atol=1e-12)
    for k in range(16):  # the module's own inverse agrees
        np.testing.assert_allclose(covariance_from_pose(e.orientations[k], 4 * e.half_axes[k],
                                                        sigma=2.0), want[k], atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied"])
def test_2d_models_are_flat_ellipses_at_z0(covariance_type: str) -> None:
    m = random_mixture(9, 2, covariance_type, seed=3)
    e = mixture_ellipsoids(m.weights, m.means, m.covariances, m.covariance_type)
    want = full_covariances(covariance_type, m.covariances, 9, 2)
    assert np.all(e.centers[:, 2] == 0)
    np.testing.assert_allclose(e.centers[:, :2], m.means)
    # A rotation about z only: the flat axis stays vertical.
    np.testing.assert_allclose(e.orientations[:, :2], 0.0, atol=1e-15)
    np.testing.assert_allclose(e.half_axes[:, 2], FLAT_THICKNESS * e.half_axes[:, 0])
    cov3 = rebuild(e.orientations, 2 * e.half_axes)
    np.testing.assert_allclose(cov3[:, :2, :2], want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov3[:, :2, 2], 0.0, atol=1e-12)


def test_degenerate_and_axis_aligned_covariances() -> None:
    cov = np.array([np.diag([1.0, 4.0, 9.0]), np.diag([9.0, 4.0, 1.0]), np.zeros((3, 3)),
                    np.diag([2.0, 2.0, 2.0])])
    e = mixture_ellipsoids(np.full(4, 0.25), np.zeros((4, 3)), cov, "full")
    assert np.all(np.isfinite(e.orientations)) and np.all(np.isfinite(e.half_axes))
    np.testing.assert_allclose(rebuild(e.orientations, 2 * e.half_axes), cov, atol=1e-12)


@pytest.mark.parametrize("d", [1, 4, 6])
def test_other_dimensions_are_refused(d: int) -> None:
    m = random_mixture(3, d)
    with pytest.raises(ValueError, match=f"2 or 3 dimensions; this one has {d}"):
        mixture_ellipsoids(m.weights, m.means, m.covariances, "full")


def test_alpha_grows_with_the_weight_and_hues_follow_the_component() -> None:
    w = np.array([0.0, 0.1, 0.2, 0.7])
    e = mixture_ellipsoids(w, np.zeros((4, 3)), np.ones(4), "spherical")
    assert np.all(np.diff(e.colors[:, 3]) > 0)
    assert e.colors[0, 3] == pytest.approx(0.15) and e.colors[-1, 3] == pytest.approx(0.75)
    assert np.all((e.colors >= 0) & (e.colors <= 1))
    again = mixture_ellipsoids(w[::-1], np.zeros((4, 3)), np.ones(4), "spherical")
    np.testing.assert_array_equal(e.colors[:, :3], again.colors[:, :3])


@pytest.mark.parametrize("text, expected", [
    ("8765", ("127.0.0.1", 8765)), ("0", ("127.0.0.1", 0)),
    ("localhost:9000", ("localhost", 9000)), ("0.0.0.0:8765", ("0.0.0.0", 8765)),
    ("[::1]:8765", ("::1", 8765)),
])
def test_parse_address(text: str, expected: tuple) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:", ":80", "x:99999", "x:-1", "abc"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_stamp_is_the_sensor_stamp_else_the_update_time() -> None:
    m = random_mixture(2, 3)
    assert stamp_ns(m) == 1_600_000_000_500_000_000
    later = Mixture(**{**m.__dict__, "last_stamp": float("nan")})
    assert stamp_ns(later) == 1_700_000_000_000_000_000


def test_mixture_sample_and_frame_extensions() -> None:
    pts = np.arange(12, dtype=np.float32).reshape(4, 3)
    m = random_mixture(2, 3, sample=codec.encode_array(pts), frame="lidar_front")
    np.testing.assert_array_equal(m.sample, pts)
    assert m.frame == "lidar_front"
    assert random_mixture(2, 3).sample is None and random_mixture(2, 3).frame == ""
    # A malformed extension is ignored, never fatal.
    assert random_mixture(2, 3, sample={"dtype": "<i4"}).sample is None
    assert random_mixture(2, 3, sample=codec.encode_array(np.ones((4, 2)))).sample is None
    assert random_mixture(2, 3, frame=5).frame == ""


# ----------------------------------------------------------------- with foxglove-sdk


@pytest.fixture
def fg():
    return pytest.importorskip("foxglove", reason="foxglove-sdk not installed: pip install "
                               "'streamgmm[foxglove]'")


def test_scene_update_and_mcap_hold_the_mixture(fg, tmp_path: Path) -> None:
    from streamgmm.foxglove_view import FoxgloveView
    from tests.helpers.foxglove_ws import read_mcap

    path = tmp_path / "model.mcap"
    view = FoxgloveView(save=str(path))
    assert view.port is None
    pts = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    m = random_mixture(5, 3, n_change_points=2, frame="lidar_front",
                       sample=codec.encode_array(pts))
    view.log_mixture(m)
    view.log_mixture(random_mixture(5, 2, seed=4))  # 2-D: no frame -> base_link
    view.close()
    msgs = read_mcap(path)
    assert [(t, s) for t, s, _, _ in msgs] == [
        ("/streamgmm/lidar/mixture", "foxglove.SceneUpdate"),
        ("/streamgmm/lidar/points", "foxglove.PointCloud"),
        ("/streamgmm/lidar/mixture", "foxglove.SceneUpdate"),
    ]
    assert msgs[0][2] == stamp_ns(m)
    update = msgs[0][3]
    assert [e.id for e in update.entities] == ["lidar/sigma1", "lidar/sigma2"]
    want = full_covariances("full", m.covariances, 5, 3)
    for entity, sigma in zip(update.entities, (1.0, 2.0)):
        assert entity.frame_id == "lidar_front"
        meta = {kv.key: kv.value for kv in entity.metadata}
        assert meta["seq"] == "7" and meta["n_seen"] == "1234"
        assert meta["n_change_points"] == "2" and meta["sigma"] == f"{sigma:g}"
        quats = np.array([[s.pose.orientation.x, s.pose.orientation.y, s.pose.orientation.z,
                           s.pose.orientation.w] for s in entity.spheres])
        sizes = np.array([[s.size.x, s.size.y, s.size.z] for s in entity.spheres])
        centers = np.array([[s.pose.position.x, s.pose.position.y, s.pose.position.z]
                            for s in entity.spheres])
        np.testing.assert_allclose(rebuild(quats, sizes, sigma), want, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(centers, m.means)
    assert "seq=7" in update.entities[0].texts[0].text
    cloud = msgs[1][3]
    assert cloud.frame_id == "lidar_front" and cloud.point_stride == 12
    np.testing.assert_array_equal(np.frombuffer(cloud.data, "<f4").reshape(-1, 3), pts)
    flat = msgs[2][3].entities[0]
    assert flat.frame_id == DEFAULT_FRAME
    assert all(s.pose.position.z == 0 for s in flat.spheres)


def test_view_refuses_an_existing_file_and_a_taken_port(fg, tmp_path: Path) -> None:
    from streamgmm.foxglove_view import FoxgloveView

    bag = tmp_path / "robot.mcap"
    bag.write_bytes(b"the robot's own data")
    with pytest.raises(FileExistsError):
        FoxgloveView(save=str(bag))
    assert bag.read_bytes() == b"the robot's own data"
    first = FoxgloveView(serve=("127.0.0.1", 0))
    try:
        assert first.port and first.port > 0
        with pytest.raises(RuntimeError):
            FoxgloveView(serve=("127.0.0.1", first.port))
    finally:
        first.close()


def test_watch_without_the_extra_is_one_line_exit_2(monkeypatch, capsys) -> None:
    from streamgmm.cli import main

    monkeypatch.setitem(sys.modules, "foxglove", None)  # import foxglove -> ImportError
    assert main(["watch", "--model", "lidar", "--foxglove", "--timeout", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("streamgmm watch: error: --foxglove needs foxglove-sdk: "
                   "pip install 'streamgmm[foxglove]'")


def test_watch_bad_address_and_existing_file_exit_2(fg, tmp_path: Path, capsys) -> None:
    from streamgmm.cli import main

    assert main(["watch", "--model", "lidar", "--foxglove", "host:port"]) == 2
    assert "--foxglove" in capsys.readouterr().err
    bag = tmp_path / "robot.mcap"
    bag.write_bytes(b"x")
    assert main(["watch", "--model", "lidar", "--foxglove-save", str(bag)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
