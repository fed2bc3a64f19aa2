"""Fixtures shared by the test modules: zmq contexts, fake control servers, real daemons.

The helpers behind them live in :mod:`tests.helpers` (``daemon``: the real daemon as a
subprocess; ``fakes``: fake daemons made of the codec and plain sockets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from tests.helpers.daemon import Daemon, write_config
from tests.helpers.fakes import FakeControl, Handler

# The model a daemon_factory daemon runs unless the test names others (a test module can
# override the ``daemon_model`` fixture to change it for all of its tests).
DAEMON_MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
                "publish_every_s": 0.0, "refit_every_s": 0.0}


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def fake_control(ctx: zmq.Context) -> Iterator[Callable[..., FakeControl]]:
    servers: list[FakeControl] = []

    def make(handler: Handler, **kwargs: bool) -> FakeControl:
        server = FakeControl(ctx, handler, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def daemon_model() -> dict:
    return DAEMON_MODEL


@pytest.fixture
def daemon_factory(tmp_path: Path, daemon_model: dict) -> Iterator[Callable[..., Daemon]]:
    """``start(models=None, service=None, directory=None) -> Daemon``; all killed at the end."""
    started: list[Daemon] = []

    def start(models: list[dict] | None = None, service: dict | None = None,
              directory: Path | None = None) -> Daemon:
        d = Daemon(write_config(directory or tmp_path, models or [daemon_model], service))
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
