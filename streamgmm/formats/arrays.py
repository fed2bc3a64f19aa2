"""Plain numeric tables: ``.npy``, ``.csv`` and KITTI Velodyne ``.bin`` scans (numpy only), and
``.parquet`` tables (pyarrow).

A CSV with a header row and a Parquet file have named columns: the header is never a data
row, and ``fields`` pick columns by name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from streamgmm.formats._errors import CutShortError, FormatError

__all__ = ["KITTI_FIELDS", "read_csv", "read_kitti_bin", "read_npy", "read_parquet"]

# A KITTI Velodyne scan is float32 records of (x, y, z, reflectance).
KITTI_FIELDS = ("x", "y", "z", "intensity")


def read_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, refusing pickled objects.

    Raises
    ------
    ValueError
        If the file is not a .npy file or holds Python objects.
    OSError
        If it cannot be read.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        # numpy says "...allow_pickle=False": the array holds Python objects.
        if "pickle" in str(exc):
            raise FormatError(f"{path}: holds Python objects, not a numeric array") from None
        raise FormatError(f"{path}: not a readable .npy array ({_first_clause(exc)})") from None
    except EOFError:
        raise FormatError(f"{path}: the .npy file is empty or truncated") from None
    if not isinstance(data, np.ndarray):  # np.load of an .npz gives an NpzFile
        raise FormatError(f"{path}: not a .npy array (an .npz archive?)")
    return data


def _first_clause(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text.split(". ")[0].rstrip(".")


def read_csv(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """Numeric columns of a CSV (comma- or whitespace-separated) with an optional header line.

    Returns
    -------
    numpy.ndarray or dict
        Without a header the (n, d) table; with one, ``{name: column}`` in file order.

    Raises
    ------
    ValueError
        If there are no rows, a value is not a number, or rows differ in length; the message
        names the line.
    """
    with path.open(encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise FormatError(f"{path}: no points in the file")
    delimiter = "," if "," in lines[first] else None
    try:
        [float(x) for x in lines[first].split(delimiter)]
        start = first
        names = None
    except ValueError:
        start = first + 1  # a header line: column names
        names = [n.strip().strip('"').strip("'").strip() for n in lines[first].split(delimiter)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": below
            data = np.loadtxt(path, delimiter=delimiter, skiprows=start, ndmin=2,
                              dtype=np.float64, encoding="utf-8")
    except ValueError:
        _diagnose_csv(path, lines, start, delimiter)  # raises in our words
        raise FormatError(f"{path}: not a table of numbers") from None
    if data.size == 0:
        raise FormatError(f"{path}: no points in the file")
    if names is None:
        return data
    if len(names) != data.shape[1]:
        raise FormatError(f"{path}: the header names {len(names)} columns, the rows have "
                          f"{data.shape[1]}")
    names = [n or f"column{j + 1}" for j, n in enumerate(names)]
    if len(set(names)) != len(names):
        raise FormatError(f"{path}: the header repeats a column name: {','.join(names)}")
    return {name: data[:, j] for j, name in enumerate(names)}


def read_parquet(path: Path) -> dict[str, np.ndarray]:
    """Columns of a Parquet file, by name (read with pyarrow).

    Raises
    ------
    FormatError
        If pyarrow cannot read the file.
    MissingExtraError
        If pyarrow is not installed.
    """
    from streamgmm.formats._errors import brief, require

    pq = require("pyarrow.parquet", "reading .parquet files", "pyarrow", "dask")
    try:
        table = pq.read_table(path)
    except OSError as exc:
        if not path.exists():
            raise
        raise FormatError(f"{path}: not a readable Parquet file ({brief(exc)})") from None
    except Exception as exc:  # ArrowInvalid and friends
        raise FormatError(f"{path}: not a readable Parquet file ({brief(exc)})") from None
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        try:
            columns[str(name)] = table.column(name).to_numpy()
        except Exception:  # nested or otherwise not one value per row: not selectable
            columns[str(name)] = np.asarray(table.column(name).to_pylist(), dtype=object)
    return columns


def _diagnose_csv(path: Path, lines: list[str], start: int, delimiter: str | None) -> None:
    """Raise a ValueError naming the first line numpy could not read."""
    width = None
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split("#")[0].split(delimiter)
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise FormatError(
                f"{path}: line {number} has {len(cells)} columns, the lines before it {width}"
            )
        bad = next((c for c in cells if not _is_float(c)), None)
        if bad is not None:
            raise FormatError(f"{path}: line {number}: {bad.strip()!r} is not a number")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_kitti_bin(path: Path) -> dict[str, np.ndarray]:
    """Columns of a KITTI Velodyne ``.bin`` scan: float32 x, y, z, intensity.

    Raises
    ------
    CutShortError
        If the file ends inside a point (its size is not a whole number of 16-byte points)
        and the whole points before the cut are metres: with those points.
    FormatError
        If the file is empty, or its coordinates are not metres from a sensor (other data,
        e.g. float64 records).
    """
    size = path.stat().st_size
    if size == 0:
        raise FormatError(f"{path}: the file is empty (0 bytes): no KITTI points")
    rows, extra = divmod(size, 16)
    scan = np.fromfile(path, dtype="<f4", count=4 * rows).reshape(-1, 4)
    _check_kitti_metres(path, scan[:, :3])
    columns = {name: scan[:, j] for j, name in enumerate(KITTI_FIELDS)}
    if extra:
        says = (f"{path}: cut short: its {size} bytes hold {rows} whole KITTI points (16 bytes "
                f"each: float32 x, y, z, intensity) and {extra} bytes of the next")
        where = f"after point {rows}"
        if rows == 0:
            raise CutShortError(f"{says}; no point can be read", columns=None, where=where)
        raise CutShortError(f"{says}; read those {rows}", columns=columns, where=where)
    return columns


# A KITTI scan is metres from the sensor. Beyond the Earth's radius (6.4e6 m) no sensor
# measures, and a nonzero coordinate below 1e-10 m is not a measurement either: such values
# are what other data read as float32 gives (float64 records split into two float32 words:
# 3.7e19, 1.1e-19, denormals).
_KITTI_MAX_M = 1e7
_KITTI_MIN_M = 1e-10
# The share of points with such a coordinate that makes a file not KITTI: a stray bad point
# in a real scan is left to the range limits.
_KITTI_BAD_SHARE = 0.01


def _check_kitti_metres(path: Path, xyz: np.ndarray) -> None:
    """Refuse a .bin whose coordinates cannot be metres (see ``_KITTI_MAX_M``).

    Raises
    ------
    FormatError
        If more than ``_KITTI_BAD_SHARE`` of the points with finite x, y, z have one
        beyond ``_KITTI_MAX_M`` or nonzero below ``_KITTI_MIN_M``.
    """
    finite = np.isfinite(xyz).all(axis=1)
    size = np.abs(xyz[finite])
    bad = ((size > _KITTI_MAX_M) | ((size > 0) & (size < _KITTI_MIN_M))).any(axis=1)
    if not len(bad) or bad.mean() <= _KITTI_BAD_SHARE:
        return
    raise FormatError(
        f"{path}: {bad.mean():.0%} of the points have a coordinate beyond {_KITTI_MAX_M:g} m "
        f"or nonzero below {_KITTI_MIN_M:g} m (the largest {size.max():.3g}): not a KITTI scan of "
        "float32 x, y, z, reflectance in metres (float64 data?)"
    )
