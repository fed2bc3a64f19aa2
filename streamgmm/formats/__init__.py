"""Reading points from files: numeric tables, point-cloud files and ROS bags.

One table, :data:`FORMATS`, maps a file extension to its reader; adding a format touches only
that table (and the reader). The readers raise :class:`FormatError` (a ``ValueError``) with a
message that names the file, ``OSError`` when the file cannot be opened, and
:class:`MissingExtraError` (an ``ImportError``) naming the ``pip install 'streamgmm[EXTRA]'``
that provides a missing optional package. Optional packages are imported only when a file of
their format is read, so ``import streamgmm.formats`` needs numpy alone.

What is not a measurement is dropped and counted on the way (:mod:`.filters`): rows with
NaN/Inf, rows exactly zero in x, y, z (no return; ``RowFilter(keep_zeros=True)`` keeps
them) and rows outside ``RowFilter``'s ``min_range``/``max_range``. A bag damaged part-way
yields every complete message before the damage, then raises :class:`DamagedFileError`; a
point file cut short (a PCD) yields its rows before the cut as its cloud, then raises it.

Examples
--------
>>> from streamgmm.formats import RowFilter, read_points, iter_clouds  # doctest: +SKIP
>>> X = read_points("scan.pcd", rule=RowFilter(max_range=50.0))       # doctest: +SKIP
>>> for cloud in iter_clouds("run.mcap", topic="/velodyne_points"):  # doctest: +SKIP
...     print(cloud.stamp, cloud.frame, cloud.points.shape, cloud.dropped, cloud.zeros)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamgmm.formats import arrays, clouds, rosbag
from streamgmm.formats._errors import (
    CutShortError,
    DamagedFileError,
    FormatError,
    MissingExtraError,
)
from streamgmm.formats.columns import is_index_column, position, select
from streamgmm.formats.filters import RowFilter, filter_rows
from streamgmm.formats.messages import MESSAGE_TYPES
from streamgmm.formats.pointcloud2 import POINTFIELD_DTYPES, pointcloud2_to_array
from streamgmm.formats.rosbag import Cloud

__all__ = [
    "DEFAULT_FIELDS",
    "FORMATS",
    "POINTFIELD_DTYPES",
    "MESSAGE_TYPES",
    "Cloud",
    "DamagedFileError",
    "Format",
    "FormatError",
    "MissingExtraError",
    "RowFilter",
    "is_rosbag2_directory",
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
        ``table``: an (n, d) array, or named columns when the file has a header row;
        ``columns``: named fields, selected by ``fields``; ``messages``: a bag of
        measurement messages, read message by message.
    read : callable
        ``read(path) -> ndarray or {name: column}`` (table), ``read(path) -> {name: column}``
        (columns) or ``read(path, topic, fields, rule) -> Iterator[Cloud]`` (messages).
    extra : str or None
        The ``streamgmm[EXTRA]`` that installs the library it needs.
    default_fields : tuple of str or None
        The fields used without ``fields``; None: every numeric column whose name does not
        say time or a counter.
    """

    name: str
    kind: str
    read: Callable[..., Any]
    extra: str | None = None
    default_fields: tuple[str, ...] | None = ("x", "y", "z")


FORMATS: dict[str, Format] = {
    ".npy": Format("NumPy array", "table", arrays.read_npy, None, None),
    ".csv": Format("CSV table", "table", arrays.read_csv, None, None),
    ".parquet": Format("Parquet table", "table", arrays.read_parquet, "dask", None),
    ".bin": Format("KITTI Velodyne scan", "columns", arrays.read_kitti_bin),
    ".pcd": Format("PCD point cloud", "columns", clouds.read_pcd, "pointclouds"),
    ".ply": Format("PLY point cloud", "columns", clouds.read_ply, "pointclouds"),
    ".las": Format("LAS point cloud", "columns", clouds.read_las, "pointclouds"),
    ".laz": Format("LAZ point cloud", "columns", clouds.read_las, "pointclouds"),
    ".mcap": Format("MCAP bag", "messages", rosbag.iter_mcap, "ros"),
    ".db3": Format("ROS 2 SQLite bag", "messages", rosbag.iter_rosbags, "ros"),
    ".bag": Format("ROS 1 bag", "messages", rosbag.iter_rosbags, "ros"),
}


def is_rosbag2_directory(path: str | Path) -> bool:
    """Is ``path`` a rosbag2 bag's directory: its ``metadata.yaml``, or (a recorder stopped
    before it wrote that) ``.mcap``/``.db3`` storage files?"""
    path = Path(path)
    return path.is_dir() and ((path / "metadata.yaml").is_file()
                              or bool(rosbag.storage_files(path)))


def _format_of(path: Path) -> Format:
    if path.is_dir():
        if (path / "metadata.yaml").is_file():  # a rosbag2 directory
            return Format("ROS 2 bag directory", "messages", rosbag.iter_rosbags, "ros")
        if rosbag.storage_files(path):  # its recorder stopped before writing metadata.yaml
            return Format("ROS 2 bag directory without metadata.yaml", "messages",
                          rosbag.iter_rosbag2_storage, "ros")
        raise FormatError(f"{path}: a directory, not a point file or a rosbag2 bag (no "
                          "metadata.yaml, .mcap or .db3 file in it)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FormatError(
            f"{path}: expected a .npy or .csv file, a point cloud (.pcd, .ply, .las, .laz, "
            "KITTI .bin), a ROS bag (.mcap, .db3, .bag) or a .parquet table"
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


def _fields(fields: Sequence[str] | None) -> tuple[str, ...]:
    if fields is None:
        return DEFAULT_FIELDS
    names = tuple(str(f).strip() for f in fields)
    if not names or any(not n for n in names):
        raise ValueError(f"fields must be non-empty names, got {list(fields)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"fields repeat a name: {','.join(names)}")
    return names


def _default_columns(columns: Mapping[str, np.ndarray]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numeric columns of a table with a header, and those left out as time/counters."""
    numeric = [n for n, c in columns.items()
               if np.asarray(c).ndim == 1 and np.asarray(c).dtype.kind in "biuf"]
    skipped = tuple(n for n in numeric if is_index_column(n))
    return tuple(n for n in numeric if n not in skipped), skipped


def _read_file(path: Path, fmt: Format, data: np.ndarray | Mapping[str, np.ndarray],
               fields: Sequence[str] | None, rule: RowFilter) -> Cloud:
    """The single cloud of a file that is not a bag (``data``, as its reader returned it),
    filtered and counted."""
    if isinstance(data, np.ndarray):  # a table without names
        if fields is not None:
            raise FormatError(f"{path}: a {fmt.name} has no field names; leave out fields "
                              "(every column is used)")
        data = _check_table(path, data)
        # Without names, the first columns are the position (2-D or 3-D data).
        xyz = data[:, : min(data.shape[1], 3)] if data.shape[1] >= 2 else None
        names: tuple[str, ...] = ()
        skipped: tuple[str, ...] = ()
    else:
        skipped = ()
        if fields is not None:
            names = _fields(fields)
        elif fmt.default_fields is not None:
            names = fmt.default_fields
        else:
            names, skipped = _default_columns(data)
            if not names:
                raise FormatError(f"{path}: no numeric column to use (columns: "
                                  f"{','.join(data) or 'none'})")
        data, xyz = select(path, data, names), position(data)
    if len(data) == 0:
        raise FormatError(f"{path}: no points in the file")
    try:
        kept = filter_rows(data, xyz, rule)
    except ValueError as exc:
        raise FormatError(f"{path}: {exc}") from None
    return Cloud(kept.points, None, "", kept.nonfinite, None, kept.zeros, kept.out_of_range,
                 names, skipped)


def read_points(path: str | Path, *, fields: Sequence[str] | None = None,
                topic: str | None = None, rule: RowFilter | None = None,
                allow_damaged: bool = False) -> np.ndarray:
    """Read all points of a file as an (n, d) array, without what is not a measurement.

    Parameters
    ----------
    path : str or Path
        A file whose extension is in :data:`FORMATS`, or a rosbag2 directory.
    fields : sequence of str, optional
        Fields to return, in order, for formats with named fields (default ``x, y, z`` for
        point clouds; every numeric column but time columns for a table with a header; the
        message type's default for a bag); must be left out for a table without names.
    topic : str, optional
        Topic of a bag; may be left out when the bag has one readable topic.
    rule : RowFilter, optional
        Zero and range rules (default: drop zero rows, no range limit).
    allow_damaged : bool, default=False
        Return the points of a damaged bag (or a point file cut short) read before the damage
        instead of raising :class:`DamagedFileError`.

    Returns
    -------
    numpy.ndarray
        Shape (n, d), n >= 1; float32 when the file stores float32, else float64. Rows with
        NaN/Inf, zero rows and rows out of range are left out (see :func:`iter_clouds`).

    Raises
    ------
    FormatError
        A ValueError naming the file: unknown extension, bad content, missing field, no
        point left.
    DamagedFileError
        A damaged bag or a point file cut short, unless ``allow_damaged``.
    MissingExtraError
        An ImportError naming the extra to install.
    OSError
        If the file cannot be opened.
    """
    path = Path(path)
    parts: list[np.ndarray] = []
    try:
        for cloud in iter_clouds(path, topic=topic, fields=fields, rule=rule):
            if len(cloud.points):
                parts.append(cloud.points)
    except DamagedFileError:
        if not allow_damaged or not parts:
            raise
    if not parts:
        raise FormatError(f"{path}: no points left (every row was NaN/Inf, zero or out of "
                          "range)")
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def iter_clouds(path: str | Path, *, topic: str | None = None,
                fields: Sequence[str] | None = None,
                rule: RowFilter | None = None) -> Iterator[Cloud]:
    """The clouds of a file in recorded order, with what is not a measurement removed and
    counted (NaN/Inf rows, zero rows, rows out of range).

    A bag yields one :class:`Cloud` per message of `topic` (PointCloud2, Imu or LaserScan),
    with the header stamp and frame and the recording time; any other file yields a single
    cloud with ``stamp`` and ``time`` None.

    Parameters
    ----------
    path : str or Path
    topic : str, optional
        Topic of a bag; may be left out when the bag has one PointCloud2 topic, or one
        readable topic.
    fields : sequence of str, optional
        As for :func:`read_points`; for Imu messages also group names
        (``angular_velocity``).
    rule : RowFilter, optional
        As for :func:`read_points`.

    Yields
    ------
    Cloud
        ``(points, stamp, frame, dropped, time, zeros, out_of_range, fields, skipped,
        one_row)``.

    Raises
    ------
    FormatError, MissingExtraError, OSError
        As for :func:`read_points`; errors in a later message of a bag are raised when it is
        reached.
    DamagedFileError
        After the last complete message of a bag damaged part-way, or after the rows before
        the cut of a point file cut short.
    """
    path = Path(path)
    rule = rule or RowFilter()
    fmt = _format_of(path)
    if fmt.kind == "messages":
        yield from fmt.read(path, topic, None if fields is None else _fields(fields), rule)
        return
    if topic is not None:
        raise FormatError(f"{path}: a topic only applies to ROS bags, not to a {fmt.name}")
    try:
        data = fmt.read(path)
    except CutShortError as cut:
        # A file cut short is read as a bag is: what came before the cut, then the damage.
        if cut.columns is None:
            raise DamagedFileError(str(cut), messages_read=0, where=cut.where) from None
        yield _read_file(path, fmt, cut.columns, fields, rule)
        raise DamagedFileError(str(cut), messages_read=1, where=cut.where) from None
    yield _read_file(path, fmt, data, fields, rule)
