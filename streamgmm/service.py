"""Moved to :mod:`streamgmm.daemon.service`; the old import path still works."""

import sys

from streamgmm.daemon import service as _moved

sys.modules[__name__] = _moved
