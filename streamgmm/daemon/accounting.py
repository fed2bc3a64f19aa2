"""Message accounting: daemon-wide counters and per-source sequence tracking.

Step two of socket -> codec -> **accounting** -> model -> publisher: every point message is
counted here (received, applied, rejected by reason, rows dropped), and each publisher's
``seq`` is followed to count lost messages and restarts.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Counters", "ModelIngest", "RejectionLog", "SourceStats", "SourceTracker"]

# Per-source sequence trackers kept (least recently seen evicted first).
_MAX_SOURCES = 10_000
# A forward jump of seq of this many messages or more is a publisher that restarted with
# another numbering (or a hostile one), not billions of lost messages.
_MAX_SEQ_GAP = 2**32
# Counters are reported as msgpack integers (at most 2**64 - 1); they saturate below that.
_COUNTER_MAX = 2**63 - 1


def _counter(help_text: str) -> Any:
    return field(default=0, metadata={"help": help_text})


@dataclass
class Counters:
    """Daemon-wide message accounting, reported by the ``status`` request."""

    # The help texts are those of the Prometheus counters (streamgmm.daemon.metrics).
    messages_received: int = _counter("Point messages received on the ingest socket.")
    messages_applied: int = _counter("Point messages folded into at least one model.")
    points_applied: int = _counter(
        "Points of the applied messages, folded into the models (thinned ones included).")
    points_thinned: int = _counter(
        "Points of applied messages skipped by thinning under overload, summed over the "
        "models (part of points_applied: the absorbed rest of each message stood for them).")
    rows_dropped_nonfinite: int = _counter("Rows dropped because they held NaN or Inf.")
    rows_dropped_range: int = _counter(
        "Rows dropped because a coordinate exceeded max_abs_coordinate.")
    messages_lost: int = _counter("Messages missing from per-source sequence numbers.")
    publisher_restarts: int = _counter("Sources whose sequence number went back.")
    end_markers: int = _counter(
        "End-of-stream markers received (a publisher's last message, no points).")
    rejected: dict[str, int] = field(
        default_factory=dict, metadata={"help": "Point messages rejected, by reason."})

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def as_dict(self) -> dict:
        # Every field is a counter: a new one cannot be left out of the status reply.
        return _saturate(asdict(self))


def _saturate(counters: dict) -> dict:
    return {
        k: _saturate(v) if isinstance(v, dict) else min(v, _COUNTER_MAX)
        for k, v in counters.items()
    }


@dataclass
class SourceStats:
    """What one publisher (``source``) sent, as the daemon saw it; the ``source`` control
    request's reply. Counters add up over the source's whole life (restarts included), so a
    client compares two answers to learn what happened in between."""

    last_seq: int = -1
    messages_received: int = 0
    messages_applied: int = 0
    points_applied: int = 0
    # Of points_applied, those skipped by thinning under overload (summed over the models).
    points_thinned: int = 0
    messages_rejected: int = 0
    messages_lost: int = 0
    rows_dropped_nonfinite: int = 0
    restarts: int = 0
    # Copies of the message before them (the same seq and stamp), rejected as "dup".
    duplicates: int = 0
    # The seq of the last end marker received, and the first seq it said its run sent.
    end_seq: int = -1
    end_first_seq: int = -1
    # The stamp of the last message (not reported: it tells a copy from a restart).
    last_stamp: float = field(default=math.nan, repr=False)

    def as_dict(self) -> dict:
        fields = asdict(self)
        del fields["last_stamp"]
        return _saturate(fields)


class SourceTracker:
    """Per publisher: the last ``seq`` (gaps are losses, a step back is a restart) and the
    :class:`SourceStats` of its messages."""

    def __init__(self, capacity: int = _MAX_SOURCES) -> None:
        self._stats: OrderedDict[str, SourceStats] = OrderedDict()
        self.capacity = capacity

    def is_copy(self, source: str, seq: int, stamp: float) -> bool:
        """Is this message a copy of the source's last one (the same ``seq`` and ``stamp``)?

        A copy is counted (received, a duplicate) and goes no further. A ``seq`` that goes
        back, or repeats with another stamp, is a restart (:meth:`observe`): a publisher
        that starts again stamps its messages anew.
        """
        stats = self._stats.get(source)
        if stats is None or seq != stats.last_seq or stamp != stats.last_stamp:
            return False
        stats.messages_received += 1
        stats.duplicates += 1
        return True

    def observe(self, source: str, seq: int, stamp: float = math.nan) -> tuple[int, bool]:
        """Count one message; returns ``(messages lost before this one, publisher restarted)``."""
        stats, new = self._touch(source)
        last, stats.last_seq, stats.last_stamp = stats.last_seq, seq, stamp
        stats.messages_received += 1
        if new:
            return 0, False
        if seq <= last or seq - last - 1 >= _MAX_SEQ_GAP:
            stats.restarts += 1
            return 0, True
        stats.messages_lost += seq - last - 1
        return seq - last - 1, False

    def observe_end(self, source: str, seq: int, first_seq: int | None) -> tuple[int, bool]:
        """Count an end marker (seq ``seq``, the publisher's run began at ``first_seq``).

        Returns ``(messages lost, publisher restarted)`` like :meth:`observe`. When none of
        the run's messages arrived (the source is new, or the marker steps back below the
        previous run's numbers), the marker says how many there were: ``seq - first_seq``
        are lost, which a sequence gap alone cannot show.
        """
        known = source in self._stats
        lost, restarted = self.observe(source, seq)
        stats = self._stats[source]
        stats.messages_received -= 1  # a marker is not a message of points
        if (first_seq is not None and 0 <= first_seq <= seq < first_seq + _MAX_SEQ_GAP
                and (not known or restarted)):
            lost += seq - first_seq
            stats.messages_lost += seq - first_seq
        stats.end_seq, stats.end_first_seq = seq, -1 if first_seq is None else first_seq
        return lost, restarted

    def stats(self, source: str) -> SourceStats | None:
        """The record of ``source``, or None when it never sent (or was forgotten)."""
        return self._stats.get(source)

    def _touch(self, source: str) -> tuple[SourceStats, bool]:
        stats = self._stats.pop(source, None)
        new = stats is None
        if new:
            stats = SourceStats()
        self._stats[source] = stats
        if len(self._stats) > self.capacity:
            self._stats.popitem(last=False)
        return stats, new


@dataclass
class ModelIngest:
    """Per model: rows of accepted messages the model's own rules dropped before it saw them."""

    rows_below_min_range: int = 0
    rows_beyond_max_range: int = 0


class RejectionLog:
    """Which rejections deserve a log line: the first of each (source, reason), then at most
    one per ``repeat_s`` for that pair, and at most ``burst`` lines a second in all.

    The counters say how many messages were rejected; the log says why, once, with the
    details a counter cannot hold (the dimension received, the topic). Bounded in memory: at
    most ``capacity`` pairs are remembered, the least recently logged forgotten first.
    """

    def __init__(self, repeat_s: float = 60.0, burst: int = 5,
                 capacity: int = 1000) -> None:
        self.repeat_s = repeat_s
        self.burst = burst
        self.capacity = capacity
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._suppressed: dict[tuple[str, str], int] = {}
        self._second = (0.0, 0)  # (start of the current one-second slot, lines in it)

    def should_log(self, source: str, reason: str, now: float | None = None) -> int | None:
        """``None`` when this rejection stays unlogged, else how many of the pair went
        unlogged since its previous line (0 for the first)."""
        now = time.monotonic() if now is None else now
        key = (source, reason)
        last = self._last.get(key)
        slot_start, lines = self._second
        if now - slot_start >= 1.0:
            slot_start, lines = now, 0
        if (last is not None and now - last < self.repeat_s) or lines >= self.burst:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            if len(self._suppressed) > self.capacity:
                self._suppressed.pop(next(iter(self._suppressed)))
            return None
        self._second = (slot_start, lines + 1)
        self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return self._suppressed.pop(key, 0)
