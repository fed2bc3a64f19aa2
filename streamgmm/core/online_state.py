"""Saving and restoring an online model's state: :meth:`OnlineEM.to_state` and back.

The state is plain data (numbers, lists, numpy arrays, the generator's state): the
checkpoint and the estimator's pickling write it as it is. It holds everything the next
update reads, so a model restored from it continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from streamgmm.core.blocks import RetainedBlocks
from streamgmm.core.params import MixtureParams
from streamgmm.core.schedule import RESTART_ITER

if TYPE_CHECKING:
    from streamgmm.core.online import OnlineEM

#: Version of the state; states of another version are refused.
STATE_FORMAT = 2

# The scalar attributes of an OnlineEM that the state keeps, with their types.
COUNTERS = {
    "n_updates": int, "clock": int, "n_seen": int, "rescore_credit": float,
    "move_credit": float, "work": int, "n_reseeded": int, "n_moves": int,
    "n_move_trials": int, "n_repaired": int, "n_change_points": int,
    "last_change_point": int, "novelty": float, "n_births": int,
    "prior_points": float, "n_restarts": int,
    "n_restart_trials": int,
}


def dump_state(online: OnlineEM) -> dict:
    """Everything needed to resume ``online`` bit for bit: blocks, parameters, credits, RNG."""
    p = online.params
    return {
        "format": STATE_FORMAT,
        "settings": asdict(online.settings),
        "n_features": online.n_features,
        # Saved as they are, not recomputed from the statistics: after an initialisation or
        # an adopted refit they are the EM result itself.
        "params": None if p is None else p.to_state(),
        "retained": online.retained.to_state(),
        "buffered": [b.copy() for b in online.buffered],
        "candidate": None if online.candidate is None else {
            "params": online.candidate["params"].to_state(),
            "n_iter": int(online.candidate["n_iter"]),
            "target": int(online.candidate["target"]),
        },
        "counters": {key: getattr(online, key) for key in COUNTERS},
        "rng": online.rng.bit_generator.state,
    }


def check_format(state: Mapping) -> None:
    """Refuse, with one line that says what to do, a state of another format."""
    found = state.get("format", 1) if isinstance(state, Mapping) else None
    if found != STATE_FORMAT:
        raise ValueError(
            f"online state format {found!r} was written by an earlier streamgmm (this one "
            f"reads format {STATE_FORMAT}): refit from the data, or load its mixture with "
            "`streamgmm load`")


def restore_state(online: OnlineEM, state: Mapping) -> None:
    """Set a freshly built ``online`` (same settings and features) to a :func:`dump_state`."""
    online.rng.bit_generator.state = state["rng"]
    online.retained = RetainedBlocks.from_state(state["retained"])
    online.buffered = [np.array(b, dtype=np.float64) for b in state["buffered"]]
    for key, kind in COUNTERS.items():
        setattr(online, key, kind(state["counters"][key]))
    if state["candidate"] is not None:
        c = state["candidate"]
        online.candidate = {"params": MixtureParams.from_state(c["params"]),
                            "n_iter": int(c["n_iter"]),
                            "target": int(c.get("target", RESTART_ITER))}
    if state["params"] is not None:
        online.params = MixtureParams.from_state(state["params"])
        online.stats = online.retained.pooled()
