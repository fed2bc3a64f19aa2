"""Moved to :mod:`streamgmm.daemon.transport`; the old import path still works."""

import sys

from streamgmm.daemon import transport as _moved

sys.modules[__name__] = _moved
