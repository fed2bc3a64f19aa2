"""Moved to :mod:`streamgmm.daemon.config`; the old import path still works."""

from streamgmm.daemon.config import *  # noqa: F403
from streamgmm.daemon.config import __all__  # noqa: F401
