"""Message accounting: daemon-wide counters and per-source sequence tracking.

Step two of socket -> codec -> **accounting** -> model -> publisher: every point message is
counted here (received, applied, rejected by reason, rows dropped), and each publisher's
``seq`` is followed to count lost messages and restarts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Counters", "RejectionLog", "SourceTracker"]

# Per-source sequence trackers kept (least recently seen evicted first).
_MAX_SOURCES = 10_000
# A forward jump of seq beyond this is a publisher that restarted with another numbering
# (or a hostile one), not billions of lost messages.
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
    points_applied: int = _counter("Points folded into the models.")
    rows_dropped_nonfinite: int = _counter("Rows dropped because they held NaN or Inf.")
    rows_dropped_range: int = _counter(
        "Rows dropped because a coordinate exceeded max_abs_coordinate.")
    messages_lost: int = _counter("Messages missing from per-source sequence numbers.")
    publisher_restarts: int = _counter("Sources whose sequence number went back.")
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


class SourceTracker:
    """Last ``seq`` per publisher: gaps are losses, a step back is a restart."""

    def __init__(self, capacity: int = _MAX_SOURCES) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self.capacity = capacity

    def observe(self, source: str, seq: int) -> tuple[int, bool]:
        """Returns ``(messages lost before this one, publisher restarted)``."""
        last = self._last.pop(source, None)
        self._last[source] = seq
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)
        if last is None:
            return 0, False
        if seq <= last or seq - last - 1 > _MAX_SEQ_GAP:
            return 0, True
        return seq - last - 1, False


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
