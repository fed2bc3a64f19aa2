"""What the numerical core asks of a thread pool: a width and an ordered ``map``.

The core never starts threads itself; :mod:`streamgmm.parallel` provides a pool (and the
daemon's ``[service] threads``). Whatever pool scores the row chunks of an E-step, the chunks
and the order in which their results are added are fixed by the data alone, so the model is
the same bit for bit with any number of threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ChunkPool(Protocol):
    """A pool of ``threads`` workers whose ``map`` returns results in input order."""

    threads: int

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, computed on the pool's threads."""
        ...
