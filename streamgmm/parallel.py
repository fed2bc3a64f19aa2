"""Every core for the E-step: a thread pool for the library and the daemon.

The E-step of a batch is split into row chunks of a fixed size; a pool scores the chunks on
its threads and the moments are added in chunk order, so ``threads`` changes the speed and
nothing else: the model is the same bit for bit as without a pool under one BLAS thread (a
multi-threaded BLAS may split a product differently, a change in the last bit). numpy and
BLAS release the GIL in the products and exponentials that dominate a chunk; each worker
gets one BLAS thread.

In the library::

    import streamgmm
    with streamgmm.threads(4):
        gm.fit(X)           # batch EM, chunks scored on 4 threads
        gm.partial_fit(Y)   # the batch, and the retained blocks it re-scores

In the daemon: ``[service] threads = N`` (default 1; docs/performance.md says why).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["ThreadPool", "available_cores", "current_pool", "threads", "using"]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class ThreadPool:
    """``threads`` workers with an ordered :meth:`map` (a :class:`~.core.parallel.ChunkPool`).

    With ``threads=1`` nothing is started and :meth:`map` runs in the caller's thread.
    """

    def __init__(self, threads: int) -> None:
        threads = int(threads)
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self._executor = (ThreadPoolExecutor(threads, thread_name_prefix="streamgmm-estep")
                          if threads > 1 else None)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, on the pool's threads, in input order."""
        if self._executor is None:
            return [fn(item) for item in items]
        return list(self._executor.map(fn, items))

    def close(self) -> None:
        """Stop the workers (after the tasks already given)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __repr__(self) -> str:
        return f"ThreadPool(threads={self.threads})"


_CURRENT: contextvars.ContextVar[ThreadPool | None] = contextvars.ContextVar(
    "streamgmm_pool", default=None)


def current_pool() -> ThreadPool | None:
    """The pool of the innermost :func:`threads` block of this thread, if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(pool: ThreadPool | None) -> Iterator[ThreadPool | None]:
    """Make ``pool`` the current pool inside the block (it is not closed after it).

    For a long-lived pool such as the daemon's; :func:`threads` makes and closes its own.
    """
    token = _CURRENT.set(pool)
    try:
        yield pool
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def threads(n: int | None = None) -> Iterator[ThreadPool]:
    """Run the estimators' E-steps inside the block on ``n`` threads.

    Parameters
    ----------
    n : int, optional
        Threads; default :func:`available_cores`. BLAS is held to one thread per worker
        inside the block (threadpoolctl), so ``n`` is the number of cores used.

    Yields
    ------
    ThreadPool
        The pool (also passed to :func:`streamgmm.core.em.run_em` and friends as ``pool``).

    Examples
    --------
    >>> import numpy as np, streamgmm
    >>> X = np.random.default_rng(0).normal(size=(20_000, 3))
    >>> with streamgmm.threads(2):
    ...     a = streamgmm.GaussianMixture(4, random_state=0).fit(X)
    >>> b = streamgmm.GaussianMixture(4, random_state=0).fit(X)
    >>> bool(np.allclose(a.means_, b.means_))  # bit for bit with one BLAS thread
    True
    """
    from threadpoolctl import threadpool_limits

    pool = ThreadPool(available_cores() if n is None else n)
    try:
        with using(pool), threadpool_limits(limits=1, user_api="blas"):
            yield pool
    finally:
        pool.close()
