"""Fixtures shared by the test modules: zmq contexts, fake control servers, real daemons;
and the markers that split the fast lane from the rest.

The helpers behind the fixtures live in :mod:`tests.helpers` (``daemon``: the real daemon as
a subprocess; ``fakes``: fake daemons made of the codec and plain sockets). They, and zmq, are
imported by the fixtures that use them, not here: ``pytest tests/core`` imports no zmq.

Markers (declared in ``pyproject.toml``), set here by what a test uses, so that no test has
to remember them (an explicit ``@pytest.mark.daemon``/``subprocess`` works too):

- ``daemon``: starts a real daemon (the ``daemon_factory`` fixture, or ``Daemon(...)``);
- ``subprocess``: starts any other process (``subprocess``, ``sys.executable``,
  ``multiprocessing``, a Dask ``LocalCluster(processes=True)``).

``make test-fast`` runs ``-m "not daemon and not subprocess"``. A test that starts a process
without one of these markers fails (see ``_unmarked_tests_start_no_process``), so the fast
lane stays free of them.
"""

from __future__ import annotations

import inspect
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import zmq

    from tests.helpers.daemon import Daemon
    from tests.helpers.fakes import FakeControl, Handler

# The model a daemon_factory daemon runs unless the test names others (a test module can
# override the ``daemon_model`` fixture to change it for all of its tests).
DAEMON_MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
                "publish_every_s": 0.0, "refit_every_s": 0.0}


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    import zmq

    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def fake_control(ctx: zmq.Context) -> Iterator[Callable[..., FakeControl]]:
    from tests.helpers.fakes import FakeControl

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
    from tests.helpers.daemon import Daemon, write_config

    started: list[Daemon] = []

    def start(models: list[dict] | None = None, service: dict | None = None,
              directory: Path | None = None) -> Daemon:
        d = Daemon(write_config(directory or tmp_path, models or [daemon_model], service))
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


# ------------------------------------------------------------------------------ markers

TESTS = Path(__file__).resolve().parent
DAEMON_FIXTURES = {"daemon_factory"}
DAEMON_CODE = re.compile(r"\bDaemon\(|\bdaemon_factory\b")
PROCESS_CODE = re.compile(r"\bsubprocess\.|\bPopen\b|\bsys\.executable\b|\bmultiprocessing\b"
                          r"|\bprocesses=True\b")
NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _own_source(obj) -> str | None:
    """The source of a function or class defined under tests/ (None for anything else)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    try:
        path = inspect.getsourcefile(obj)
        if path is None or TESTS not in Path(path).resolve().parents:
            return None
        return inspect.getsource(obj)
    except (TypeError, OSError):
        return None


def _reachable_source(item: pytest.Function) -> str:
    """The test's source, its fixtures' and that of the module's helpers it calls (by name,
    transitively), joined: what the markers are decided from."""
    module = vars(item.module)
    todo = [item.obj]
    for name in item.fixturenames:
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            if fixturedef.func is not _guard:
                todo.append(fixturedef.func)
    seen: set[int] = set()
    parts: list[str] = []
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        source = _own_source(obj)
        if source is None:
            continue
        parts.append(source)
        globs = getattr(inspect.unwrap(obj), "__globals__", module)
        for name in set(NAME.findall(source)):
            found = globs.get(name, module.get(name))
            if inspect.isfunction(found) or inspect.isclass(found):
                todo.append(found)
    return "\n".join(parts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        source = _reachable_source(item)
        if DAEMON_FIXTURES & set(item.fixturenames) or DAEMON_CODE.search(source):
            item.add_marker(pytest.mark.daemon)
        elif PROCESS_CODE.search(source):
            item.add_marker(pytest.mark.subprocess)


def _guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test without ``daemon``/``subprocess`` that starts a process fails: mark it."""
    if any(request.node.iter_markers(name) for name in ("daemon", "subprocess")):
        return
    test = request.node.nodeid

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{test} starts a process without a daemon/subprocess marker: "
                             "mark it @pytest.mark.subprocess (tests/conftest.py)")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


_unmarked_tests_start_no_process = pytest.fixture(autouse=True)(_guard)
