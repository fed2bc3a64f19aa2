"""Decode ``sensor_msgs/PointCloud2`` payloads with numpy views (no loop over points).

The decoder takes anything shaped like a PointCloud2 message: an ``rclpy`` message, a message
decoded by ``mcap-ros2-support`` or ``rosbags``, or a plain mapping with the same keys. It
builds a numpy structured dtype from the field names, offsets and ``point_step``, lays it over
the byte buffer with ``row_step`` as the row stride (so row padding is skipped without a copy),
and copies out only the selected fields.
"""

from __future__ import annotations

import array
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["POINTFIELD_DTYPES", "pointcloud2_to_array"]

# sensor_msgs/PointField datatype constants -> numpy base type (byte order set per cloud).
POINTFIELD_DTYPES: dict[int, str] = {
    1: "i1",  # INT8
    2: "u1",  # UINT8
    3: "i2",  # INT16
    4: "u2",  # UINT16
    5: "i4",  # INT32
    6: "u4",  # UINT32
    7: "f4",  # FLOAT32
    8: "f8",  # FLOAT64
}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_int(value: Any, name: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"PointCloud2 {name} must be an integer, got {value!r}") from None
    if out < 0:
        raise ValueError(f"PointCloud2 {name} must be >= 0, got {out}")
    return out


def _as_bytes(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, array.array):  # what rclpy hands out for uint8[]
        return np.frombuffer(data, dtype=np.uint8)
    if isinstance(data, (list, tuple)):  # only hand-made messages
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    raise ValueError(f"PointCloud2 data must be bytes, got {type(data).__name__}")


def pointcloud2_to_array(
    cloud: Any,
    fields: Sequence[str] = ("x", "y", "z"),
    *,
    remove_nans: bool = True,
) -> np.ndarray:
    """Points of a PointCloud2 message as an (n, len(fields)) array.

    Parameters
    ----------
    cloud : PointCloud2-like
        An object or mapping with ``height``, ``width``, ``fields`` (each with ``name``,
        ``offset``, ``datatype``, ``count``), ``is_bigendian``, ``point_step``, ``row_step``
        and ``data`` (bytes, bytearray, memoryview, ``array.array`` or a uint8 array).
    fields : sequence of str, default=("x", "y", "z")
        Names of the fields to return, in this order; each must have ``count >= 1`` (the
        first element is taken).
    remove_nans : bool, default=True
        Drop rows where any selected value is NaN or infinite (organised clouds mark missing
        returns so). ``height * width - len(result)`` is the number dropped.

    Returns
    -------
    numpy.ndarray
        Shape (n, len(fields)), in row-major point order; float32 when every selected field is
        FLOAT32, else float64.

    Raises
    ------
    ValueError
        If a selected field is missing or has an unknown datatype, a field does not fit in
        ``point_step``, ``row_step`` is shorter than a row, or ``data`` is shorter than the
        layout says.
    """
    names = [str(f) for f in fields]
    if not names:
        raise ValueError("select at least one field")
    if len(set(names)) != len(names):
        raise ValueError(f"fields repeat a name: {','.join(names)}")
    height = _as_int(_get(cloud, "height"), "height")
    width = _as_int(_get(cloud, "width"), "width")
    point_step = _as_int(_get(cloud, "point_step"), "point_step")
    row_step = _get(cloud, "row_step")
    row_step = width * point_step if row_step is None else _as_int(row_step, "row_step")
    order = ">" if bool(_get(cloud, "is_bigendian", False)) else "<"
    layout = {}
    for f in _get(cloud, "fields") or ():
        layout.setdefault(str(_get(f, "name")), f)  # the first of duplicate names wins
    formats, offsets = [], []
    for name in names:
        f = layout.get(name)
        if f is None:
            have = ",".join(layout) or "none"
            raise ValueError(f"the cloud has no field {name!r} (its fields: {have})")
        datatype = _get(f, "datatype")
        try:
            base = POINTFIELD_DTYPES.get(int(datatype))
        except (TypeError, ValueError):
            base = None
        if base is None:
            raise ValueError(f"field {name!r} has unknown PointField datatype {datatype!r}")
        count = _get(f, "count", 1)
        if count is not None and int(count) < 1:
            raise ValueError(f"field {name!r} has count {count} (no values)")
        offset = _as_int(_get(f, "offset"), f"offset of {name!r}")
        dtype = np.dtype(order + base)
        if offset + dtype.itemsize > point_step:
            raise ValueError(
                f"field {name!r} ({dtype.itemsize} bytes at offset {offset}) does not fit in "
                f"point_step {point_step}"
            )
        formats.append(dtype)
        offsets.append(offset)
    out_dtype = np.float32 if all(d.kind == "f" and d.itemsize == 4 for d in formats) else (
        np.float64
    )
    n = height * width
    if n == 0:
        return np.empty((0, len(names)), dtype=out_dtype)
    if row_step < width * point_step:
        raise ValueError(f"row_step {row_step} is shorter than width * point_step "
                         f"= {width * point_step}")
    buf = _as_bytes(_get(cloud, "data"))
    needed = (height - 1) * row_step + width * point_step
    if buf.size < needed:
        raise ValueError(f"the cloud's data is truncated: {buf.size} bytes, its layout "
                         f"({height} x {width} points) needs {needed}")
    # Only the selected fields are named; the rest of each point is padding to numpy.
    struct = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                       "itemsize": point_step})
    grid = np.ndarray((height, width), dtype=struct, buffer=buf, strides=(row_step, point_step))
    out = np.empty((n, len(names)), dtype=out_dtype)
    for j, name in enumerate(names):
        out[:, j] = grid[name].reshape(-1)  # one vectorised copy per field, also byte-swaps
    if remove_nans:
        keep = np.isfinite(out).all(axis=1)
        if not keep.all():
            out = out[keep]
    return out
