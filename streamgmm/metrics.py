"""Moved to :mod:`streamgmm.daemon.metrics`; the old import path still works."""

from streamgmm.daemon.metrics import *  # noqa: F403
from streamgmm.daemon.metrics import __all__  # noqa: F401
