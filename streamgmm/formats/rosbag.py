"""``sensor_msgs/PointCloud2`` messages from ROS bags, without a ROS installation.

- ``.mcap`` files: ``mcap`` + ``mcap-ros2-support``. They decode with the message definitions
  stored in the file, so any ROS 2 distribution's bag reads without a type store, and a bare
  ``.mcap`` (as shared or made by Foxglove) needs no ``metadata.yaml``.
- ``.db3`` (rosbag2 SQLite), rosbag2 directories and ROS 1 ``.bag``: ``rosbags``, a pure-Python
  reader of both bag generations (it is the only maintained one that needs no ROS).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from streamgmm.formats._errors import FormatError, brief, require
from streamgmm.formats.pointcloud2 import pointcloud2_to_array

__all__ = ["CLOUD_TYPES", "Cloud", "iter_mcap", "iter_rosbags"]

# Schema names of PointCloud2 in ROS 2 (and in ROS 1 as rosbags normalises it).
CLOUD_TYPES = ("sensor_msgs/msg/PointCloud2", "sensor_msgs/PointCloud2")


class Cloud(NamedTuple):
    """One point cloud of a file or a bag message.

    Attributes
    ----------
    points : numpy.ndarray of shape (n, d)
        The selected fields, rows with NaN/Inf removed.
    stamp : float or None
        Sensor time (header stamp) in seconds; None for files without one.
    frame : str
        Coordinate frame (``header.frame_id``); ``""`` when unknown.
    dropped : int
        Rows removed for NaN/Inf.
    time : float or None
        When the bag recorded the message (seconds), for pacing; None for plain files.
    """

    points: np.ndarray
    stamp: float | None
    frame: str
    dropped: int
    time: float | None


def _header(msg: Any) -> tuple[float | None, str]:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None, ""
    sec = getattr(stamp, "sec", getattr(stamp, "secs", 0))
    nsec = getattr(stamp, "nanosec", getattr(stamp, "nsec", getattr(stamp, "nsecs", 0)))
    value = float(sec) + float(nsec) * 1e-9
    return (value if value > 0 else None), str(getattr(header, "frame_id", "") or "")


def _cloud(path: Path, msg: Any, fields: Sequence[str], log_time_ns: int) -> Cloud:
    try:
        points = pointcloud2_to_array(msg, fields, remove_nans=True)
    except ValueError as exc:
        raise FormatError(f"{path}: bad PointCloud2 message: {exc}") from None
    stamp, frame = _header(msg)
    total = int(msg.height) * int(msg.width)
    recorded = log_time_ns * 1e-9
    # A driver that leaves the header stamp at 0 still gets a sensible time: the recording's.
    return Cloud(points, recorded if stamp is None else stamp, frame, total - len(points),
                 recorded)


def _pick_topic(path: Path, topics: dict[str, str], topic: str | None) -> str:
    clouds = sorted(t for t, kind in topics.items() if kind in CLOUD_TYPES)
    if topic is None:
        if len(clouds) == 1:
            return clouds[0]
        if not clouds:
            raise FormatError(f"{path}: no sensor_msgs/PointCloud2 topic in the bag")
        raise FormatError(f"{path}: several PointCloud2 topics; choose one with --ros-topic: "
                          f"{', '.join(clouds)}")
    if topic not in topics:
        raise FormatError(f"{path}: no topic {topic!r} (PointCloud2 topics: "
                          f"{', '.join(clouds) or 'none'})")
    if topics[topic] not in CLOUD_TYPES:
        raise FormatError(f"{path}: topic {topic!r} carries {topics[topic]}, not "
                          "sensor_msgs/PointCloud2")
    return topic


def iter_mcap(path: Path, topic: str | None, fields: Sequence[str]) -> Iterator[Cloud]:
    """Clouds of one PointCloud2 topic of an MCAP file, in log-time order.

    Raises
    ------
    FormatError
        If the file is not MCAP, the topic is missing or not PointCloud2, or a message does
        not decode.
    MissingExtraError
        If ``mcap``/``mcap-ros2-support`` are not installed.
    """
    require("mcap.reader", "reading .mcap bags", "mcap", "ros")
    decoder = require("mcap_ros2.decoder", "reading .mcap bags", "mcap-ros2-support", "ros")
    from mcap.reader import make_reader

    with path.open("rb") as fh:
        try:
            reader = make_reader(fh, decoder_factories=[decoder.DecoderFactory()])
            summary = reader.get_summary()
            if summary is None:
                raise FormatError(f"{path}: the MCAP file has no summary (truncated?)")
            topics = {
                ch.topic: (summary.schemas[ch.schema_id].name
                           if ch.schema_id in summary.schemas else "")
                for ch in summary.channels.values()
            }
            chosen = _pick_topic(path, topics, topic)
            for _schema, _channel, message, msg in reader.iter_decoded_messages(
                topics=[chosen], log_time_order=True
            ):
                yield _cloud(path, msg, fields, message.log_time)
        except (FormatError, OSError):
            raise
        # mcap raises its own errors, struct/EOF errors or decoder errors on a damaged file.
        except Exception as exc:
            raise FormatError(f"{path}: not a readable MCAP bag ({brief(exc)})") from None


def iter_rosbags(path: Path, topic: str | None, fields: Sequence[str]) -> Iterator[Cloud]:
    """Clouds of one PointCloud2 topic of a ROS 1 ``.bag`` or a rosbag2 (``.db3``/directory).

    A ``.db3`` file is read through its directory, which must hold the bag's
    ``metadata.yaml``.

    Raises
    ------
    FormatError
        If the bag cannot be read, the topic is missing or not PointCloud2, or a message does
        not decode.
    MissingExtraError
        If ``rosbags`` is not installed.
    """
    require("rosbags.highlevel", "reading .db3/.bag bags", "rosbags", "ros")
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    bag = path
    if path.suffix.lower() == ".db3":
        bag = path.parent
        if not (bag / "metadata.yaml").is_file():
            raise FormatError(f"{path}: a .db3 bag is read with its metadata.yaml, which is "
                              f"not in {bag}")
    try:
        # The type store only serves rosbag2 files that lack embedded message definitions.
        with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            chosen = _pick_topic(path, topics, topic)
            connections = [c for c in reader.connections if c.topic == chosen]
            for connection, timestamp, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                yield _cloud(path, msg, fields, timestamp)
    except (FormatError, OSError):
        raise
    except Exception as exc:  # rosbags' reader errors, or struct errors on a damaged bag
        raise FormatError(f"{path}: not a readable ROS bag ({brief(exc)})") from None
