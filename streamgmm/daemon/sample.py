"""The points beside a published update: a uniform sample of those absorbed since the last one.

Publishing step of socket -> codec -> accounting -> model -> **publisher**. A model with
``sample_points = N`` (an extension key, docs/protocol.md) keeps a reservoir of at most ``N``
of the points it absorbed since its previous update; the daemon adds it to the next published
update as ``sample`` (and ``sample_of``, how many points it was drawn from), then starts a new
one. Viewers draw it beside the ellipsoids (``streamgmm watch --foxglove``/``--rerun``).

The sample has its own seeded generator, never the model's: the online EM draws the same
random numbers, and ends in the same parameters, whether ``sample_points`` is set or not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PointSample", "SAMPLE_SEED_TAG"]

# Mixed with the model's seed, so that the sample's stream of random numbers is its own.
SAMPLE_SEED_TAG = 0x5A4D_5031


class PointSample:
    """A bounded uniform sample (reservoir) of the points absorbed since the last update.

    Parameters
    ----------
    capacity : int
        Largest sample kept (the model's ``sample_points``), at least 1.
    dim : int
        Dimension of the points.
    seed : int
        The model's seed; the generator is seeded with ``(seed, SAMPLE_SEED_TAG)``.

    Notes
    -----
    Reservoir sampling (Vitter's algorithm R), vectorised per batch: after ``n`` points every
    subset of ``min(n, capacity)`` of them is equally likely to be the sample. Memory is
    ``capacity * dim`` floats whatever the rate; the cost is one uniform draw per point
    beyond the first ``capacity`` of an interval.
    """

    def __init__(self, capacity: int, dim: int, seed: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng([int(seed), SAMPLE_SEED_TAG])
        self.buffer = np.empty((self.capacity, int(dim)), dtype=np.float32)
        self.seen = 0  # points offered since the last take()

    def add(self, X: np.ndarray) -> None:
        """Offer a batch of absorbed points, shape ``(n, dim)``."""
        n = len(X)
        if n == 0:
            return
        fill = min(max(self.capacity - self.seen, 0), n)
        if fill:
            self.buffer[self.seen:self.seen + fill] = X[:fill]
        rest = n - fill
        if rest:
            # Point number j (0-based over the interval) replaces a random slot with
            # probability capacity / (j + 1). Assigning in order lets a later point
            # overwrite an earlier one in the same slot, as the sequential algorithm does.
            j = np.arange(self.seen + fill, self.seen + n, dtype=np.float64)
            keep = self.rng.random(rest) * (j + 1) < self.capacity
            count = int(np.count_nonzero(keep))
            if count:
                slots = self.rng.integers(0, self.capacity, size=count)
                self.buffer[slots] = X[fill:][keep]
        self.seen += n

    def take(self) -> tuple[np.ndarray, int] | None:
        """The sample and how many points it was drawn from, then start afresh.

        Returns
        -------
        tuple of (numpy.ndarray of shape (m, dim), int) or None
            ``m = min(seen, capacity)`` float32 rows; ``None`` when no point came since the
            last call.
        """
        if self.seen == 0:
            return None
        m = min(self.seen, self.capacity)
        out = self.buffer[:m].copy(), self.seen
        self.seen = 0
        return out
