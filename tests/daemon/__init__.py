"""Tests of :mod:`streamgmm.daemon`, one module per daemon file."""

# ``from tests.daemon import Daemon, write_config`` was the harness's old import path.
from tests.helpers.daemon import Daemon, write_config

__all__ = ["Daemon", "write_config"]
