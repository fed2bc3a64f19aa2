"""Named columns to points: pick fields by name, find the position, leave out time columns."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from streamgmm.formats._errors import FormatError

__all__ = ["POSITION", "expand", "is_index_column", "position", "select"]

# The fields that hold a point's position, in this order (a 2-D scan has no z).
POSITION = ("x", "y", "z")

# Column names that hold time or a counter, never a coordinate: x-io's "Time (s)",
# `rostopic echo -p`'s "%time" and "field.header.stamp", "timestamp", "t", "seq", ...
_INDEX = re.compile(
    r"^\s*%?(t|ts|time|times|timestamp|timestamps|stamp|sec|secs|seconds|nsec|nsecs|nanosec|"
    r"seq|index|idx|frame|frame_id|packet\s*number)(\s*[(\[].*[)\]])?\s*$"
    r"|^\s*%?time\b|header[._]stamp|header[._]seq",
    re.IGNORECASE,
)


def is_index_column(name: str) -> bool:
    """Does a column's name say it holds time or a counter rather than a coordinate?"""
    return bool(_INDEX.search(name))


def expand(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> list[str]:
    """``names`` with each group name (``angular_velocity``) replaced by its columns
    (``angular_velocity.x``, ``angular_velocity.y``, ``angular_velocity.z``), and each
    multi-value field (a PCD field ``n`` of COUNT 3) by its elements (``n[0]``, ``n[1]``,
    ``n[2]``)."""
    out: list[str] = []
    for name in names:
        if name in columns:
            out.append(name)
            continue
        members = [c for c in columns if c.startswith((name + ".", name + "["))]
        out.extend(members if members else [name])  # a missing name fails in select()
    return out


def select(path: Path | str, columns: Mapping[str, np.ndarray], fields: Sequence[str],
           what: str = "field") -> np.ndarray:
    """The columns ``fields`` (group names expanded) side by side, as an (n, d) array.

    Raises
    ------
    FormatError
        If a field is missing, not one number per row, or the fields differ in length.
    """
    names = expand(columns, fields)
    if len(set(names)) != len(names):
        raise FormatError(f"{path}: fields repeat a column: {','.join(names)}")
    picked = []
    for name in names:
        column = columns.get(name)
        if column is None:
            raise FormatError(f"{path}: no {what} {name!r} (its {what}s: "
                              f"{','.join(columns) or 'none'})")
        column = np.asarray(column)
        if column.ndim != 1 or column.dtype.kind not in "biuf":
            raise FormatError(f"{path}: {what} {name!r} is not one number per point "
                              f"(dtype {column.dtype}, shape {column.shape})")
        picked.append(column)
    if len({len(c) for c in picked}) > 1:
        raise FormatError(f"{path}: the fields {','.join(names)} differ in length")
    dtype = np.float32 if all(c.dtype == np.float32 for c in picked) else np.float64
    out = np.empty((len(picked[0]), len(picked)), dtype=dtype)
    for j, column in enumerate(picked):
        out[:, j] = column
    return out


def position(columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The x, y (and z) columns as an (n, 2) or (n, 3) array, or None without x and y."""
    names = [n for n in POSITION if n in columns]
    if names[:2] != ["x", "y"]:
        return None
    parts = [np.asarray(columns[n]) for n in names]
    if any(p.ndim != 1 or p.dtype.kind not in "biuf" for p in parts):
        return None
    if len({len(p) for p in parts}) > 1:
        return None
    return np.stack(parts, axis=1)
