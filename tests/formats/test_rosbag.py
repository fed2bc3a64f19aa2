"""ROS bags written with mcap + mcap-ros2-support and rosbags, read back cloud by cloud."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.formats import FormatError, iter_clouds, read_points
from tests.formats.bags import write_mcap, write_rosbags

STAMPS = [100.25, 100.35, 100.45]


def clouds(seed: int = 0, n: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 3)).astype(np.float32) for _ in STAMPS]


def check(path: Path, sent: list[np.ndarray], frame: str, **kw) -> None:
    got = list(iter_clouds(path, **kw))
    assert len(got) == len(sent)
    for cloud, points, stamp in zip(got, sent, STAMPS):
        np.testing.assert_array_equal(cloud.points, points)
        assert cloud.stamp == pytest.approx(stamp, abs=1e-6)
        assert cloud.frame == frame and cloud.dropped == 0
    times = [c.time for c in got]
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(0.1, abs=1e-6)


def test_mcap_with_a_cloud_and_a_text_channel(tmp_path: Path) -> None:
    sent = clouds()
    write_mcap(tmp_path / "run.mcap", sent, stamps=STAMPS)
    check(tmp_path / "run.mcap", sent, "velodyne")  # the only cloud topic is found alone
    check(tmp_path / "run.mcap", sent, "velodyne", topic="/points")
    picked = list(iter_clouds(tmp_path / "run.mcap", fields=["intensity", "x"]))
    np.testing.assert_array_equal(picked[0].points[:, 0], np.arange(12))
    np.testing.assert_array_equal(picked[0].points[:, 1], sent[0][:, 0])
    np.testing.assert_array_equal(read_points(tmp_path / "run.mcap"), np.vstack(sent))


def test_mcap_organised_cloud_drops_nan_rows(tmp_path: Path) -> None:
    sent = clouds()
    for points in sent:
        points[[1, 5, 6]] = np.nan
    write_mcap(tmp_path / "org.mcap", sent, stamps=STAMPS, height=3)
    got = list(iter_clouds(tmp_path / "org.mcap"))
    assert [c.dropped for c in got] == [3, 3, 3]
    for cloud, points in zip(got, sent):
        np.testing.assert_array_equal(cloud.points, points[np.isfinite(points).all(axis=1)])


def test_rosbag2_sqlite_and_ros1_bag(tmp_path: Path) -> None:
    sent = clouds(1)
    db3 = write_rosbags(tmp_path / "bag2", sent, stamps=STAMPS)
    check(db3, sent, "lidar")
    check(tmp_path / "bag2", sent, "lidar")  # the rosbag2 directory itself
    bag = write_rosbags(tmp_path / "old.bag", sent, stamps=STAMPS, ros1=True)
    check(bag, sent, "lidar", topic="/points")


@pytest.mark.parametrize(
    "topic, fields, says",
    [
        ("/chatter", None, "carries std_msgs/msg/String, not sensor_msgs/PointCloud2"),
        ("/nope", None,
         "no topic '/nope' \\(readable topics: /points \\(sensor_msgs/msg/PointCloud2\\)\\)"),
        (None, ["x", "y", "w"], "no field 'w'"),
    ],
)
def test_bag_topic_and_field_errors(tmp_path: Path, topic, fields, says) -> None:
    write_mcap(tmp_path / "run.mcap", clouds(), stamps=STAMPS)
    with pytest.raises(FormatError, match=says):
        list(iter_clouds(tmp_path / "run.mcap", topic=topic, fields=fields))
    bag = write_rosbags(tmp_path / "old.bag", clouds(), stamps=STAMPS, ros1=True)
    with pytest.raises(FormatError, match=says):
        list(iter_clouds(bag, topic=topic or "/points", fields=fields))


def test_truncated_and_garbage_bags(tmp_path: Path) -> None:
    write_mcap(tmp_path / "run.mcap", clouds(), stamps=STAMPS)
    data = (tmp_path / "run.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap at all" * 10)
    (tmp_path / "junk.bag").write_bytes(b"#ROSBAG V2.0\n" + b"\x01" * 50)
    for name in ("cut.mcap", "junk.mcap", "junk.bag"):
        with pytest.raises(FormatError, match=name):
            list(iter_clouds(tmp_path / name))
    (tmp_path / "lone.db3").write_bytes(b"")  # no metadata.yaml: read as SQLite alone
    with pytest.raises(FormatError, match="lone.db3: not a rosbag2 SQLite bag"):
        list(iter_clouds(tmp_path / "lone.db3"))
