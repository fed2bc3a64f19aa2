"""Bags written by the libraries that own the formats: mcap + mcap-ros2-support, rosbags."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# sensor_msgs/msg/PointCloud2 as ROS 2 stores it in an MCAP schema (its dependencies follow).
POINTCLOUD2_MSGDEF = """std_msgs/Header header
uint32 height
uint32 width
PointField[] fields
bool is_bigendian
uint32 point_step
uint32 row_step
uint8[] data
bool is_dense
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: sensor_msgs/PointField
uint8 INT8    = 1
uint8 UINT8   = 2
uint8 INT16   = 3
uint8 UINT16  = 4
uint8 INT32   = 5
uint8 UINT32  = 6
uint8 FLOAT32 = 7
uint8 FLOAT64 = 8
string name
uint32 offset
uint8  datatype
uint32 count
"""


def xyzi_cloud(points: np.ndarray, height: int = 1) -> dict:
    """PointCloud2 fields for float32 x, y, z, intensity at 16 bytes a point (plus 4 of pad)."""
    n = len(points)
    width = n // height
    raw = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "V4"),
                             ("intensity", "<f4")])
    raw["x"], raw["y"], raw["z"] = points[:, 0], points[:, 1], points[:, 2]
    raw["intensity"] = np.arange(n)
    fields = [
        {"name": "x", "offset": 0, "datatype": 7, "count": 1},
        {"name": "y", "offset": 4, "datatype": 7, "count": 1},
        {"name": "z", "offset": 8, "datatype": 7, "count": 1},
        {"name": "intensity", "offset": 16, "datatype": 7, "count": 1},
    ]
    return {"height": height, "width": width, "fields": fields, "is_bigendian": False,
            "point_step": 20, "row_step": 20 * width, "data": raw.tobytes(),
            "is_dense": False}


def write_mcap(path: Path, clouds: list[np.ndarray], *, topic: str = "/points",
               stamps: list[float], frame: str = "velodyne", log_step_s: float = 0.1,
               height: int = 1) -> None:
    """An MCAP with one PointCloud2 channel and a std_msgs/String channel between its clouds."""
    from mcap_ros2.writer import Writer

    with path.open("wb") as fh:
        writer = Writer(fh)
        cloud_schema = writer.register_msgdef("sensor_msgs/msg/PointCloud2", POINTCLOUD2_MSGDEF)
        text_schema = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        start = 1_700_000_000_000_000_000
        for i, (points, stamp) in enumerate(zip(clouds, stamps)):
            sec = int(stamp)
            msg = {"header": {"stamp": {"sec": sec, "nanosec": round((stamp - sec) * 1e9)},
                              "frame_id": frame}, **xyzi_cloud(points, height)}
            t = start + int(i * log_step_s * 1e9)
            writer.write_message(topic, cloud_schema, msg, log_time=t, publish_time=t)
            writer.write_message("/chatter", text_schema, {"data": f"hello {i}"},
                                 log_time=t + 1, publish_time=t + 1)
        writer.finish()


def _rosbags_cloud(ts, points: np.ndarray, stamp: float, frame: str, ros1: bool):
    types = ts.types
    prefix = "sensor_msgs/msg/"
    header_kw = {"seq": 0} if ros1 else {}
    sec = int(stamp)
    header = types["std_msgs/msg/Header"](
        **header_kw,
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=round((stamp - sec) * 1e9)),
        frame_id=frame,
    )
    spec = xyzi_cloud(points)
    fields = [types[prefix + "PointField"](name=f["name"], offset=f["offset"],
                                           datatype=f["datatype"], count=f["count"])
              for f in spec["fields"]]
    return types[prefix + "PointCloud2"](
        header=header, height=spec["height"], width=spec["width"], fields=fields,
        is_bigendian=False, point_step=spec["point_step"], row_step=spec["row_step"],
        data=np.frombuffer(spec["data"], dtype=np.uint8), is_dense=False,
    )


def write_rosbags(path: Path, clouds: list[np.ndarray], *, stamps: list[float],
                  topic: str = "/points", frame: str = "lidar", ros1: bool = False) -> Path:
    """A ROS 1 ``.bag`` (ros1) or a rosbag2 SQLite directory; returns the file to read."""
    from rosbags.typesys import Stores, get_typestore

    msgtype = "sensor_msgs/msg/PointCloud2"
    start = 1_700_000_000_000_000_000
    if ros1:
        from rosbags.rosbag1 import Writer

        ts = get_typestore(Stores.ROS1_NOETIC)
        with Writer(path) as writer:
            conn = writer.add_connection(topic, msgtype, typestore=ts)
            other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
            for i, (points, stamp) in enumerate(zip(clouds, stamps)):
                msg = _rosbags_cloud(ts, points, stamp, frame, ros1=True)
                writer.write(conn, start + i * 100_000_000, ts.serialize_ros1(msg, msgtype))
                text = ts.types["std_msgs/msg/String"](data="hi")
                writer.write(other, start + i * 100_000_000 + 1,
                             ts.serialize_ros1(text, "std_msgs/msg/String"))
        return path
    from rosbags.rosbag2 import Writer

    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=8) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=ts)
        for i, (points, stamp) in enumerate(zip(clouds, stamps)):
            msg = _rosbags_cloud(ts, points, stamp, frame, ros1=False)
            writer.write(conn, start + i * 100_000_000, ts.serialize_cdr(msg, msgtype))
    db3 = sorted(path.glob("*.db3"))
    assert db3, list(path.iterdir())
    return db3[0]
