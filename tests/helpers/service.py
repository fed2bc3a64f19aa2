"""The daemon's loop in-process, without sockets: a :class:`Service` whose endpoints are never
bound, for tests that drive its methods (``_admit``, ``_absorb_backlogs``...) directly and
give it a stand-in transport."""

from __future__ import annotations

from streamgmm.daemon.config import parse_config
from streamgmm.daemon.service import Service

LIDAR = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
         "publish_every_s": 0.05, "refit_every_s": 0.0, "seed": 5}


def in_process_service(**model) -> Service:
    """A Service of one model: :data:`LIDAR` with ``model``'s keys over it."""
    return Service(parse_config({
        "service": {"ingest": ["ipc:///nonexistent/in"], "publish": "ipc:///nonexistent/pub",
                    "control": "ipc:///nonexistent/ctl"},
        "model": [{**LIDAR, **model}],
    }))
