"""Reading points from files: numeric tables, point-cloud files and ROS bags.

One table, :data:`FORMATS`, maps a file extension to its reader; adding a format touches only
that table (and the reader). The readers raise :class:`FormatError` (a ``ValueError``) with a
message that names the file, ``OSError`` when the file cannot be opened, and
:class:`MissingExtraError` (an ``ImportError``) naming the ``pip install 'streamgmm[EXTRA]'``
that provides a missing optional package. Optional packages are imported only when a file of
their format is read, so ``import streamgmm.formats`` needs numpy alone.

Examples
--------
>>> from streamgmm.formats import read_points, iter_clouds  # doctest: +SKIP
>>> X = read_points("scan.pcd")                              # doctest: +SKIP
>>> for cloud in iter_clouds("run.mcap", topic="/velodyne_points"):  # doctest: +SKIP
...     print(cloud.stamp, cloud.frame, cloud.points.shape, cloud.dropped)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamgmm.formats import arrays, clouds, rosbag
from streamgmm.formats._errors import FormatError, MissingExtraError
from streamgmm.formats.pointcloud2 import POINTFIELD_DTYPES, pointcloud2_to_array
from streamgmm.formats.rosbag import Cloud

__all__ = [
    "DEFAULT_FIELDS",
    "FORMATS",
    "POINTFIELD_DTYPES",
    "Cloud",
    "Format",
    "FormatError",
    "MissingExtraError",
    "iter_clouds",
    "pointcloud2_to_array",
    "read_points",
]

DEFAULT_FIELDS = ("x", "y", "z")


@dataclass(frozen=True)
class Format:
    """How one kind of file is read.

    Attributes
    ----------
    name : str
        What the user would call it, for messages.
    kind : {"table", "columns", "messages"}
        ``table``: an (n, d) array without field names (all columns are the point);
        ``columns``: named fields, selected by ``fields``; ``messages``: a bag of
        PointCloud2 messages, read cloud by cloud.
    read : callable
        ``read(path) -> ndarray`` (table), ``read(path) -> {name: column}`` (columns) or
        ``read(path, topic, fields) -> Iterator[Cloud]`` (messages).
    extra : str or None
        The ``streamgmm[EXTRA]`` that installs the library it needs.
    """

    name: str
    kind: str
    read: Callable[..., Any]
    extra: str | None = None


FORMATS: dict[str, Format] = {
    ".npy": Format("NumPy array", "table", arrays.read_npy),
    ".csv": Format("CSV table", "table", arrays.read_csv),
    ".bin": Format("KITTI Velodyne scan", "columns", arrays.read_kitti_bin),
    ".pcd": Format("PCD point cloud", "columns", clouds.read_pcd, "pointclouds"),
    ".ply": Format("PLY point cloud", "columns", clouds.read_ply, "pointclouds"),
    ".las": Format("LAS point cloud", "columns", clouds.read_las, "pointclouds"),
    ".laz": Format("LAZ point cloud", "columns", clouds.read_las, "pointclouds"),
    ".mcap": Format("ROS 2 MCAP bag", "messages", rosbag.iter_mcap, "ros"),
    ".db3": Format("ROS 2 SQLite bag", "messages", rosbag.iter_rosbags, "ros"),
    ".bag": Format("ROS 1 bag", "messages", rosbag.iter_rosbags, "ros"),
}


def _format_of(path: Path) -> Format:
    if path.is_dir():
        if (path / "metadata.yaml").is_file():  # a rosbag2 directory
            return Format("ROS 2 bag directory", "messages", rosbag.iter_rosbags, "ros")
        raise FormatError(f"{path}: a directory, not a point file or a rosbag2 bag")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FormatError(
            f"{path}: expected a .npy or .csv file, a point cloud (.pcd, .ply, .las, .laz, "
            "KITTI .bin) or a ROS bag (.mcap, .db3, .bag)"
        )
    return fmt


def _check_table(path: Path, data: np.ndarray) -> np.ndarray:
    if data.dtype.kind not in "biuf":
        raise FormatError(f"{path}: expected numbers, got dtype {data.dtype}")
    if data.ndim == 1:
        data = data.reshape(-1, 1)  # a single column
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        raise FormatError(f"{path}: expected an array of shape (n, d), got {data.shape}")
    return data if data.dtype == np.float32 else data.astype(np.float64, copy=False)


def _select(path: Path, columns: Mapping[str, np.ndarray], fields: Sequence[str]) -> np.ndarray:
    picked = []
    for name in fields:
        column = columns.get(name)
        if column is None:
            raise FormatError(f"{path}: no field {name!r} (its fields: "
                              f"{','.join(columns) or 'none'})")
        column = np.asarray(column)
        if column.ndim != 1 or column.dtype.kind not in "biuf":
            raise FormatError(f"{path}: field {name!r} is not one number per point "
                              f"(dtype {column.dtype}, shape {column.shape})")
        picked.append(column)
    if len({len(c) for c in picked}) > 1:
        raise FormatError(f"{path}: the fields {','.join(fields)} differ in length")
    dtype = np.float32 if all(c.dtype == np.float32 for c in picked) else np.float64
    out = np.empty((len(picked[0]), len(picked)), dtype=dtype)
    for j, column in enumerate(picked):
        out[:, j] = column
    if len(out) == 0:
        raise FormatError(f"{path}: no points in the file")
    return out


def _fields(fields: Sequence[str] | None) -> tuple[str, ...]:
    if fields is None:
        return DEFAULT_FIELDS
    names = tuple(str(f).strip() for f in fields)
    if not names or any(not n for n in names):
        raise ValueError(f"fields must be non-empty names, got {list(fields)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"fields repeat a name: {','.join(names)}")
    return names


def _read_file(path: Path, fmt: Format, fields: Sequence[str] | None) -> np.ndarray:
    if fmt.kind == "table":
        if fields is not None:
            raise FormatError(f"{path}: a {fmt.name} has no field names; leave out fields "
                              "(every column is used)")
        return _check_table(path, fmt.read(path))
    return _select(path, fmt.read(path), _fields(fields))


def read_points(path: str | Path, *, fields: Sequence[str] | None = None,
                topic: str | None = None) -> np.ndarray:
    """Read all points of a file as an (n, d) array.

    Parameters
    ----------
    path : str or Path
        A file whose extension is in :data:`FORMATS`, or a rosbag2 directory.
    fields : sequence of str, optional
        Fields to return, in order, for formats with named fields (default ``x, y, z``);
        must be left out for ``.npy``/``.csv``, whose columns are all used.
    topic : str, optional
        PointCloud2 topic of a bag; may be left out when the bag has one.

    Returns
    -------
    numpy.ndarray
        Shape (n, d), n >= 1; float32 when the file stores float32, else float64. Plain
        files keep rows with NaN; bag clouds come without them (see :func:`iter_clouds`).

    Raises
    ------
    FormatError
        A ValueError naming the file: unknown extension, bad content, missing field.
    MissingExtraError
        An ImportError naming the extra to install.
    OSError
        If the file cannot be opened.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt.kind == "messages":
        parts = [c.points for c in iter_clouds(path, topic=topic, fields=fields)]
        parts = [p for p in parts if len(p)]
        if not parts:
            raise FormatError(f"{path}: no points in the bag's clouds")
        return np.concatenate(parts)
    return _read_file(path, fmt, fields)


def iter_clouds(path: str | Path, *, topic: str | None = None,
                fields: Sequence[str] | None = None) -> Iterator[Cloud]:
    """The clouds of a file in recorded order, NaN/Inf rows removed and counted.

    A bag yields one :class:`Cloud` per PointCloud2 message of `topic`, with the header stamp
    and frame and the recording time; any other file yields a single cloud with ``stamp`` and
    ``time`` None.

    Parameters
    ----------
    path : str or Path
    topic : str, optional
        PointCloud2 topic of a bag; may be left out when the bag has one.
    fields : sequence of str, optional
        As for :func:`read_points`.

    Yields
    ------
    Cloud
        ``(points, stamp, frame, dropped, time)``.

    Raises
    ------
    FormatError, MissingExtraError, OSError
        As for :func:`read_points`; errors in a later message of a bag are raised when it is
        reached.
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt.kind == "messages":
        yield from fmt.read(path, topic, _fields(fields))
        return
    if topic is not None:
        raise FormatError(f"{path}: a topic only applies to ROS bags, not to a {fmt.name}")
    data = _read_file(path, fmt, fields)
    keep = np.isfinite(data).all(axis=1)
    dropped = int(len(keep) - np.count_nonzero(keep))
    yield Cloud(data[keep] if dropped else data, None, "", dropped, None)
