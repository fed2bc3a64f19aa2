"""The ``.npz`` mixture file: what ``streamgmm fit --out`` writes and ``streamgmm load`` reads.

One NumPy ``.npz`` archive (:func:`numpy.savez`, no pickles) with the arrays

``weights`` (K,), ``means`` (K, d), ``covariances`` (shaped per covariance type, as in
docs/protocol.md), ``covariance_type`` (a 0-d string array) and ``n_points`` (0-d int: the
points behind the fit, the prior weight a ``load`` request carries). Only the first three are
required to read one.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

__all__ = ["REQUIRED_KEYS", "MixtureFile", "MixtureFileError", "load_mixture", "save_mixture"]

#: The arrays every mixture file holds.
REQUIRED_KEYS = ("weights", "means", "covariances")


class MixtureFileError(ValueError):
    """A readable ``.npz`` file that is not a mixture file (it lacks required arrays)."""


class MixtureFile(NamedTuple):
    """The contents of a mixture file.

    Attributes
    ----------
    weights, means, covariances : numpy.ndarray
        The mixture's parameters.
    covariance_type : str or None
        None when the file does not say.
    n_points : float or None
        The points behind the fit; None when the file does not say.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str | None = None
    n_points: float | None = None


def save_mixture(path: str | os.PathLike, *, weights: Any, means: Any, covariances: Any,
                 covariance_type: str, n_points: int = 0) -> None:
    """Write a mixture file.

    Parameters
    ----------
    path : str or path-like
        The file to write (replaced if it exists).
    weights, means, covariances : array_like
        The mixture's parameters, e.g. a fitted ``GaussianMixture``'s ``weights_``,
        ``means_`` and ``covariances_``.
    covariance_type : str
        ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
    n_points : int
        The points behind the fit (``n_seen_``), the prior weight ``streamgmm load`` sends.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    with open(path, "wb") as fh:
        np.savez(fh, weights=np.asarray(weights), means=np.asarray(means),
                 covariances=np.asarray(covariances),
                 covariance_type=np.array(covariance_type),
                 n_points=np.array(int(n_points)))


def load_mixture(path: str | os.PathLike) -> MixtureFile:
    """Read a mixture file.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_mixture` (or any ``.npz`` with :data:`REQUIRED_KEYS`).

    Returns
    -------
    MixtureFile

    Raises
    ------
    MixtureFileError
        If the file is not an ``.npz`` archive or lacks one of :data:`REQUIRED_KEYS`.
    OSError, ValueError
        If the file cannot be read as an ``.npz`` archive without pickles.
    """
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"PK"):  # every .npz is a zip archive
        what = "a .npy array" if magic == b"\x93NUMPY" else "not an .npz archive"
        raise MixtureFileError(f"{os.fspath(path)} is {what}, not a mixture file (write one "
                               "with 'streamgmm fit --out')")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz]
        if missing:
            raise MixtureFileError(f"{os.fspath(path)} lacks {', '.join(missing)} (write it "
                                   "with 'streamgmm fit --out')")
        ctype = str(npz["covariance_type"]) if "covariance_type" in npz else None
        n_points = float(npz["n_points"]) if "n_points" in npz else None
        return MixtureFile(*(np.asarray(npz[k]) for k in REQUIRED_KEYS), ctype, n_points)
