"""Moved to :mod:`streamgmm.daemon.metrics`; the old import path still works."""

import sys

from streamgmm.daemon import metrics as _moved

sys.modules[__name__] = _moved
