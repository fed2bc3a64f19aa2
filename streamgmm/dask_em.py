"""Batch EM over Dask: the map (E-step + moments per chunk) on the workers, the reduce and
the M-step on the client.

One EM iteration over a row-chunked ``dask.array.Array`` is the in-memory iteration of
:func:`streamgmm.core.em.run_em` cut in two at its natural seam: every worker runs
:func:`~streamgmm.core.em.moments_pass` over the chunks it already holds (one task per
worker thread, data placed once and never re-scattered), the client adds up the raw
moments (a few kilobytes per worker) and :func:`~streamgmm.core.em.finish_statistics` and the
M-step run on the client. The loop and its convergence test are
:func:`~streamgmm.core.em.em_loop`, the same as in memory, so from the same start the
parameters agree with the in-memory fit to rounding (summation order only).

Only parameters go to the workers and only moments come back: nothing but a seeded
initialisation sample (at most ``INIT_SAMPLE`` rows) is ever gathered to the client.

This module needs the optional extra ``streamgmm[dask]``; nothing else in the package
imports it unless it is asked for a dask array or a scheduler.
"""

from __future__ import annotations

import glob
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamgmm.core.em import (
    BatchStatistics,
    EMResult,
    em_loop,
    finish_statistics,
    moments_pass,
    scatter_pass,
)
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import make_scorer

__all__ = [
    "INIT_SAMPLE",
    "DaskData",
    "fit_dask",
    "fit_shards",
    "is_dask_array",
    "open_shards",
    "require_dask",
    "shard_paths",
]

# Rows drawn (with a seeded RandomState) for k-means / k-means++ / random initialisation;
# k-means++ on 50,000 rows takes well under a second and sees every sizeable cluster.
INIT_SAMPLE = 50_000

_MISSING = (
    "batch EM on a dask array or a cluster needs dask.distributed: "
    "pip install 'streamgmm[dask]'"
)


def require_dask():
    """Import and return ``dask.array``, or raise ``ImportError`` naming the extra."""
    try:
        import dask.array as da
    except ImportError:
        raise ImportError(_MISSING) from None
    return da


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(_MISSING) from None
    return distributed


def is_dask_array(X: Any) -> bool:
    """Whether ``X`` is a ``dask.array.Array`` (checked without importing dask)."""
    return type(X).__module__.startswith("dask.array") and hasattr(X, "chunks")


# ------------------------------------------------------------------------------ worker tasks
# Module-level functions so that workers import them by name (cloudpickle by reference).


def _as_float64(block: np.ndarray) -> np.ndarray:
    # No copy for float64 blocks, memory-mapped ones included.
    return np.asarray(block, dtype=np.float64)


# Each task returns one result per chunk: the client adds them in chunk order, so the sums
# (and the model) do not depend on which worker held which chunk or finished first.


def _group_moments(params: MixtureParams, shift: np.ndarray, *blocks) -> list:
    """Per chunk: moments and log-likelihood under ``params`` (one task, many chunks)."""
    scorer = make_scorer(params, shift)
    return [moments_pass(_as_float64(block), scorer) for block in blocks]


def _group_scatter(params: MixtureParams, shift: np.ndarray, means: np.ndarray,
                   components: np.ndarray, *blocks) -> list:
    scorer = make_scorer(params, shift)
    return [scatter_pass(_as_float64(block), scorer, means, components) for block in blocks]


def _group_summary(*blocks) -> list:
    """Per chunk: rows, column sums and whether it holds a non-finite value."""
    out = []
    for block in blocks:
        b = _as_float64(block)
        s = b.sum(axis=0)
        # A finite column sum means a finite column (NaN and Inf propagate); only a sum
        # that overflowed needs the element-wise check.
        out.append((b.shape[0], s, int(not (np.isfinite(s).all() or np.isfinite(b).all()))))
    return out


def _take(block, rows: np.ndarray) -> np.ndarray:
    return np.array(block[rows], dtype=np.float64)


def _add_partials(*parts):
    """Sum of partial results: tuples are added element by element."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(sum(p[i] for p in parts[1:]) + first[i] for i in range(len(first)))
    out = first
    for p in parts[1:]:
        out = out + p
    return out


def _load_shard(path: str) -> np.ndarray:
    """A shard as the worker sees it: ``.npy`` memory-mapped, ``.parquet`` read (pyarrow)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return np.column_stack([np.asarray(c, dtype=np.float64) for c in table.columns])
    X = np.load(path, mmap_mode="r")
    return X.reshape(-1, 1) if X.ndim == 1 else X


def _register_memmap_sizeof() -> None:
    # A memory-mapped chunk held by a worker costs page cache, not heap: counting its full
    # size would make distributed spill it (pickling reads the whole file) or pause workers.
    try:
        from dask.sizeof import sizeof
    except ImportError:  # pragma: no cover - dask is optional
        return

    @sizeof.register(np.memmap)
    def _sizeof_memmap(x):
        return 256 if getattr(x, "_mmap", None) is not None else int(x.nbytes)


_register_memmap_sizeof()


# ------------------------------------------------------------------------------ the data


class DaskData:
    """A row-chunked dask array placed once on the workers, scored in one task per thread.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Chunked along rows (a chunking along columns is merged first).
    client : distributed.Client, optional
        Default: the current client (``distributed.get_client``); without one, the chunks
        are computed once in this process and each iteration runs on dask's threads.

    Attributes
    ----------
    n_points, n_features : int
    shift : ndarray of shape (d,)
        The data's mean (the E-step's centring, as in :func:`~streamgmm.core.em.run_em`).
    """

    def __init__(self, X, client=None) -> None:
        da = require_dask()
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D dask array of points, got shape {X.shape}")
        if X.dtype.kind not in "fiub":
            raise ValueError(f"points must be numeric, got a dask array of dtype {X.dtype}")
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        self.n_features = int(X.shape[1])
        self._rows = [int(r) for r in X.chunks[0]]
        self.client = client if client is not None else _current_client()
        if self.client is not None:
            self._place_distributed(X)
        else:
            self._place_local(X, da)
        n, total, bad = _add_partials(*self._map(_group_summary))
        if bad:
            raise ValueError(
                "Input X contains NaN or infinity: drop or impute those rows before fitting "
                "(the daemon drops and counts them for you)."
            )
        self.n_points = int(n)
        self.shift = total / max(n, 1)

    # -- placement

    def _place_distributed(self, X) -> None:
        from distributed import futures_of, wait

        persisted = self.client.persist(X)
        futures = futures_of(persisted)
        wait(futures)
        by_key = {f.key: f for f in futures}
        # Chunk order: the keys of the array's blocks in row order.
        keys = [k for k in persisted.__dask_keys__()]
        ordered = [by_key[k[0] if isinstance(k, list) else k] for k in keys]
        self._blocks = ordered
        self._persisted = persisted  # keeps the futures alive
        who_has = self.client.who_has(ordered)
        nthreads = self.client.nthreads()
        per_worker: dict[str, list] = {}
        for i, f in enumerate(ordered):
            holders = who_has.get(f.key) or who_has.get(str(f.key)) or ()
            worker = holders[0] if holders else next(iter(nthreads))
            per_worker.setdefault(worker, []).append(i)
        # One group per worker thread, each pinned to the worker that holds its chunks.
        self._groups: list[tuple[str | None, list[int]]] = []
        for worker, indices in per_worker.items():
            for part in _split(indices, max(1, nthreads.get(worker, 1))):
                self._groups.append((worker, part))

    def _place_local(self, X, da) -> None:
        import dask

        blocks = X.to_delayed().ravel().tolist()
        self._blocks = list(dask.compute(*blocks, scheduler="threads"))
        self._groups = [(None, part) for part in
                        _split(list(range(len(self._blocks))), os.cpu_count() or 1)]

    # -- map and reduce

    def _map(self, func: Callable, *args) -> list:
        """``func(*args, *chunks)`` per group of chunks; the per-chunk results in chunk order."""
        if self.client is None:
            import dask

            tasks = [dask.delayed(func, pure=False)(*args, *[self._blocks[i] for i in idx])
                     for _, idx in self._groups]
            results = list(dask.compute(*tasks, scheduler="threads"))
        else:
            futures = [
                self.client.submit(func, *args, *[self._blocks[i] for i in idx], workers=[w],
                                   allow_other_workers=True, pure=False)
                for w, idx in self._groups
            ]
            results = self.client.gather(futures)
        out: list = [None] * len(self._blocks)
        for (_, idx), per_chunk in zip(self._groups, results):
            for i, r in zip(idx, per_chunk):
                out[i] = r
        return out

    def statistics(self, params: MixtureParams) -> BatchStatistics:
        """:class:`~streamgmm.core.em.BatchStatistics` of the whole array under ``params``."""
        scorer = make_scorer(params, self.shift)
        moments, ll = _add_partials(*self._map(_group_moments, params, self.shift))

        def exact(means, components):
            return _add_partials(*self._map(_group_scatter, params, self.shift, means,
                                            components))

        return finish_statistics(moments, ll, float(self.n_points), scorer, exact)

    def sample(self, size: int, random_state: np.random.RandomState) -> np.ndarray:
        """Up to ``size`` distinct rows drawn by ``random_state``, gathered in row order."""
        n = self.n_points
        if size >= n:
            rows = np.arange(n)
        else:
            rows = np.unique(random_state.randint(0, n, size=size))
        bounds = np.concatenate([[0], np.cumsum(self._rows)])
        parts = []
        for i, block in enumerate(self._blocks):
            lo, hi = np.searchsorted(rows, [bounds[i], bounds[i + 1]])
            if hi > lo:
                local = rows[lo:hi] - bounds[i]
                if self.client is None:
                    parts.append(_take(block, local))
                else:
                    parts.append(self.client.submit(_take, block, local, pure=False))
        if self.client is not None:
            parts = self.client.gather(parts)
        return np.vstack(parts) if parts else np.empty((0, self.n_features))

    @property
    def n_tasks(self) -> int:
        """Tasks per EM iteration (one per worker thread holding chunks)."""
        return len(self._groups)


def _split(items: list, parts: int) -> list[list]:
    parts = max(1, min(parts, len(items)))
    size = math.ceil(len(items) / parts)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _current_client():
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client in this process
        return None


# ------------------------------------------------------------------------------ the estimator


def fit_dask(gm, X, *, client=None, progress: Callable[[int, float, float], None] | None = None):
    """``GaussianMixture.fit`` on a dask array (called by the estimator; returns ``X``).

    Parameters
    ----------
    gm : GaussianMixture
    X : dask.array.Array of shape (n, d)
    client : distributed.Client, optional
    progress : callable, optional
        ``progress(n_iter, lower_bound, seconds)`` after every iteration.
    """
    from streamgmm.core.online import OnlineEM
    from streamgmm.estimator import _check_random_state

    gm._check_hyperparameters()
    data = DaskData(X, client)
    n, d = data.n_points, data.n_features
    if n < 2 or d < 1:
        raise ValueError(f"Found array with {n} sample(s) (shape=({n}, {d})) while a minimum "
                         "of 2 is required.")
    if n < gm.n_components:
        raise ValueError(
            "Expected n_samples >= n_components but got "
            f"n_components = {gm.n_components}, n_samples = {n}"
        )
    gm.n_features_in_ = d
    gm._check_initial_parameters(d)
    random_state = _check_random_state(gm.random_state)
    do_init = not (gm.warm_start and hasattr(gm, "converged_"))
    # The initialisation sample: seeded, bounded, the only rows ever gathered here.
    sample = data.sample(max(INIT_SAMPLE, gm.n_components), random_state)

    def run(start: MixtureParams, previous: float) -> EMResult:
        t0 = time.perf_counter()
        last: list[float] = [float("nan")]

        def statistics(params: MixtureParams) -> BatchStatistics:
            batch = data.statistics(params)
            last[0] = batch.mean_log_likelihood
            return batch

        def callback(n_iter: int, change: float) -> None:
            if gm.verbose:
                gm._verbose_callback(n_iter, change)
            if progress is not None:
                progress(n_iter, last[0], time.perf_counter() - t0)

        return em_loop(statistics, start, reg_covar=gm.reg_covar, tol=gm.tol,
                       max_iter=gm.max_iter, lower_bound=previous, callback=callback)

    gm._em_over_inits(lambda rs: gm._initial_params(sample, rs), run, random_state,
                      do_init, stacklevel=4)
    params = gm._params
    # The online state continues from the batch fit: the initialisation sample as the
    # retained points, the rest of the data as a prior of that many points.
    online = OnlineEM(gm._online_settings(), d, seed=gm._online_seed())
    online.start(params, fitted_on=sample, prior_points=max(n - len(sample), 0), n_seen=n)
    gm._online = online
    gm._sync_online_attributes()
    return X


# ------------------------------------------------------------------------------ shards


def shard_paths(inputs: Sequence[str]) -> list[str]:
    """Shard files named by globs, directories (their ``.npy``/``.parquet``) or paths.

    Raises
    ------
    ValueError
        If nothing matches, or a file is neither ``.npy`` nor ``.parquet``.
    """
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.npy"))
                           + glob.glob(os.path.join(item, "*.parquet")))
            if not found:
                raise ValueError(f"no .npy or .parquet shards in directory {item}")
        elif any(c in item for c in "*?["):
            found = sorted(glob.glob(item))
            if not found:
                raise ValueError(f"no shard matches {item!r}")
        else:
            if not os.path.exists(item):
                raise ValueError(f"no such file: {item}")
            found = [item]
        for path in found:
            if not path.endswith((".npy", ".parquet")):
                raise ValueError(f"{path}: shards must be .npy or .parquet files")
        paths.extend(found)
    return paths


def _shard_shape(path: str) -> tuple[int, int, np.dtype]:
    """Rows, columns and dtype from the file's header alone (no data read)."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"{path}: reading .parquet shards needs pyarrow "
                             "(pip install pyarrow)") from None
        meta = pq.read_metadata(path)
        return meta.num_rows, meta.num_columns, np.dtype(np.float64)
    try:
        X = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
    if X.ndim not in (1, 2):
        raise ValueError(f"{path}: expected points of shape (n, d), got shape {X.shape}")
    rows, cols = (X.shape[0], 1) if X.ndim == 1 else X.shape
    return int(rows), int(cols), X.dtype


def open_shards(paths: Sequence[str]):
    """One dask array over the shards, a chunk per shard, each read by a worker task.

    ``.npy`` shards are memory-mapped inside the task (``np.load(path, mmap_mode="r")``);
    only their headers are read here, to learn the shapes.

    Raises
    ------
    ValueError
        If the shards disagree on the dimension or one cannot be read.
    """
    da = require_dask()
    import dask

    chunks = []
    dim = None
    for path in paths:
        rows, cols, dtype = _shard_shape(path)
        if dtype.kind not in "fiub":
            raise ValueError(f"{path}: points must be numeric, got dtype {dtype}")
        if dim is None:
            dim = cols
        elif cols != dim:
            raise ValueError(f"{path}: shards disagree on the dimension ({cols} vs {dim})")
        if rows == 0:
            continue
        block = dask.delayed(_load_shard, pure=True)(os.path.abspath(path))
        chunks.append(da.from_delayed(block, shape=(rows, cols), dtype=dtype))
    if not chunks:
        raise ValueError("the shards hold no points")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return da.concatenate(chunks, axis=0)


def fit_shards(
    inputs: Sequence[str],
    gm,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    connect_timeout: float = 30.0,
) -> dict:
    """Fit ``gm`` by batch EM to shard files on a cluster; what ``streamgmm fit`` runs.

    Parameters
    ----------
    inputs : sequence of str
        Globs, directories or paths of ``.npy`` (memory-mapped) or ``.parquet`` shards. The
        workers open them by absolute path, so a remote cluster needs them on a shared
        file system at the same path.
    gm : GaussianMixture
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:8786``); default a ``LocalCluster``
        of ``n_workers`` single-threaded worker processes on this machine.
    n_workers : int, optional
        Workers of the local cluster (default: the machine's cores).
    progress : callable, optional
        ``progress(n_iter, lower_bound, seconds)`` after every iteration.
    connect_timeout : float
        Seconds to wait for the scheduler.

    Returns
    -------
    dict
        ``n_points``, ``n_shards``, ``n_workers`` and ``seconds`` (of EM, after placement).

    Raises
    ------
    ValueError
        For unreadable or inconsistent shards or data EM cannot fit.
    ConnectionError
        If the scheduler cannot be reached.
    """
    paths = shard_paths(inputs)
    X = open_shards(paths)
    workers, seconds = fit_on_cluster(gm, X, scheduler=scheduler, n_workers=n_workers,
                                      progress=progress, connect_timeout=connect_timeout)
    return {"n_points": int(X.shape[0]), "n_shards": len(paths), "n_workers": workers,
            "seconds": seconds}


def fit_on_cluster(
    gm,
    X,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    connect_timeout: float = 30.0,
) -> tuple[int, float]:
    """:func:`fit_dask` of the dask array ``X`` on a scheduler or a local cluster.

    Parameters are those of :func:`fit_shards`'s cluster. Returns the number of workers and
    the seconds of EM (after placement).

    Raises
    ------
    ConnectionError
        If the scheduler cannot be reached.
    """
    distributed = _require_distributed()
    cluster = None
    try:
        if scheduler:
            try:
                client = distributed.Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot reach the scheduler {scheduler}: {exc}") from None
        else:
            cluster = distributed.LocalCluster(
                n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                # (":0": its HTTP server on a free port, never clashing with 8787)
                processes=True, dashboard_address=":0",
            )
            client = distributed.Client(cluster)
        with client:
            workers = len(client.scheduler_info()["workers"])
            t0 = time.perf_counter()
            fit_dask(gm, X, client=client, progress=progress)
            seconds = time.perf_counter() - t0
    finally:
        if cluster is not None:
            cluster.close()
    return workers, seconds
