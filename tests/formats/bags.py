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
               height: int = 1, chunk_size: int = 1024 * 1024) -> None:
    """An MCAP with one PointCloud2 channel and a std_msgs/String channel between its clouds
    (``chunk_size``: bytes of messages per chunk; a small one makes a chunk per message)."""
    from mcap_ros2.writer import Writer

    with path.open("wb") as fh:
        writer = Writer(fh, chunk_size=chunk_size)
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


# ---------------------------------------------------------------------------------------------
# ROS 1 messages in MCAP (mcap-ros1-support), Imu and LaserScan bags
# ---------------------------------------------------------------------------------------------

# sensor_msgs/PointCloud2 as ROS 1 stores it (gendeps --cat): the schema of a ros1 channel.
POINTCLOUD2_ROS1_MSGDEF = """std_msgs/Header header
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
uint32 seq
time stamp
string frame_id
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


def write_mcap_ros1(path: Path, clouds: list[np.ndarray], *, stamps: list[float],
                    topic: str = "/velodyne_points", frame: str = "velodyne",
                    log_step_s: float = 0.1, chunk_size: int = 1024 * 1024) -> None:
    """An MCAP of ROS 1 PointCloud2 messages written by mcap-ros1-support's Writer."""
    from mcap_ros1._vendor.genpy import dynamic
    from mcap_ros1.writer import Writer

    types = dynamic.generate_dynamic("sensor_msgs/PointCloud2", POINTCLOUD2_ROS1_MSGDEF)
    cloud_t, field_t = types["sensor_msgs/PointCloud2"], types["sensor_msgs/PointField"]
    start = 1_700_000_000_000_000_000
    with path.open("wb") as fh:
        writer = Writer(fh, chunk_size=chunk_size)
        for i, (points, stamp) in enumerate(zip(clouds, stamps)):
            spec = xyzi_cloud(points)
            msg = cloud_t()
            msg.header.seq = i
            msg.header.stamp.secs = int(stamp)
            msg.header.stamp.nsecs = round((stamp - int(stamp)) * 1e9)
            msg.header.frame_id = frame
            msg.height, msg.width = spec["height"], spec["width"]
            msg.fields = [field_t(name=f["name"], offset=f["offset"], datatype=f["datatype"],
                                  count=f["count"]) for f in spec["fields"]]
            msg.is_bigendian, msg.is_dense = False, False
            msg.point_step, msg.row_step, msg.data = (spec["point_step"], spec["row_step"],
                                                      spec["data"])
            writer.write_message(topic, msg, log_time=start + int(i * log_step_s * 1e9))
        writer.finish()


def imu_samples(n: int, seed: int = 0) -> np.ndarray:
    """(n, 10): linear_acceleration xyz, angular_velocity xyz, orientation xyzw."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(n, 10))
    out[:, 2] += 9.81
    return out


def laser_scans(n_scans: int, beams: int = 90, seed: int = 0) -> list[np.ndarray]:
    """Ranges of each scan, some NaN/inf (no return) and some outside [0.2, 10]."""
    rng = np.random.default_rng(seed)
    scans = []
    for _ in range(n_scans):
        r = rng.uniform(0.5, 8.0, size=beams)
        pick = rng.permutation(beams)
        r[pick[:3]] = np.inf
        r[pick[3:5]] = np.nan
        r[pick[5:9]] = 0.05  # below range_min
        r[pick[9:11]] = 25.0  # beyond range_max
        scans.append(r)
    return scans


SCAN = {"angle_min": -np.pi / 2, "angle_increment": np.pi / 89, "range_min": 0.2,
        "range_max": 10.0}


def _ros_objects(ts, kind: str, values, stamp: float, frame: str, ros1: bool):
    types = ts.types
    sec = int(stamp)
    header = types["std_msgs/msg/Header"](
        **({"seq": 0} if ros1 else {}),
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=round((stamp - sec) * 1e9)),
        frame_id=frame,
    )
    if kind == "imu":
        vec = types["geometry_msgs/msg/Vector3"]
        quat = types["geometry_msgs/msg/Quaternion"]
        return types["sensor_msgs/msg/Imu"](
            header=header, orientation=quat(x=values[6], y=values[7], z=values[8], w=values[9]),
            orientation_covariance=np.zeros(9), angular_velocity=vec(*values[3:6]),
            angular_velocity_covariance=np.zeros(9), linear_acceleration=vec(*values[0:3]),
            linear_acceleration_covariance=np.zeros(9))
    return types["sensor_msgs/msg/LaserScan"](
        header=header, angle_min=SCAN["angle_min"], angle_max=SCAN["angle_min"] + np.pi,
        angle_increment=SCAN["angle_increment"], time_increment=0.0, scan_time=0.1,
        range_min=SCAN["range_min"], range_max=SCAN["range_max"],
        ranges=np.asarray(values, dtype=np.float32),
        intensities=np.arange(len(values), dtype=np.float32))


def write_rosbags_messages(path: Path, kind: str, items: list, *, stamps: list[float],
                           topic: str, frame: str = "base", ros1: bool = False) -> Path:
    """Imu (kind "imu", items: rows of imu_samples) or LaserScan ("scan", items: ranges)
    messages in a ROS 1 .bag or a rosbag2 SQLite directory, written by rosbags; returns the
    file to read."""
    from rosbags.typesys import Stores, get_typestore

    msgtype = "sensor_msgs/msg/Imu" if kind == "imu" else "sensor_msgs/msg/LaserScan"
    start = 1_700_000_000_000_000_000
    if ros1:
        from rosbags.rosbag1 import Writer

        ts = get_typestore(Stores.ROS1_NOETIC)
        with Writer(path) as writer:
            conn = writer.add_connection(topic, msgtype, typestore=ts)
            for i, (values, stamp) in enumerate(zip(items, stamps)):
                msg = _ros_objects(ts, kind, values, stamp, frame, ros1=True)
                writer.write(conn, start + i * 10_000_000, ts.serialize_ros1(msg, msgtype))
        return path
    from rosbags.rosbag2 import Writer

    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(path, version=8) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=ts)
        for i, (values, stamp) in enumerate(zip(items, stamps)):
            msg = _ros_objects(ts, kind, values, stamp, frame, ros1=False)
            writer.write(conn, start + i * 10_000_000, ts.serialize_cdr(msg, msgtype))
    return sorted(path.glob("*.db3"))[0]


IMU_MSGDEF = """std_msgs/Header header
geometry_msgs/Quaternion orientation
float64[9] orientation_covariance
geometry_msgs/Vector3 angular_velocity
float64[9] angular_velocity_covariance
geometry_msgs/Vector3 linear_acceleration
float64[9] linear_acceleration_covariance
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: geometry_msgs/Quaternion
float64 x 0
float64 y 0
float64 z 0
float64 w 1
================================================================================
MSG: geometry_msgs/Vector3
float64 x
float64 y
float64 z
"""


def write_mcap_imu(path: Path, samples: np.ndarray, *, stamps: list[float],
                   topic: str = "/imu/data") -> None:
    """An MCAP of ROS 2 sensor_msgs/msg/Imu messages (mcap-ros2-support) plus a cloud topic."""
    from mcap_ros2.writer import Writer

    start = 1_700_000_000_000_000_000
    with path.open("wb") as fh:
        writer = Writer(fh)
        schema = writer.register_msgdef("sensor_msgs/msg/Imu", IMU_MSGDEF)
        cloud_schema = writer.register_msgdef("sensor_msgs/msg/PointCloud2", POINTCLOUD2_MSGDEF)
        for i, (row, stamp) in enumerate(zip(samples, stamps)):
            sec = int(stamp)
            msg = {
                "header": {"stamp": {"sec": sec, "nanosec": round((stamp - sec) * 1e9)},
                           "frame_id": "imu_link"},
                "orientation": dict(zip("xyzw", row[6:10])),
                "orientation_covariance": [0.0] * 9,
                "angular_velocity": dict(zip("xyz", row[3:6])),
                "angular_velocity_covariance": [0.0] * 9,
                "linear_acceleration": dict(zip("xyz", row[0:3])),
                "linear_acceleration_covariance": [0.0] * 9,
            }
            t = start + i * 5_000_000
            writer.write_message(topic, schema, msg, log_time=t, publish_time=t)
        cloud = {"header": {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "velodyne"},
                 **xyzi_cloud(np.ones((4, 3), dtype=np.float32))}
        writer.write_message("/points", cloud_schema, cloud, log_time=start, publish_time=start)
        writer.finish()


def write_rosbag2_mcap(path: Path, clouds: list[np.ndarray], *, stamps: list[float],
                       topic: str = "/points", frame: str = "lidar",
                       per_message_zstd: bool = False) -> Path:
    """A rosbag2 directory with MCAP storage written by rosbags (``per_message_zstd``: each
    message compressed alone, as ``ros2 bag record --compression-mode message`` does);
    returns its .mcap file."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    msgtype = "sensor_msgs/msg/PointCloud2"
    ts = get_typestore(Stores.ROS2_HUMBLE)
    writer = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
    if per_message_zstd:
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(topic, msgtype, typestore=ts)
        for i, (points, stamp) in enumerate(zip(clouds, stamps)):
            msg = _rosbags_cloud(ts, points, stamp, frame, ros1=False)
            writer.write(conn, 1_700_000_000_000_000_000 + i * 100_000_000,
                         ts.serialize_cdr(msg, msgtype))
    return sorted(path.glob("*.mcap"))[0]
