"""What is not a measurement, in every format: no-return rows (exactly zero in x, y, z),
NaN/Inf rows and rows out of range are dropped and counted exactly as numpy counts them on the
data written by each format's own library; IMU and LaserScan messages; CSV/Parquet headers;
damaged bags read up to the damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.formats import DamagedFileError, FormatError, RowFilter, iter_clouds, read_points
from tests.formats.bags import (
    SCAN,
    imu_samples,
    laser_scans,
    write_mcap,
    write_mcap_imu,
    write_mcap_ros1,
    write_rosbags,
    write_rosbags_messages,
)

RULE = RowFilter(min_range=1.0, max_range=50.0)


def scan(n: int = 400, seed: int = 0, nan: bool = True) -> np.ndarray:
    """x, y, z, intensity of a LiDAR-like scan: 7% no-return zeros, NaN rows, near and far."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3))
    xyz *= rng.uniform(2, 40, size=(n, 1)) / np.linalg.norm(xyz, axis=1, keepdims=True)
    xyz[rng.choice(n, 12, replace=False)] *= 0.02  # nearer than 1 m
    xyz[rng.choice(n, 9, replace=False)] *= 3.0  # some beyond 50 m
    xyz[rng.choice(n, 28, replace=False)] = 0.0  # no return: 7 %
    if nan:
        xyz[rng.choice(n, 5, replace=False), 1] = np.nan
    xyz = np.round(xyz, 3)  # exact in LAS's 0.001 scale
    return np.c_[xyz, np.arange(n)].astype(np.float32)


def expected(data: np.ndarray, rule: RowFilter = RULE) -> dict:
    """The counts, by numpy alone: NaN/Inf first, then zero rows, then the range rule."""
    xyz = data[:, :3].astype(np.float64)
    finite = np.isfinite(data).all(axis=1)
    zero = finite & (xyz == 0).all(axis=1)
    r = np.sqrt((np.where(finite[:, None], xyz, 0) ** 2).sum(axis=1))
    far = finite & ~zero & ((r < (rule.min_range or 0)) | (r > (rule.max_range or np.inf)))
    keep = finite & ~zero & ~far
    return {"nonfinite": int((~finite).sum()), "zeros": int(zero.sum()),
            "out_of_range": int(far.sum()), "kept": data[keep]}


def counts(clouds) -> dict:
    clouds = list(clouds)
    return {"nonfinite": sum(c.dropped for c in clouds), "zeros": sum(c.zeros for c in clouds),
            "out_of_range": sum(c.out_of_range for c in clouds),
            "kept": np.vstack([c.points for c in clouds])}


def check(path: Path, data: np.ndarray, columns=slice(0, 3), **kw) -> None:
    want = expected(data)
    got = counts(iter_clouds(path, rule=RULE, **kw))
    assert {k: got[k] for k in ("nonfinite", "zeros", "out_of_range")} == {
        k: want[k] for k in ("nonfinite", "zeros", "out_of_range")}, path.name
    np.testing.assert_allclose(got["kept"], want["kept"][:, columns], rtol=1e-6, atol=1e-9)


def test_the_scan_has_all_kinds() -> None:
    want = expected(scan())
    assert want["zeros"] == 28 and want["nonfinite"] == 5 and want["out_of_range"] > 15


def test_point_files(tmp_path: Path) -> None:
    import laspy
    from plyfile import PlyData, PlyElement
    from pypcd4 import Encoding, PointCloud

    data = scan()
    PointCloud.from_xyzi_points(data).save(tmp_path / "s.pcd", encoding=Encoding.BINARY)
    check(tmp_path / "s.pcd", data)
    vertex = np.zeros(len(data), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = data[:, :3].T
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "s.ply"))
    check(tmp_path / "s.ply", data)
    data.tofile(tmp_path / "000000.bin")
    check(tmp_path / "000000.bin", data)
    check(tmp_path / "000000.bin", data, columns=[3, 0], fields=["intensity", "x"])
    clean = scan(nan=False)  # LAS stores scaled integers: no NaN
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = np.array([0.001] * 3), np.zeros(3)
    las = laspy.LasData(header)
    las.x, las.y, las.z = clean[:, :3].astype(np.float64).T
    las.write(str(tmp_path / "s.las"))
    check(tmp_path / "s.las", clean)


def test_tables(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = scan()
    np.save(tmp_path / "s.npy", data[:, :3])  # no names: the first three columns
    check(tmp_path / "s.npy", data)
    np.savetxt(tmp_path / "s.csv", data, delimiter=",", header="x,y,z,intensity", comments="")
    check(tmp_path / "s.csv", data, columns=slice(0, 4))  # every column, by default
    check(tmp_path / "s.csv", data, columns=[3, 2], fields=["intensity", "z"])
    pq.write_table(pa.table({n: data[:, j] for j, n in enumerate("xyz")}), tmp_path / "s.parquet")
    check(tmp_path / "s.parquet", data)


def test_bags_of_every_kind(tmp_path: Path) -> None:
    data = scan(seed=3)
    clouds = [data[i : i + 100, :3] for i in range(0, 400, 100)]
    stamps = [10.0, 10.1, 10.2, 10.3]
    write_mcap(tmp_path / "ros2.mcap", clouds, stamps=stamps)
    write_mcap_ros1(tmp_path / "ros1.mcap", clouds, stamps=stamps)
    db3 = write_rosbags(tmp_path / "bag2", clouds, stamps=stamps)
    bag = write_rosbags(tmp_path / "old.bag", clouds, stamps=stamps, ros1=True)
    for path in (tmp_path / "ros2.mcap", tmp_path / "ros1.mcap", db3, tmp_path / "bag2", bag):
        check(path, data)


def test_keep_zeros_and_no_limits(tmp_path: Path) -> None:
    data = scan()
    data.tofile(tmp_path / "s.bin")
    (cloud,) = iter_clouds(tmp_path / "s.bin", rule=RowFilter(keep_zeros=True))
    assert (cloud.zeros, cloud.out_of_range, cloud.dropped) == (0, 0, 5)
    assert len(cloud.points) == 395
    assert len(read_points(tmp_path / "s.bin")) == 395 - 28


def test_range_needs_a_position(tmp_path: Path) -> None:
    write_mcap_imu(tmp_path / "imu.mcap", imu_samples(5), stamps=[1.0 + i / 100 for i in range(5)])
    with pytest.raises(FormatError, match="range limit needs x, y"):
        list(iter_clouds(tmp_path / "imu.mcap", topic="/imu/data", rule=RULE))
    with pytest.raises(ValueError, match="min_range 5.0 is above max_range 2.0"):
        RowFilter(min_range=5.0, max_range=2.0)


# --------------------------------------------------------------------------- ROS 1 in MCAP


def test_ros1_mcap_same_points_stamps_and_frames_as_ros2(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clouds = [rng.normal(size=(30, 3)).astype(np.float32) for _ in range(3)]
    stamps = [5.25, 5.35, 5.45]
    write_mcap_ros1(tmp_path / "ros1.mcap", clouds, stamps=stamps, frame="os_sensor")
    write_mcap(tmp_path / "ros2.mcap", clouds, stamps=stamps, frame="os_sensor")
    one, two = (list(iter_clouds(tmp_path / n)) for n in ("ros1.mcap", "ros2.mcap"))
    assert len(one) == len(two) == 3
    for a, b, points, stamp in zip(one, two, clouds, stamps):
        np.testing.assert_array_equal(a.points, points)
        np.testing.assert_array_equal(a.points, b.points)
        assert a.stamp == pytest.approx(stamp, abs=1e-6) and a.frame == b.frame == "os_sensor"


# --------------------------------------------------------------------------- IMU, LaserScan


def test_imu_in_mcap_db3_and_ros1_bag(tmp_path: Path) -> None:
    samples = imu_samples(12)
    stamps = [2.0 + i * 0.005 for i in range(12)]
    write_mcap_imu(tmp_path / "imu.mcap", samples, stamps=stamps)
    db3 = write_rosbags_messages(tmp_path / "imu2", "imu", list(samples), stamps=stamps,
                                 topic="/imu/data")
    bag = write_rosbags_messages(tmp_path / "imu.bag", "imu", list(samples), stamps=stamps,
                                 topic="/imu/data", ros1=True)
    for path in (tmp_path / "imu.mcap", db3, bag):
        got = list(iter_clouds(path, topic="/imu/data"))
        assert len(got) == 12 and all(c.one_row for c in got)
        np.testing.assert_allclose(np.vstack([c.points for c in got]), samples[:, :6])
        assert got[3].stamp == pytest.approx(stamps[3], abs=1e-6)
        gyro = read_points(path, topic="/imu/data", fields=["angular_velocity"])
        np.testing.assert_allclose(gyro, samples[:, 3:6])
        picked = read_points(path, topic="/imu/data",
                             fields=["angular_velocity.z", "orientation.w"])
        np.testing.assert_allclose(picked, samples[:, [5, 9]])
    # the only readable topic of a bag is found without --ros-topic
    np.testing.assert_allclose(read_points(db3), samples[:, :6])


def test_imu_topic_is_chosen_among_a_cloud(tmp_path: Path) -> None:
    write_mcap_imu(tmp_path / "imu.mcap", imu_samples(4), stamps=[1.0, 1.1, 1.2, 1.3])
    # a PointCloud2 topic is the default; the Imu topic is named
    assert read_points(tmp_path / "imu.mcap").shape == (4, 3)
    assert read_points(tmp_path / "imu.mcap", topic="/imu/data").shape == (4, 6)
    with pytest.raises(FormatError, match="no field 'magnetic_field'"):
        read_points(tmp_path / "imu.mcap", topic="/imu/data", fields=["magnetic_field"])


def _scan_expected(ranges: np.ndarray,
                   rule: RowFilter | None = None) -> tuple[np.ndarray, int, int]:
    angles = SCAN["angle_min"] + SCAN["angle_increment"] * np.arange(len(ranges))
    r = ranges.astype(np.float32).astype(np.float64)
    finite = np.isfinite(r)
    inside = finite & (r >= SCAN["range_min"]) & (r <= SCAN["range_max"])
    if rule is not None and rule.max_range is not None:
        inside &= r <= rule.max_range
    xy = np.c_[r * np.cos(angles), r * np.sin(angles)][inside]
    return xy, int((~finite).sum()), int((finite & ~inside).sum())


@pytest.mark.parametrize("ros1", [False, True])
def test_laser_scans(tmp_path: Path, ros1: bool) -> None:
    scans = laser_scans(3)
    path = write_rosbags_messages(tmp_path / ("scan.bag" if ros1 else "scan2"), "scan", scans,
                                  stamps=[3.0, 3.1, 3.2], topic="/scan", ros1=ros1)
    got = list(iter_clouds(path))
    assert len(got) == 3
    for cloud, ranges in zip(got, scans):
        xy, nonfinite, outside = _scan_expected(ranges)
        assert (cloud.dropped, cloud.out_of_range, cloud.zeros) == (nonfinite, outside, 0)
        assert nonfinite == 5 and outside == 6
        np.testing.assert_allclose(cloud.points, xy, rtol=1e-5, atol=1e-5)  # f4 angles
    limited = list(iter_clouds(path, rule=RowFilter(max_range=4.0)))
    for cloud, ranges in zip(limited, scans):
        xy, _, outside = _scan_expected(ranges, RowFilter(max_range=4.0))
        assert cloud.out_of_range == outside
        np.testing.assert_allclose(cloud.points, xy, rtol=1e-5, atol=1e-5)
    with_range = read_points(path, fields=["range", "intensity"])
    assert with_range.shape[1] == 2 and np.all(with_range[:, 0] <= SCAN["range_max"])


# --------------------------------------------------------------------------- CSV headers


def test_csv_header_columns_by_name_and_time_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = np.c_[np.arange(20) * 0.01, rng.normal(size=(20, 6))]
    header = ("Time (s),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s),"
              "Accelerometer X (g),Accelerometer Y (g),Accelerometer Z (g)")
    np.savetxt(tmp_path / "xio.csv", rows, delimiter=",", header=header, comments="")
    (cloud,) = iter_clouds(tmp_path / "xio.csv")
    assert cloud.skipped == ("Time (s)",) and len(cloud.fields) == 6
    np.testing.assert_allclose(cloud.points, rows[:, 1:])  # the header is never a row
    gyro = read_points(tmp_path / "xio.csv", fields=["Gyroscope X (deg/s)", "Time (s)"])
    np.testing.assert_allclose(gyro, rows[:, [1, 0]])
    with pytest.raises(FormatError, match="no field 'gx'"):
        read_points(tmp_path / "xio.csv", fields=["gx"])
    np.savetxt(tmp_path / "plain.csv", rows[:, 1:4], delimiter=",")
    with pytest.raises(FormatError, match="has no field names"):
        read_points(tmp_path / "plain.csv", fields=["x"])


# --------------------------------------------------------------------------- damaged bags


def _clouds(n: int = 5, size: int = 2000) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.normal(size=(size, 3)).astype(np.float32) + 5 for _ in range(n)]


@pytest.mark.parametrize("writer", [write_mcap, write_mcap_ros1])
def test_cut_mcap_yields_every_complete_message(tmp_path: Path, writer) -> None:
    from mcap.reader import make_reader

    clouds = _clouds()
    # a chunk per message, as a recorder writes clouds of a LiDAR (each ~1 MB)
    writer(tmp_path / "run.mcap", clouds, stamps=[1.0, 1.1, 1.2, 1.3, 1.4], chunk_size=1024)
    data = (tmp_path / "run.mcap").read_bytes()
    for fraction in (0.99, 0.7, 0.3):
        cut = tmp_path / f"cut{fraction}.mcap"
        cut.write_bytes(data[: int(len(data) * fraction)])
        # what mcap's own stream reader recovers, independently
        from mcap.records import Channel, Message
        from mcap.stream_reader import StreamReader

        recovered, clouds_channel = 0, set()
        try:
            for record in StreamReader(cut.open("rb"), record_size_limit=len(data)).records:
                if isinstance(record, Channel) and record.topic != "/chatter":
                    clouds_channel.add(record.id)
                recovered += isinstance(record, Message) and record.channel_id in clouds_channel
        except Exception:
            pass
        got: list = []
        with pytest.raises(DamagedFileError) as info:
            for cloud in iter_clouds(cut):
                got.append(cloud)
        assert len(got) == info.value.messages_read == recovered
        assert f"of {int(len(data) * fraction)}" in info.value.where
        if fraction == 0.99:
            assert recovered == 5  # only the summary at the end is gone
        elif fraction == 0.3:
            assert 0 < recovered < 5
        for cloud, points in zip(got, clouds):
            np.testing.assert_array_equal(cloud.points, points)
        if recovered:
            assert len(read_points(cut, allow_damaged=True)) == 2000 * recovered
    assert 1 <= sum(1 for _ in make_reader((tmp_path / "run.mcap").open("rb")).iter_messages())


def test_cut_db3_and_ros1_bag(tmp_path: Path) -> None:
    clouds = _clouds()
    stamps = [1.0, 1.1, 1.2, 1.3, 1.4]
    db3 = write_rosbags(tmp_path / "bag2", clouds, stamps=stamps)
    data = db3.read_bytes()
    db3.write_bytes(data[: int(len(data) * 0.99)])  # SQLite still opens it: the rows before
    got: list = []
    with pytest.raises(DamagedFileError) as info:
        for cloud in iter_clouds(db3):
            got.append(cloud)
    assert 1 <= info.value.messages_read == len(got) < 5
    for cloud, points in zip(got, clouds):
        np.testing.assert_array_equal(cloud.points, points)
    db3.write_bytes(data[: int(len(data) * 0.5)])  # read with the pages before the cut
    with pytest.raises(DamagedFileError) as info:
        list(iter_clouds(db3))
    assert info.value.messages_read <= len(got) and "malformed" in str(info.value)
    db3.write_bytes(b"\0" * 100 + data[100:])  # its header gone: SQLite cannot open it
    with pytest.raises(FormatError, match="SQLite cannot open what is left"):
        list(iter_clouds(db3))
    bag = write_rosbags(tmp_path / "old.bag", clouds, stamps=stamps, ros1=True)
    data = bag.read_bytes()
    bag.write_bytes(data[: int(len(data) * 0.99)])
    # a ROS 1 bag keeps its index at the end: rosbags cannot open one cut before it
    with pytest.raises(FormatError, match="rosbag reindex"):
        list(iter_clouds(bag))
