"""Moved to :mod:`streamgmm.daemon.checkpoint`; the old import path still works."""

from streamgmm.daemon.checkpoint import *  # noqa: F403
from streamgmm.daemon.checkpoint import __all__  # noqa: F401
