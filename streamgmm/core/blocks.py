"""Retained blocks: the memory of incremental (memoized) EM, as a reservoir or a window.

Incremental EM (Neal & Hinton 1998) keeps the statistics of every block of data under the
parameters of the last time the block was scored; the model's statistics are their weighted
sum. Re-scoring a block replaces its statistics; with every block re-scored under the same
parameters, one M-step of the sum is one iteration of batch EM on the retained data.

A :class:`Block` holds the retained rows of one or more consecutive batches, the normalised
statistics of the points it stands for, and its weight in the model::

    S = sum_b w_b s_b / sum_b w_b          (s_b normalised: counts sum to one)

The weights follow the step schedule: when a batch arrives with step ``eta``, every weight
is multiplied by ``1 - eta`` and the new block gets ``eta``. With ``eta = m / n`` (the batch's
share of the points, the default) every point weighs the same, as in batch EM.

:class:`RetainedBlocks` bounds the rows kept, by one of two policies:

- ``"reservoir"``: a uniform sample of the whole stream. Every block keeps about
  ``capacity / n_seen`` of the points it stands for (its rows are thinned uniformly as the
  stream grows), so the rows are a uniform sample and each block's statistics still estimate
  those of all its points.
- ``"window"``: the latest ``capacity`` points. The oldest rows leave, and their statistics
  with them: a model that forgets a place it no longer sees.

Blocks without rows (a loaded prior, the newborn of a re-seeded component) take part in the
sum but are never re-scored; a newborn is dropped once every block with rows has been
re-scored since it was made (its points are then in the blocks' own statistics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from streamgmm.core.suffstats import SufficientStats

RETAIN_KINDS = ("reservoir", "window")

# Blocks kept at most: re-scoring is done block by block, and merging neighbours keeps the
# per-step bookkeeping (one pooled sum of all blocks) small whatever the stream's length.
MAX_BLOCKS = 32
# Blocks scored fewer times than this are re-scored before the stalest ones.
RESCORE_PRIORITY = 2
# Rows the online EM re-scores at most: a nested uniform subsample of the retained rows
# (:meth:`RetainedBlocks.scored_rows`). Incremental EM climbs one pass at a time, and a
# pass over the 200,000 rows a daemon retains for its refits costs 24 passes over 8,192:
# measured on sensor-ordered streams (benchmarks/README.md), re-scoring more rows than this
# left the model further from batch EM at the same effort, not closer.
SCORED_ROWS = 8192


@dataclass
class Block:
    """Rows of the stream with their statistics under the parameters last used to score them.

    Attributes
    ----------
    rows : ndarray of shape (n, d)
        The retained rows (a uniform sample of the block's points for a reservoir).
    stats : SufficientStats
        Normalised statistics (counts sum to one) of the points the block stands for.
    weight : float
        Its weight in the model's statistics.
    points : float
        Stream points it stands for.
    log_likelihood : float
        Mean log-likelihood per point when last scored.
    scored_at : int
        When it was last scored (the owner's scoring clock).
    expires : int or None
        For a block without rows: ``None`` (a prior, kept) or the update number of the move
        that made it (dropped once every block with rows was scored after it).
    """

    rows: np.ndarray
    stats: SufficientStats
    weight: float
    points: float
    log_likelihood: float
    scored_at: int
    expires: int | None = None
    times_scored: int = 1

    def __len__(self) -> int:
        return len(self.rows)


class RetainedBlocks:
    """The retained blocks of one stream, bounded to ``capacity`` rows.

    Parameters
    ----------
    kind : {"reservoir", "window"}
    capacity : int
        Rows kept at most.
    n_features : int
    """

    def __init__(self, kind: str, capacity: int, n_features: int) -> None:
        if kind not in RETAIN_KINDS:
            raise ValueError(f"retain must be one of {RETAIN_KINDS}, got {kind!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.kind = kind
        self.capacity = int(capacity)
        self.n_features = int(n_features)
        self.blocks: list[Block] = []
        self.n_offered = 0  # stream points ever added
        self._total_scored: tuple[int, int] | None = None  # (rows version, total_scored)
        self._n_rows: tuple[int, int] | None = None  # (rows version, len(self))
        self._rows_version = 0  # changes whenever a block's rows do
        self._rows_cache: tuple[int, np.ndarray] | None = None  # (rows version, all rows)
        self._rows_buffer: np.ndarray | None = None  # the memory of _rows_cache's rows
        self._stats_cache: tuple | None = None  # (statistics, their stacked arrays): pooled

    def __getstate__(self) -> dict:
        # The caches are derived from the blocks: a pickled estimator leaves them out (the
        # rows' concatenation would double the size of its retained points).
        state = self.__dict__.copy()
        state["_rows_cache"] = state["_rows_buffer"] = state["_stats_cache"] = None
        return state

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        # Asked several times a step; the rows change only when the version does.
        cached = getattr(self, "_n_rows", None)  # (absent from pickles of older versions)
        if cached is not None and cached[0] == self._rows_version:
            return cached[1]
        n_rows = sum(b.rows.shape[0] for b in self.blocks)
        self._n_rows = (self._rows_version, n_rows)
        return n_rows

    @property
    def points(self) -> np.ndarray:
        """Every retained row, oldest block first (a new array)."""
        rows = [b.rows for b in self.blocks if len(b)]
        return np.vstack(rows) if rows else np.empty((0, self.n_features))

    @property
    def scored_share(self) -> float:
        """Share of every block's rows that the online EM scores (:data:`SCORED_ROWS`)."""
        n = len(self)
        return 1.0 if n <= SCORED_ROWS else SCORED_ROWS / n

    def n_scored(self, block: Block, share: float | None = None) -> int:
        """Rows of ``block`` that :meth:`scored_rows` returns."""
        n = len(block)
        share = self.scored_share if share is None else share
        return n if share >= 1.0 else min(n, max(1, math.ceil(n * share)))

    def scored_rows(self, block: Block, share: float | None = None) -> np.ndarray:
        """The rows of ``block`` that the online EM scores: a uniform subsample of them.

        A reservoir's rows are in a random order (:meth:`add`), so a prefix is a uniform
        subsample (and the rows scored later, when the share is smaller, a subset of it); a
        window's are in stream order, so it takes evenly spaced rows.
        """
        n, k = len(block), self.n_scored(block, share)
        if k >= n:
            return block.rows
        if self.kind == "window":
            return block.rows[(np.arange(k) * n) // k]
        return block.rows[:k]

    @property
    def total_scored(self) -> int:
        """Rows a pass of the online EM over every block scores."""
        cached = self._total_scored
        if cached is not None and cached[0] == self._rows_version:
            return cached[1]
        share = self.scored_share
        total = sum(self.n_scored(b, share) for b in self.blocks)
        self._total_scored = (self._rows_version, total)
        return total

    @property
    def represented(self) -> float:
        """Stream points the blocks with rows stand for."""
        return float(sum(b.points for b in self.blocks if len(b)))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` retained rows drawn uniformly with replacement."""
        total = len(self)
        if total == 0 or n <= 0:
            return np.empty((0, self.n_features))
        # Sorted, so that the rows come out oldest block first.
        picks = np.sort(rng.integers(0, total, size=n))
        return np.take(self._concatenated(), picks, axis=0)

    def _concatenated(self) -> np.ndarray:
        """Every retained row in one array, kept until a block's rows change.

        The moves draw several samples per step; gathering them from one array costs a
        tenth of gathering them block by block.
        """
        cached = self._rows_cache
        if cached is not None and cached[0] == self._rows_version:
            return cached[1]
        arrays = [b.rows for b in self.blocks if len(b)]
        n = sum(len(a) for a in arrays)
        # Into the last concatenation's memory when it is large enough (samples are copies,
        # so nothing else holds it): a daemon's 200,000 rows are 4.8 MB, and a fresh array
        # at every step is an mmap and page faults at every step.
        buffer = self._rows_buffer
        if buffer is None or len(buffer) < n:
            buffer = self._rows_buffer = np.empty((n + n // 8, self.n_features))
        joined = buffer[:n]
        if arrays:
            np.concatenate(arrays, out=joined)
        self._rows_cache = (self._rows_version, joined)
        return joined

    def pooled(self) -> SufficientStats:
        """The model's statistics: the weighted sum of every block's, normalised."""
        kept = [b for b in self.blocks if b.weight > 0]
        # As SufficientStats.pool([b.stats.scale(b.weight) ...]), without an object per
        # block and without restacking the blocks whose statistics did not change since the
        # last call (an M-step follows every eighth of a re-scoring pass).
        stats = [b.stats for b in kept]
        cached = self._stats_cache
        if cached is None or len(cached[0]) != len(stats):
            counts = np.stack([st.counts for st in stats])
            means = np.stack([st.means for st in stats])
            scatter = np.stack([st.scatter for st in stats])
        else:
            old, counts, means, scatter = cached
            for i, (before, now) in enumerate(zip(old, stats)):
                if before is not now:  # statistics are immutable: replaced, never edited
                    counts[i], means[i], scatter[i] = now.counts, now.means, now.scatter
        self._stats_cache = (stats, counts, means, scatter)
        weights = np.array([b.weight for b in kept])
        return SufficientStats.pool_arrays(kept[0].stats.covariance_type,
                                           counts * weights[:, None], means,
                                           scatter).normalized()

    def history_log_likelihood(self) -> float:
        """Weighted mean log-likelihood of the blocks with rows, as last scored."""
        scored = [b for b in self.blocks if len(b) and np.isfinite(b.log_likelihood)]
        total = sum(b.weight for b in scored)
        if not scored or total <= 0:
            return float("nan")
        return float(sum(b.weight * b.log_likelihood for b in scored) / total)

    def rescore_order(self) -> list[Block]:
        """The blocks with rows, in the order the online EM re-scores them.

        Blocks scored fewer than ``RESCORE_PRIORITY`` times come first (the newest points,
        scored under parameters that had not seen them: a second look is worth most
        there), then the stalest. A re-scored block becomes the most recently scored one
        and, scored at least twice, goes behind all the others: while the rows do not
        change, the order is this list over and over.
        """
        scored = [b for b in self.blocks if b.rows.shape[0]]
        # sorted() is stable: equal keys keep the blocks' order.
        return sorted(scored, key=lambda b: (min(b.times_scored, RESCORE_PRIORITY),
                                             b.scored_at))

    # ------------------------------------------------------------------ changing

    def decay(self, factor: float) -> None:
        """Multiply every weight by ``factor`` (``1 - eta`` of a new step)."""
        for b in self.blocks:
            b.weight *= factor

    def add(self, block: Block, rng: np.random.Generator) -> None:
        """Append a new block (rows are copied), then bound the rows and the block count.

        A reservoir stores each block's rows in a uniformly random order, so that thinning
        is keeping a prefix (:meth:`_thin`): a uniform subset at no cost per step.
        """
        self.n_offered += int(block.points)
        rows = np.asarray(block.rows, dtype=np.float64)
        if self.kind == "window":
            rows = rows.copy()  # the window keeps its rows in stream order
        else:
            order = rng.permutation(len(rows))
            # Only the prefix that _thin will keep is gathered (a whole sweep of 131,072
            # points keeps a few thousand): the same rows in the same order.
            rate = self._thinning_rate(len(rows), block.points) if len(rows) else None
            if rate is not None:
                order = order[: int(block.points * rate)]
            rows = rows[order]
        self.blocks.append(replace(block, rows=rows))
        self._rows_version += 1  # len(self) below counts the new rows
        if self.kind == "window":
            self._evict()
        else:
            self._thin()
        self._merge_neighbours(rng)
        self._rows_version += 1  # the rows changed: total_scored and _concatenated follow

    def add_virtual(self, stats: SufficientStats, weight: float, points: float,
                    expires: int | None, now: int) -> None:
        """A block without rows: a loaded prior (``expires=None``) or a re-seeded newborn."""
        self.blocks.append(Block(np.empty((0, self.n_features)), stats, float(weight),
                                 float(points), float("nan"), now, expires))

    def drop_expired(self) -> None:
        """Drop the newborns whose points every block with rows now carries."""
        scored = [b.scored_at for b in self.blocks if len(b)]
        oldest = min(scored) if scored else None
        self.blocks = [b for b in self.blocks if b.expires is None or len(b)
                       or (oldest is not None and oldest <= b.expires)]

    def transform(self, fn) -> None:
        """Apply ``fn(stats) -> stats`` to the statistics of every block (a merge move)."""
        for b in self.blocks:
            b.stats = fn(b.stats)

    def _evict(self) -> None:
        """Window: drop the oldest rows beyond the capacity, with their statistics."""
        excess = len(self) - self.capacity
        i = 0
        while excess > 0 and i < len(self.blocks):
            b = self.blocks[i]
            if not len(b):
                i += 1
                continue
            if len(b) <= excess:
                excess -= len(b)
                self.blocks.pop(i)
            else:
                keep = len(b) - excess
                share = keep / len(b)
                b.rows = b.rows[-keep:]
                b.weight *= share
                b.points *= share
                excess = 0

    def _thinning_rate(self, new_rows: int = 0, new_points: float = 0.0) -> float | None:
        """``capacity / n_represented``, the share of its points every block keeps, once a
        block of ``new_rows`` rows standing for ``new_points`` points is added; ``None``
        while the rows fit."""
        total = self.represented + new_points
        if len(self) + new_rows <= self.capacity or total <= 0:
            return None
        return self.capacity / total

    def _thin(self) -> None:
        """Reservoir: every block keeps ``capacity / n_represented`` of its points.

        The rows are in a uniformly random order (:meth:`add`), so the first ``keep`` of them
        are a uniform subset, and a subset of the subset kept before.
        """
        rate = self._thinning_rate()
        if rate is None:
            return
        for b in self.blocks:
            keep = int(b.points * rate)
            if len(b) > keep:
                # A copy once the prefix is small, so a thinned block does not hold on to
                # the rows it dropped (a view costs nothing while most of them are kept).
                b.rows = b.rows[:keep].copy() if 2 * keep < len(b.rows) else b.rows[:keep]

    def _merge_neighbours(self, rng: np.random.Generator) -> None:
        """Merge adjacent blocks with rows until at most :data:`MAX_BLOCKS` remain (a
        reservoir's merged rows are shuffled again, so that a prefix stays uniform)."""
        while sum(1 for b in self.blocks if len(b)) > MAX_BLOCKS:
            idx = [i for i, b in enumerate(self.blocks) if len(b)]
            sizes = [len(self.blocks[a]) + len(self.blocks[b]) for a, b in zip(idx, idx[1:])]
            k = int(np.argmin(sizes))
            a, b = self.blocks[idx[k]], self.blocks[idx[k + 1]]
            w = a.weight + b.weight
            if w > 0:
                stats = SufficientStats.pool([a.stats.scale(a.weight),
                                              b.stats.scale(b.weight)]).normalized()
                ll = (a.weight * a.log_likelihood + b.weight * b.log_likelihood) / w
            else:
                stats = SufficientStats.pool([a.stats.scale(a.points),
                                              b.stats.scale(b.points)]).normalized()
                ll = a.log_likelihood
            rows = np.vstack([a.rows, b.rows])
            if self.kind != "window":
                rows = rows[rng.permutation(len(rows))]
            self.blocks[idx[k]] = Block(rows, stats, w,
                                        a.points + b.points, ll,
                                        min(a.scored_at, b.scored_at), None,
                                        min(a.times_scored, b.times_scored))
            self.blocks.pop(idx[k + 1])

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict:
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "n_features": self.n_features,
            "n_offered": int(self.n_offered),
            # A reservoir block's rows are in a random order (add()); states written before
            # that kept them in stream order and are shuffled on load (from_state).
            "rows_shuffled": self.kind == "reservoir",
            "blocks": [{
                "rows": b.rows.copy(), "stats": b.stats.to_state(), "weight": b.weight,
                "points": b.points, "log_likelihood": b.log_likelihood,
                "scored_at": b.scored_at, "expires": b.expires,
                "times_scored": b.times_scored,
            } for b in self.blocks],
        }

    @classmethod
    def from_state(cls, state: Mapping) -> RetainedBlocks:
        obj = cls(str(state["kind"]), int(state["capacity"]), int(state["n_features"]))
        obj.n_offered = int(state["n_offered"])
        obj.blocks = [Block(
            np.array(b["rows"], dtype=np.float64).reshape(-1, obj.n_features),
            SufficientStats.from_state(b["stats"]), float(b["weight"]), float(b["points"]),
            float(b["log_likelihood"]), int(b["scored_at"]),
            None if b["expires"] is None else int(b["expires"]), int(b["times_scored"]),
        ) for b in state["blocks"]]
        if len(obj) > obj.capacity + MAX_BLOCKS:
            raise ValueError("retained rows exceed the capacity")
        if obj.kind == "reservoir" and not state.get("rows_shuffled", False):
            # Written when reservoir rows were kept in stream order: a prefix of them would
            # be the oldest points of each block, not a uniform subset. Shuffled once, by a
            # fixed generator, so that the same state always loads the same.
            rng = np.random.default_rng(0)
            for b in obj.blocks:
                b.rows = b.rows[rng.permutation(len(b.rows))]
        return obj
