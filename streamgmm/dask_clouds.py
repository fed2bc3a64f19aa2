"""Batch EM on Dask over points read here: a bag's clouds (or any file's points) become the
chunks of a dask array, sent to the workers once; what ``streamgmm fit --scheduler`` runs for
inputs that are not ``.npy``/``.parquet`` shards.

Shards on a shared file system are better fitted with :func:`streamgmm.dask_em.fit_shards`,
whose workers read them themselves; this module is for files that must be decoded (ROS bags,
point clouds) and filtered (zero rows, range limits) first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from streamgmm import dask_em

__all__ = ["CHUNK_POINTS", "chunk_parts", "fit_arrays"]

# Points per dask chunk at least: a bag's clouds are grouped up to this, so a bag of
# thousands of small clouds does not become thousands of tasks per EM iteration.
CHUNK_POINTS = 65_536


def chunk_parts(parts: Sequence[np.ndarray], size: int = CHUNK_POINTS) -> list[np.ndarray]:
    """Consecutive arrays joined into chunks of at least ``size`` rows (the last may be less).

    Parameters
    ----------
    parts : sequence of ndarray of shape (n_i, d)
    size : int

    Returns
    -------
    list of ndarray
    """
    chunks: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    rows = 0
    for part in parts:
        if not len(part):
            continue
        pending.append(part)
        rows += len(part)
        if rows >= size:
            chunks.append(pending[0] if len(pending) == 1 else np.concatenate(pending))
            pending, rows = [], 0
    if pending:
        chunks.append(pending[0] if len(pending) == 1 else np.concatenate(pending))
    return chunks


def fit_arrays(
    parts: Sequence[np.ndarray],
    gm,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    connect_timeout: float = 30.0,
) -> dict:
    """Fit ``gm`` by batch EM on a cluster to points held by this process.

    Parameters
    ----------
    parts : sequence of ndarray of shape (n_i, d)
        The points, e.g. one array per cloud of a bag; grouped by :func:`chunk_parts`.
    gm : GaussianMixture
    scheduler : str, optional
        Address of a running scheduler; default a ``LocalCluster`` of ``n_workers``
        single-threaded processes.
    n_workers : int, optional
    progress : callable, optional
        ``progress(n_iter, lower_bound, seconds)`` after every iteration.
    connect_timeout : float

    Returns
    -------
    dict
        ``n_points``, ``n_shards`` (chunks), ``n_workers`` and ``seconds``.

    Raises
    ------
    ValueError
        If there are no points or they disagree on the dimension.
    ConnectionError
        If the scheduler cannot be reached.
    """
    da = dask_em.require_dask()
    chunks = chunk_parts(parts)
    if not chunks:
        raise ValueError("no points to fit")
    if len({c.shape[1] for c in chunks}) > 1:
        raise ValueError("the inputs disagree on the dimension: "
                         f"{sorted({c.shape[1] for c in chunks})}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = da.concatenate([da.from_array(c, chunks=c.shape) for c in chunks], axis=0)
    workers, seconds = dask_em.fit_on_cluster(gm, X, scheduler=scheduler, n_workers=n_workers,
                                              progress=progress,
                                              connect_timeout=connect_timeout)
    return {"n_points": int(X.shape[0]), "n_shards": len(chunks), "n_workers": workers,
            "seconds": seconds}
