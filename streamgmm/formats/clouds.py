"""Point-cloud files through the libraries that own them: PCD (pypcd4), PLY (plyfile), LAS/LAZ
(laspy, with lazrs for LAZ). Each reader returns the file's columns by field name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamgmm.formats._errors import FormatError, brief, require

__all__ = ["read_las", "read_pcd", "read_ply"]

Columns = dict[str, np.ndarray]


def read_pcd(path: Path) -> Columns:
    """Columns of a PCD file (ascii, binary or binary_compressed) read with pypcd4.

    Raises
    ------
    FormatError
        If pypcd4 cannot parse the file.
    MissingExtraError
        If pypcd4 is not installed.
    """
    pypcd4 = require("pypcd4", "reading .pcd files", "pypcd4", "pointclouds")
    try:
        cloud = pypcd4.PointCloud.from_path(path)
        data = cloud.pc_data  # a structured array, one field per PCD field
        return {name: np.asarray(data[name]) for name in data.dtype.names}
    except OSError:
        raise
    # pypcd4 raises whatever its parser hits on a bad file (struct, lzf, numpy, unicode ...).
    except Exception as exc:
        raise FormatError(f"{path}: not a readable PCD file ({brief(exc)})") from None


def read_ply(path: Path) -> Columns:
    """Columns of the ``vertex`` element of a PLY file (ascii or binary) read with plyfile.

    Raises
    ------
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
        raise FormatError(f"{path}: not a readable PLY file ({brief(exc)})") from None
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise FormatError(f"{path}: the PLY file has no vertex element (it has: "
                          f"{', '.join(names) or 'none'})")
    data = ply["vertex"].data
    return {name: np.asarray(data[name]) for name in data.dtype.names}


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
