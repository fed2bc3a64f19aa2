"""streamgmm: keep a Gaussian mixture of a sensor stream up to date while the data flows.

``import streamgmm`` loads nothing heavy: the public names below are imported on first use
(PEP 562), so ``streamgmm --version`` and the clients do not pay for scipy and scikit-learn.
The daemon, clients and wire codec (zmq, msgpack) live in their own modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamgmm.core.params import MixtureParams
    from streamgmm.core.suffstats import SufficientStats
    from streamgmm.estimator import ConvergenceWarning, GaussianMixture, NotFittedError
    from streamgmm.parallel import threads

# Public name -> the module that defines it; loaded by __getattr__ on first access.
_LAZY = {
    "ConvergenceWarning": "streamgmm.estimator",
    "GaussianMixture": "streamgmm.estimator",
    "MixtureParams": "streamgmm.core.params",
    "NotFittedError": "streamgmm.estimator",
    "SufficientStats": "streamgmm.core.suffstats",
    "threads": "streamgmm.parallel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamgmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ConvergenceWarning",
    "GaussianMixture",
    "MixtureParams",
    "NotFittedError",
    "SufficientStats",
    "threads",
]
__version__ = "0.1.0"
