"""Point-cloud files through the libraries that own them: PCD (pypcd4), PLY (plyfile), LAS/LAZ
(laspy, with lazrs for LAZ). Each reader returns the file's columns by field name."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from streamgmm.formats._errors import CutShortError, FormatError, brief, require

__all__ = ["read_las", "read_pcd", "read_ply"]

Columns = dict[str, np.ndarray]


def read_pcd(path: Path) -> Columns:
    """Columns of a PCD file (ascii, binary or binary_compressed) read with pypcd4.

    The header is checked before pypcd4 reads the data, so that a file cut short (or one
    whose ``POINTS`` promises more rows than it holds) is named as such. A field of ``COUNT``
    k > 1 becomes the columns ``name[0]`` ... ``name[k-1]``; PCL's ``_`` padding fields are
    left out.

    Raises
    ------
    CutShortError
        If the data ends before the header's ``POINTS``, with the complete rows before the
        cut (ascii and binary; binary_compressed data is one compressed block: none).
    FormatError
        If the file has no valid PCD header or pypcd4 cannot parse it.
    MissingExtraError
        If pypcd4 is not installed.
    """
    pypcd4 = require("pypcd4", "reading .pcd files", "pypcd4", "pointclouds")
    meta, dtype, start = _pcd_header(pypcd4, path)
    rows = _pcd_rows_before_cut(path, meta, dtype, start)
    if rows is not None:
        raise _pcd_cut(path, meta, dtype, start, rows)
    try:
        data = pypcd4.PointCloud.from_path(path).pc_data  # one field per PCD value
    except OSError:
        raise
    # pypcd4 raises whatever its parser hits on a bad file (struct, lzf, numpy, unicode ...).
    except Exception as exc:
        raise FormatError(f"{path}: not a readable PCD file ({brief(exc)})") from None
    return _pcd_columns(meta, data)


# PCD header keys (lower case), as pypcd4 names them in its MetaData.
_PCD_KEYS = ("version", "fields", "size", "type", "count", "width", "height", "viewpoint",
             "points", "data")
# pypcd4 renames each PCL "_" (padding) field to this prefix and random letters.
_PYPCD4_PAD = "#$%&~~"


def _pcd_header(pypcd4: Any, path: Path) -> tuple[Any, np.dtype, int]:
    """pypcd4's MetaData of the file's header, the numpy dtype of one row, and the byte
    offset where the data starts.

    Raises
    ------
    FormatError
        If there is no header, or it is incomplete or inconsistent.
    """
    lines: list[str] = []
    with path.open("rb") as fh:
        for raw in fh:  # the header lines as pypcd4 reads them: up to DATA, at most 10
            line = raw.decode("utf-8", errors="replace").strip()
            if line.startswith("#") or not line:
                continue
            lines.append(line)
            if line.startswith("DATA") or len(lines) >= 10:
                break
        start = fh.tell()
    keys = {line.split()[0].lower() for line in lines}
    if not keys & set(_PCD_KEYS):
        raise FormatError(f"{path}: not a PCD file (no valid header)")
    try:
        meta = pypcd4.MetaData.parse_header(lines)
    except Exception as exc:  # pydantic's ValidationError: which keys are missing or bad
        bad = sorted({str(e["loc"][0]).upper() for e in getattr(exc, "errors", list)()
                      if e.get("loc")}) or [brief(exc)]
        raise FormatError(f"{path}: not a PCD file (its header lacks or garbles "
                          f"{', '.join(bad)})") from None
    if "data" not in keys:  # pypcd4 would take binary_compressed
        raise FormatError(f"{path}: not a PCD file (its header has no DATA line)")
    if len({len(meta.fields), len(meta.size), len(meta.type), len(meta.count)}) > 1:
        raise FormatError(f"{path}: bad PCD header: FIELDS, SIZE, TYPE and COUNT name "
                          f"{len(meta.fields)}, {len(meta.size)}, {len(meta.type)} and "
                          f"{len(meta.count)} fields")
    try:
        dtype = meta.build_dtype()
    except KeyError as exc:  # a (TYPE, SIZE) pair PCD does not have, e.g. F 2
        raise FormatError(f"{path}: bad PCD header: no PCD type {exc.args[0]!r}") from None
    return meta, dtype, start


def _pcd_rows_before_cut(path: Path, meta: Any, dtype: np.dtype, start: int) -> int | None:
    """The complete rows the data holds when it ends before the header's POINTS; None when
    it holds them all (a binary_compressed file cut short holds none: 0)."""
    points = int(meta.points)
    available = path.stat().st_size - start
    if points == 0:
        return None
    encoding = str(meta.data.value)
    if encoding == "binary":
        rows = available // dtype.itemsize
    elif encoding == "ascii":
        with path.open("rb") as fh:
            fh.seek(start)
            text = fh.read()
        # A row cut in two is not a row: only lines that end count (and a last line without
        # a newline when the file is complete: PCL and pypcd4 end every row with one).
        *ended, last = text.split(b"\n")
        rows = sum(1 for line in ended if line.strip())
        if rows + bool(last.strip()) >= points:
            return None
    else:  # binary_compressed: two uint32 sizes, then one LZF block of all the data
        with path.open("rb") as fh:
            fh.seek(start)
            sizes = fh.read(8)
        if len(sizes) == 8 and available - 8 >= np.frombuffer(sizes, "<u4")[0]:
            return None
        return 0
    return None if rows >= points else int(rows)


def _pcd_cut(path: Path, meta: Any, dtype: np.dtype, start: int, rows: int) -> CutShortError:
    """The error of a PCD file cut short after ``rows`` complete rows, with their columns."""
    points = int(meta.points)
    encoding = str(meta.data.value)
    if encoding == "binary_compressed":
        return CutShortError(f"{path}: cut short: the header says {points} points, and its "
                             "binary_compressed data (one compressed block) ends early, so "
                             "no point can be read", columns=None, where="in the data")
    says = f"{path}: cut short: the header says {points} points, the file holds {rows}"
    where = f"after point {rows} of {points}"
    if rows == 0:
        return CutShortError(f"{says}; no point can be read", columns=None, where=where)
    if encoding == "binary":
        data = np.fromfile(path, dtype=dtype, count=rows, offset=start)
    else:
        data = _pcd_ascii_rows(path, dtype, start, rows)
    return CutShortError(f"{says}; read those {rows}", columns=_pcd_columns(meta, data),
                         where=where)


def _pcd_ascii_rows(path: Path, dtype: np.dtype, start: int, rows: int) -> np.ndarray:
    """The first ``rows`` rows of an ascii PCD's data, parsed as pypcd4 does (np.loadtxt).

    Raises
    ------
    FormatError
        If a row is not numbers.
    """
    with path.open("rb") as fh:
        fh.seek(start)
        lines = [line for line in fh.read().decode("utf-8", errors="replace").split("\n")
                 if line.strip()][:rows]
    try:
        return np.loadtxt(lines, dtype=dtype, delimiter=" ", ndmin=1)
    except ValueError as exc:
        raise FormatError(f"{path}: not a readable PCD file ({brief(exc)})") from None


def _pcd_columns(meta: Any, data: np.ndarray) -> Columns:
    """The columns of pypcd4's structured rows under our names: ``n[0]``, ``n[1]``, ... for
    a field of COUNT > 1 (pypcd4 says ``n__0000``), without PCL's ``_`` padding fields."""
    names: list[str | None] = []
    for field, count in zip(meta.fields, meta.count):
        pad = field.startswith(_PYPCD4_PAD)
        names.extend([None if pad else field] if count == 1
                     else [None if pad else f"{field}[{i}]" for i in range(count)])
    return {name: np.asarray(data[raw]) for name, raw in zip(names, data.dtype.names)
            if name is not None}


def read_ply(path: Path) -> Columns:
    """Columns of the ``vertex`` element of a PLY file (ascii or binary) read with plyfile.

    Raises
    ------
    CutShortError
        If the file ends (or is damaged) before the end of its data and its first element is
        the vertices (as every writer puts them): with the whole vertices before the cut.
    FormatError
        If plyfile cannot parse the file or it has no vertex element.
    MissingExtraError
        If plyfile is not installed.
    """
    plyfile = require("plyfile", "reading .ply files", "plyfile", "pointclouds")
    try:
        ply = plyfile.PlyData.read(str(path))
    except OSError:
        raise
    except Exception as exc:  # PlyParseError, or struct/numpy errors on a truncated body
        cut = _ply_cut(plyfile, path)
        if cut is not None:
            raise cut from None
        raise FormatError(f"{path}: not a readable PLY file ({brief(exc)})") from None
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise FormatError(f"{path}: the PLY file has no vertex element (it has: "
                          f"{', '.join(names) or 'none'})")
    return _ply_columns(ply)


def _ply_columns(ply: Any) -> Columns:
    data = ply["vertex"].data
    return {name: np.asarray(data[name]) for name in data.dtype.names}


# Bytes of each PLY scalar type, by its names in the PLY specification and plyfile's.
_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2,
              "int16": 2, "uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4,
              "float": 4, "float32": 4, "double": 8, "float64": 8}


def _ply_cut(plyfile: Any, path: Path) -> CutShortError | None:
    """The error of a PLY file whose data ends or breaks before its end, with the whole
    vertices before the damage; None when the header is not readable, the vertices are not
    its first element, or (binary) they have a list property, or the vertices before the
    damage do not parse either (then the file is not cut but bad)."""
    data = path.read_bytes()
    end = data.find(b"end_header")
    newline = data.find(b"\n", end)
    if end < 0 or newline < 0:
        return None
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[newline + 1:]
    fmt = next((line.split()[1] for line in header if line.startswith("format ")), "")
    elements = [i for i, line in enumerate(header) if line.startswith("element ")]
    if not elements or header[elements[0]].split()[1:2] != ["vertex"]:
        return None
    first, after = elements[0], (elements[1:] or [len(header)])[0]
    try:
        count = int(header[first].split()[2])
        props = [line.split() for line in header[first + 1:after]
                 if line.startswith("property ")]
        if fmt == "ascii":
            # The last piece has no newline: not a whole row. Blank lines are no rows.
            lines = [line for line in body.split(b"\n")[:-1] if line.strip()][:count]
            rows = len(lines)
            kept = b"".join(line + b"\n" for line in lines)
        else:
            size = sum(_PLY_SIZES[p[1]] for p in props if p[1] != "list")
            if any(p[1] == "list" for p in props) or not size:
                return None
            rows = min(count, len(body) // size)
            kept = body[: rows * size]
    except (IndexError, KeyError, ValueError):
        return None
    head = [*header[:first], f"element vertex {rows}", *header[first + 1:after]]
    try:
        ply = plyfile.PlyData.read(io.BytesIO(
            ("\n".join(head) + "\nend_header\n").encode("ascii") + kept))
    except Exception:  # the vertices themselves do not parse: not a cut
        return None
    where = f"after vertex {rows} of {count}"
    if rows == count:
        says = (f"{path}: damaged after its {count} vertices (the elements after them are "
                f"cut short or do not parse); read the {count} vertices")
    elif rows == 0:
        return CutShortError(f"{path}: cut short: the header says {count} vertices, the file "
                             "holds none; no point can be read", columns=None, where=where)
    else:
        says = (f"{path}: cut short: the header says {count} vertices, the file holds "
                f"{rows}; read those {rows}")
    return CutShortError(says, columns=_ply_columns(ply), where=where)


def read_las(path: Path) -> Columns:
    """Columns of a LAS/LAZ file read with laspy: scaled ``x, y, z`` plus every dimension.

    Raises
    ------
    FormatError
        If laspy cannot parse the file (a .laz without a backend says so).
    MissingExtraError
        If laspy is not installed.
    """
    laspy = require("laspy", "reading .las/.laz files", "laspy", "pointclouds")
    try:
        las = laspy.read(str(path))
        columns: Columns = {}
        for name in las.point_format.dimension_names:
            columns[name] = np.asarray(las[name])
        # Lower-case x, y, z are the scaled coordinates; X, Y, Z the stored integers.
        for name in ("x", "y", "z"):
            columns[name] = np.asarray(getattr(las, name), dtype=np.float64)
        return columns
    except OSError:
        raise
    except Exception as exc:  # LaspyException, or numpy errors on a truncated file
        text = brief(exc)
        if "backend" in text.lower() or "laz" in text.lower() and "lazrs" not in text:
            text += "; reading .laz needs lazrs: pip install 'streamgmm[pointclouds]'"
        raise FormatError(f"{path}: not a readable LAS/LAZ file ({text})") from None
