"""Moved to :mod:`streamgmm.daemon.transport`; the old import path still works."""

from streamgmm.daemon.transport import *  # noqa: F403
from streamgmm.daemon.transport import __all__  # noqa: F401
