"""Moved to :mod:`streamgmm.daemon.config`; the old import path still works."""

import sys

from streamgmm.daemon import config as _moved

sys.modules[__name__] = _moved
