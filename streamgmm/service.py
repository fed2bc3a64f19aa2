"""Moved to :mod:`streamgmm.daemon.service`; the old import path still works."""

# Names users imported from the single-file daemon, now in its other modules.
from streamgmm.daemon.accounting import Counters, SourceTracker  # noqa: F401
from streamgmm.daemon.model import ModelRuntime, RefitResult, refit_job  # noqa: F401
from streamgmm.daemon.service import *  # noqa: F403
from streamgmm.daemon.service import __all__  # noqa: F401
