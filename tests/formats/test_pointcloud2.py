"""The PointCloud2 decoder on clouds built byte by byte with struct (no ROS, no numpy layout)."""

from __future__ import annotations

import array
import math
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from streamgmm.formats import pointcloud2_to_array

FLOAT32, FLOAT64, UINT8, INT16, UINT16, INT32 = 7, 8, 2, 3, 4, 5


def field(name: str, offset: int, datatype: int, count: int = 1) -> dict:
    return {"name": name, "offset": offset, "datatype": datatype, "count": count}


def cloud(rows: list[bytes], *, width: int, point_step: int, fields: list[dict],
          row_pad: int = 0, big: bool = False, as_object: bool = False):
    """A PointCloud2-like map: ``rows`` are the packed points of each row, then padding."""
    data = b"".join(r + b"\xee" * row_pad for r in rows)
    msg = {"height": len(rows), "width": width, "fields": fields, "is_bigendian": big,
           "point_step": point_step, "row_step": width * point_step + row_pad, "data": data}
    if as_object:
        msg = SimpleNamespace(**{**msg, "fields": [SimpleNamespace(**f) for f in fields]})
    return msg


def test_odd_point_step_with_padding_and_extra_fields() -> None:
    # 17-byte points: x,y,z float32, a uint8 ring, an int16, then 2 bytes of padding.
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(7, 3)).astype(np.float32)
    packed = b"".join(struct.pack("<fffBh", *p, i, -i) + b"\x00\x00" for i, p in enumerate(pts))
    assert len(packed) == 7 * 17
    fields = [field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 8, FLOAT32),
              field("ring", 12, UINT8), field("t", 13, INT16)]
    msg = cloud([packed], width=7, point_step=17, fields=fields)
    out = pointcloud2_to_array(msg)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts)
    rings = pointcloud2_to_array(msg, ("ring", "t", "x"))
    assert rings.dtype == np.float64  # integer fields promote the whole result
    np.testing.assert_array_equal(rings[:, 0], np.arange(7))
    np.testing.assert_array_equal(rings[:, 1], -np.arange(7))
    np.testing.assert_array_equal(rings[:, 2], pts[:, 0])


def test_big_endian_float64_fields_in_any_order() -> None:
    # z first in memory, then x, then y: offsets, not field order, decide.
    pts = np.array([[1.5, -2.25, 3.0], [1e10, 2e-10, -0.0]])
    packed = b"".join(struct.pack(">ddd", z, x, y) for x, y, z in pts)
    fields = [field("x", 8, FLOAT64), field("y", 16, FLOAT64), field("z", 0, FLOAT64)]
    out = pointcloud2_to_array(cloud([packed], width=2, point_step=24, fields=fields, big=True,
                                     as_object=True))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, pts)


def test_organised_cloud_with_row_padding_and_nan_rows() -> None:
    # 3 rows x 4 columns, 5 bytes of padding after each row, NaN marks missing returns.
    grid = np.arange(36, dtype=np.float32).reshape(3, 4, 3)
    grid[0, 1, 0] = np.nan
    grid[2, 3, :] = np.nan
    grid[1, 0, 2] = np.inf
    rows = [b"".join(struct.pack("<fffI", *p, 0xDEADBEEF) for p in row) for row in grid]
    fields = [field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 8, FLOAT32)]
    msg = cloud(rows, width=4, point_step=16, fields=fields, row_pad=5)
    kept = pointcloud2_to_array(msg)
    flat = grid.reshape(-1, 3)
    finite = np.isfinite(flat).all(axis=1)
    assert len(kept) == 12 - 3
    np.testing.assert_array_equal(kept, flat[finite])
    everything = pointcloud2_to_array(msg, remove_nans=False)
    np.testing.assert_array_equal(everything, flat)  # NaN == NaN under assert_array_equal


def test_integer_datatypes_and_rclpy_style_data() -> None:
    packed = b"".join(struct.pack("<hHi", -3 * i, 7 * i, -100000 * i) for i in range(5))
    fields = [field("a", 0, INT16), field("b", 2, UINT16), field("c", 4, INT32)]
    msg = cloud([packed], width=5, point_step=8, fields=fields)
    msg["data"] = array.array("B", msg["data"])  # rclpy's uint8[] type
    out = pointcloud2_to_array(msg, ("a", "b", "c"))
    np.testing.assert_array_equal(out, np.c_[-3 * np.arange(5), 7 * np.arange(5),
                                             -100000 * np.arange(5)])


def test_empty_cloud() -> None:
    fields = [field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 8, FLOAT32)]
    out = pointcloud2_to_array(cloud([], width=0, point_step=12, fields=fields))
    assert out.shape == (0, 3)


@pytest.mark.parametrize(
    "change, says",
    [
        ({"fields": [field("x", 0, FLOAT32), field("y", 4, FLOAT32)]}, "no field 'z'"),
        ({"fields": [field("x", 0, 99), field("y", 4, FLOAT32), field("z", 8, FLOAT32)]},
         "unknown PointField datatype 99"),
        ({"fields": [field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 10, FLOAT32)]},
         "does not fit in point_step 12"),
        ({"data": b"\x00" * 23}, "truncated"),
        ({"row_step": 20}, "row_step 20 is shorter"),
        ({"width": "wide"}, "width must be an integer"),
        ({"data": 3.5}, "data must be bytes"),
    ],
)
def test_bad_layouts_raise_value_error(change: dict, says: str) -> None:
    msg = {"height": 1, "width": 2, "is_bigendian": False, "point_step": 12, "row_step": 24,
           "data": struct.pack("<6f", *range(6)),
           "fields": [field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 8, FLOAT32)]}
    with pytest.raises(ValueError, match=says):
        pointcloud2_to_array({**msg, **change})


def test_large_cloud_is_a_view_not_a_loop() -> None:
    # 2**20 points decode in well under a second only without a Python loop over points.
    import time

    n = 1 << 20
    raw = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "V4")])
    raw["x"] = np.arange(n)
    msg = cloud([raw.tobytes()], width=n, point_step=16,
                fields=[field("x", 0, FLOAT32), field("y", 4, FLOAT32), field("z", 8, FLOAT32)])
    start = time.perf_counter()
    out = pointcloud2_to_array(msg)
    assert time.perf_counter() - start < 1.0
    assert out.shape == (n, 3) and out[-1, 0] == n - 1 and not math.isnan(out[:, 1].sum())
