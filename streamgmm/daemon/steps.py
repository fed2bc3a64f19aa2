"""Which messages of a model's stream form one online step: decided by the messages alone.

The online model is a function of its steps (the batches given to ``partial_fit``) and its
seed. The daemon groups consecutive messages of a model into steps by a rule that reads only
the messages, never when they arrived or how busy the machine was, so the same recording
gives the same model bit for bit whether it was sent at its recorded pace or as fast as
possible, on a quiet machine or a loaded one:

- a model that publishes after every message (``publish_every_s = 0``) steps message by
  message;
- any other model groups consecutive messages into one step until the step holds
  ``limit`` rows (4,096 by default; the message that reaches it is the step's last), or
  until a message's stamp lies ``seconds`` (``publish_every_s``) or more after the step's
  first stamp, or before it: that message starts the next step. A live sensor thus gets an
  update about once per publishing period of sensor time, and a replay at full speed the
  same steps as live.

A step still open at the end of a stream is closed by the stream's end marker, by the daemon
stopping, or, for a stream that stops without an end marker, when no message has come for
a while (:func:`idle_close_s`: the one rule that reads the clock, for a stream that really
stopped; a sensor that sends in real time is closed by its stamps first).
:func:`group_steps` applies the rule to a list of messages, so that ``partial_fit`` can be
given the daemon's steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["IDLE_CLOSE_S", "StepGrouper", "group_steps", "idle_close_s"]

#: Seconds without a message after which a model's open step is closed (its stream stopped
#: without an end marker), at least; see :func:`idle_close_s`.
IDLE_CLOSE_S = 0.5


def idle_close_s(seconds: float) -> float:
    """Seconds without a message after which the open step of a model whose steps span
    ``seconds`` of sensor time is closed: at least :data:`IDLE_CLOSE_S`, and twice the span,
    so that a sensor sending in real time (or a recording replayed at its pace) is never
    closed by the clock before its stamps would close the step."""
    return max(IDLE_CLOSE_S, 2.0 * seconds)


class StepGrouper:
    """The grouping rule, one message at a time.

    Parameters
    ----------
    limit : int
        Rows at which a step closes.
    seconds : float
        Sensor time a step spans at most; ``0``: every message is a step of its own.

    Attributes
    ----------
    open_messages, open_rows : int
        The messages and rows of the step not yet closed.
    """

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = int(limit)
        self.seconds = float(seconds)
        self.open_messages = 0
        self.open_rows = 0
        self._first_stamp = 0.0

    def add(self, rows: int, stamp: float, *, thinned: bool = False) -> list[int]:
        """Take the next message; returns the sizes, in messages, of the steps it closes
        (in order: the open step it does not belong to, then its own step if it closes it).

        ``thinned``: a message the daemon's overload rule thinned (a decision of the
        machine's speed, made only under overload): it joins the open step whatever its
        stamp, up to ``limit`` rows, also in a model that steps message by message (an
        update per message cannot be kept up under overload; a step's fixed cost is then
        shared by its rows).
        """
        span = math.inf if thinned else self.seconds
        closed = []
        if self.open_messages and not (0.0 <= stamp - self._first_stamp < span):
            closed += self.close()
        if not self.open_messages:
            self._first_stamp = stamp
        self.open_messages += 1
        self.open_rows += rows
        if span == 0 or self.open_rows >= self.limit:
            closed += self.close()
        return closed

    def close(self) -> list[int]:
        """Close the open step: ``[its messages]``, or ``[]`` when none is open."""
        if not self.open_messages:
            return []
        closed = [self.open_messages]
        self.open_messages = self.open_rows = 0
        return closed


def group_steps(batches: Sequence[np.ndarray], stamps: Sequence[float], *, limit: int = 4096,
                seconds: float = 0.1) -> list[np.ndarray]:
    """The daemon's steps of a model's messages: the batches ``partial_fit`` is given.

    Parameters
    ----------
    batches : sequence of ndarray of shape (n_i, d)
        The messages' points in order (after the daemon's row filters).
    stamps : sequence of float
        Their stamps.
    limit, seconds : int, float
        As for :class:`StepGrouper` (the daemon's defaults: 4,096 rows, and the model's
        ``publish_every_s``; a window's limit is ``min(4096, retain_size // 16)``).

    Returns
    -------
    list of ndarray
        One array per step, the step's messages concatenated; the last step is the one the
        end of the stream closes.
    """
    grouper = StepGrouper(limit, seconds)
    sizes: list[int] = []
    for X, stamp in zip(batches, stamps, strict=True):
        sizes += grouper.add(len(X), float(stamp))
    sizes += grouper.close()
    steps, start = [], 0
    for size in sizes:
        part = batches[start : start + size]
        steps.append(part[0] if size == 1 else np.concatenate(part))
        start += size
    return steps
