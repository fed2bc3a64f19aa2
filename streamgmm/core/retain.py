"""Bounded samples of a stream kept for refits: a uniform reservoir or a window of the latest.

Both hold at most ``capacity`` rows in one preallocated array, so memory is set by the
configuration and never by the length of the stream.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RETAIN_KINDS = ("reservoir", "window")


class Retained:
    """Base of the two retention policies: a fixed buffer plus a count of rows offered."""

    kind = ""

    def __init__(self, capacity: int, n_features: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._rows = np.empty((self.capacity, n_features), dtype=np.float64)
        self._size = 0
        self.n_offered = 0  # rows ever passed to add()

    def __len__(self) -> int:
        return self._size

    @property
    def points(self) -> np.ndarray:
        """The retained rows (a view; copy it before the next ``add``)."""
        return self._rows[: self._size]

    @property
    def represented(self) -> int:
        """How many stream points the retained rows stand for."""
        return self._size

    def add(self, X: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows drawn uniformly with replacement from the retained rows."""
        if self._size == 0 or n <= 0:
            return self._rows[:0]
        return self._rows[rng.integers(0, self._size, size=n)]

    def to_state(self) -> dict:
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "rows": self.points.copy(),
            "n_offered": int(self.n_offered),
            "cursor": int(getattr(self, "_cursor", 0)),
        }

    @staticmethod
    def from_state(state: Mapping) -> Retained:
        """Rebuild a reservoir or window saved by :meth:`to_state`."""
        rows = np.asarray(state["rows"], dtype=np.float64)
        cls = {"reservoir": Reservoir, "window": Window}[state["kind"]]
        obj = cls(int(state["capacity"]), rows.shape[1])
        if len(rows) > obj.capacity:
            raise ValueError("retained rows exceed the capacity")
        obj._rows[: len(rows)] = rows
        obj._size = len(rows)
        obj.n_offered = int(state["n_offered"])
        if isinstance(obj, Window):
            obj._cursor = int(state["cursor"]) % obj.capacity
        return obj


class Reservoir(Retained):
    """A uniform sample of every row ever added (Vitter's algorithm R, vectorised)."""

    kind = "reservoir"

    @property
    def represented(self) -> int:
        return self.n_offered

    def add(self, X: np.ndarray, rng: np.random.Generator) -> None:
        m = X.shape[0]
        free = min(self.capacity - self._size, m)
        if free > 0:
            self._rows[self._size : self._size + free] = X[:free]
            self._size += free
        rest = X[free:]
        if len(rest):
            # Row j of the stream (0-based) replaces a random slot with probability cap/(j+1).
            seen = self.n_offered + free + np.arange(len(rest))
            slots = rng.integers(0, seen + 1)
            keep = slots < self.capacity
            slots, rows = slots[keep], rest[keep]
            if len(slots):
                # When a slot is drawn twice in one batch, the later row wins, as in sequence.
                _, last = np.unique(slots[::-1], return_index=True)
                pick = len(slots) - 1 - last
                self._rows[slots[pick]] = rows[pick]
        self.n_offered += m


class Window(Retained):
    """The latest ``capacity`` rows (a ring buffer)."""

    kind = "window"

    def __init__(self, capacity: int, n_features: int) -> None:
        super().__init__(capacity, n_features)
        self._cursor = 0

    def add(self, X: np.ndarray, rng: np.random.Generator | None = None) -> None:
        m = X.shape[0]
        if m >= self.capacity:
            self._rows[:] = X[m - self.capacity :]
            self._size, self._cursor = self.capacity, 0
        else:
            end = self._cursor + m
            if end <= self.capacity:
                self._rows[self._cursor : end] = X
            else:
                split = self.capacity - self._cursor
                self._rows[self._cursor :] = X[:split]
                self._rows[: m - split] = X[split:]
            self._cursor = end % self.capacity
            self._size = min(self.capacity, self._size + m)
        self.n_offered += m


def make_retained(kind: str, capacity: int, n_features: int) -> Retained:
    """A :class:`Reservoir` or :class:`Window` by name."""
    if kind == "reservoir":
        return Reservoir(capacity, n_features)
    if kind == "window":
        return Window(capacity, n_features)
    raise ValueError(f"retain must be one of {RETAIN_KINDS}, got {kind!r}")
