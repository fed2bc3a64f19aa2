"""What is not a measurement: NaN/Inf rows, no-return rows (exactly zero in x, y, z) and rows
outside a range limit, dropped and counted (numpy only).

Every reader of :mod:`streamgmm.formats` passes its points through :func:`filter_rows`, so a
point file, a bag and a table lose the same rows for the same reasons, and say how many.
Each dropped row is counted once, under the first rule it breaks, in this order: non-finite,
out of the data's own range (a LaserScan's limits), zero, outside the range limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Filtered", "RowFilter", "filter_rows", "point_range"]


@dataclass(frozen=True)
class RowFilter:
    """Which rows a reader keeps.

    Attributes
    ----------
    keep_zeros : bool
        Keep rows whose x, y, z are all exactly 0 (by default they are no-return points of a
        LiDAR driver and dropped).
    min_range, max_range : float or None
        Keep only rows whose distance from the sensor origin, ``sqrt(x^2 + y^2 + z^2)`` in
        the file's units (metres for LiDAR), is within ``[min_range, max_range]``; None: no
        limit.
    """

    keep_zeros: bool = False
    min_range: float | None = None
    max_range: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_range", "max_range"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if (self.min_range is not None and self.max_range is not None
                and self.min_range > self.max_range):
            raise ValueError(f"min_range {self.min_range} is above max_range {self.max_range}")

    @property
    def has_range(self) -> bool:
        """Is a range limit set?"""
        return self.min_range is not None or self.max_range is not None


@dataclass(frozen=True, eq=False)
class Filtered:
    """Rows kept and the counts of those dropped.

    Attributes
    ----------
    points : numpy.ndarray of shape (n, d)
    nonfinite, zeros, out_of_range : int
        Rows dropped for NaN/Inf, for being exactly zero in x, y, z, and for lying outside the
        range limits.
    """

    points: np.ndarray
    nonfinite: int = 0
    zeros: int = 0
    out_of_range: int = 0


def point_range(xyz: np.ndarray) -> np.ndarray:
    """Distance of each row of ``xyz`` (shape (n, 2) or (n, 3)) from the origin."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", xyz, xyz))


def filter_rows(points: np.ndarray, xyz: np.ndarray | None, rule: RowFilter,
                outside: np.ndarray | None = None) -> Filtered:
    """Drop and count the rows of ``points`` that are not measurements.

    Parameters
    ----------
    points : ndarray of shape (n, d)
        The selected fields of each row.
    xyz : ndarray of shape (n, 2) or (n, 3), or None
        The row's position (the file's x, y[, z] fields, whether selected or not); None when
        the data has no position, e.g. IMU samples: then only NaN/Inf rows are dropped, and a
        range limit is an error.
    rule : RowFilter
    outside : ndarray of bool, optional
        Rows the data itself marks out of range (a LaserScan beam beyond its
        ``range_max``): counted with the rows outside ``rule``'s limits.

    Returns
    -------
    Filtered

    Raises
    ------
    ValueError
        If a range limit is set and there is no position to measure it on.
    """
    if xyz is None and rule.has_range:
        raise ValueError("a range limit needs x, y (and z) fields, which this data lacks")
    n = len(points)
    finite = np.isfinite(points).all(axis=1)
    if xyz is not None:
        finite &= np.isfinite(xyz).all(axis=1)
    keep = finite.copy()
    zeros = out_of_range = 0
    if xyz is not None and n:
        if outside is not None:
            beyond = np.asarray(outside, dtype=bool) & keep
            out_of_range += int(np.count_nonzero(beyond))
            keep &= ~beyond
        if not rule.keep_zeros:
            zero = keep & ~np.any(xyz != 0, axis=1)
            zeros = int(np.count_nonzero(zero))
            keep &= ~zero
        if rule.has_range:
            with np.errstate(invalid="ignore", over="ignore"):
                r = point_range(np.where(keep[:, None], xyz, 0.0))
            far = np.zeros(n, dtype=bool)
            if rule.min_range is not None:
                far |= r < rule.min_range
            if rule.max_range is not None:
                far |= r > rule.max_range
            far &= keep
            out_of_range += int(np.count_nonzero(far))
            keep &= ~far
    nonfinite = int(n - np.count_nonzero(finite))
    kept = points if keep.all() else points[keep]
    return Filtered(kept, nonfinite, zeros, out_of_range)
