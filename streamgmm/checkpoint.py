"""Moved to :mod:`streamgmm.daemon.checkpoint`; the old import path still works."""

import sys

from streamgmm.daemon import checkpoint as _moved

sys.modules[__name__] = _moved
