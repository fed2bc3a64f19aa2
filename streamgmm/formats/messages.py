"""ROS message types that hold measurements, as named columns (numpy only).

- ``sensor_msgs/PointCloud2``: its fields (x, y, z, intensity, ...), default ``x, y, z``.
- ``sensor_msgs/Imu``: one row per message, ``linear_acceleration.{x,y,z}``,
  ``angular_velocity.{x,y,z}`` and ``orientation.{x,y,z,w}``; a group name
  (``angular_velocity``) selects its three columns; default linear acceleration then angular
  velocity (6-D).
- ``sensor_msgs/LaserScan``: one row per beam, ``x, y`` in the scan's frame (``range`` times
  the cosine and sine of the beam's angle), ``range``, ``angle`` and ``intensity`` (when the
  scan has one per beam); default ``x, y``. Beams outside the message's own
  ``[range_min, range_max]`` are counted as out of range; NaN/Inf beams (no return, REP 117)
  as non-finite.

Each type works on a message decoded by any of the readers (``mcap-ros2-support``,
``mcap-ros1-support``, ``rosbags``) or on a plain mapping with the same keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamgmm.formats.pointcloud2 import pointcloud2_to_array

__all__ = ["MESSAGE_TYPES", "MessageType", "message_type"]

Columns = dict[str, np.ndarray]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass(frozen=True)
class MessageType:
    """How one message type becomes rows.

    Attributes
    ----------
    name : str
        ``sensor_msgs/PointCloud2`` etc., for messages.
    columns : callable
        ``columns(msg, fields) -> (columns, outside)``: the named columns (at least the
        selected ``fields`` and the position x, y[, z] when the message has one) and a
        boolean mask of rows the message itself marks out of its range, or None.
    default_fields : tuple of str
        What is sent without ``fields``.
    one_row : bool
        One row per message (IMU samples): a publisher groups several messages into one.
    """

    name: str
    columns: Callable[[Any, Sequence[str]], tuple[Columns, np.ndarray | None]]
    default_fields: tuple[str, ...]
    one_row: bool = False


def _cloud_columns(msg: Any, fields: Sequence[str]) -> tuple[Columns, None]:
    present = {str(_get(f, "name")) for f in _get(msg, "fields") or ()}
    wanted = list(dict.fromkeys([*fields, *(n for n in ("x", "y", "z") if n in present)]))
    data = pointcloud2_to_array(msg, wanted, remove_nans=False)
    return {name: data[:, j] for j, name in enumerate(wanted)}, None


def _vector(obj: Any, names: str) -> list[float]:
    return [float(_get(obj, n, np.nan)) for n in names]


def _imu_columns(msg: Any, fields: Sequence[str]) -> tuple[Columns, None]:
    columns: Columns = {}
    for group, names in (("linear_acceleration", "xyz"), ("angular_velocity", "xyz"),
                         ("orientation", "xyzw")):
        values = _vector(_get(msg, group), names)
        for axis, value in zip(names, values):
            columns[f"{group}.{axis}"] = np.array([value])
    return columns, None


def _scan_columns(msg: Any, fields: Sequence[str]) -> tuple[Columns, np.ndarray]:
    ranges = np.asarray(_get(msg, "ranges", ()), dtype=np.float64).reshape(-1)
    angle_min = float(_get(msg, "angle_min", 0.0))
    increment = float(_get(msg, "angle_increment", 0.0))
    angles = angle_min + increment * np.arange(len(ranges))
    with np.errstate(invalid="ignore"):
        columns: Columns = {"x": ranges * np.cos(angles), "y": ranges * np.sin(angles),
                            "range": ranges, "angle": angles}
    raw = _get(msg, "intensities", None)
    intensities = np.asarray(() if raw is None else raw, dtype=np.float64).reshape(-1)
    if len(intensities) == len(ranges) and len(ranges):
        columns["intensity"] = intensities
    low, high = float(_get(msg, "range_min", 0.0)), float(_get(msg, "range_max", np.inf))
    with np.errstate(invalid="ignore"):
        outside = np.isfinite(ranges) & ((ranges < low) | (ranges > high))
    return columns, outside


_POINTCLOUD2 = MessageType("sensor_msgs/PointCloud2", _cloud_columns, ("x", "y", "z"))
_IMU = MessageType("sensor_msgs/Imu", _imu_columns,
                   ("linear_acceleration", "angular_velocity"), one_row=True)
_LASERSCAN = MessageType("sensor_msgs/LaserScan", _scan_columns, ("x", "y"))

#: Schema name (ROS 2 ``pkg/msg/Type`` and ROS 1 ``pkg/Type``) -> how it is read.
MESSAGE_TYPES: dict[str, MessageType] = {}
for _t in (_POINTCLOUD2, _IMU, _LASERSCAN):
    _pkg, _base = _t.name.split("/")
    MESSAGE_TYPES[_t.name] = MESSAGE_TYPES[f"{_pkg}/msg/{_base}"] = _t


def message_type(schema: str) -> MessageType | None:
    """The :class:`MessageType` of a schema name, or None when it is not one we read."""
    return MESSAGE_TYPES.get(schema)

