"""streamgmm: keep a Gaussian mixture of a sensor stream up to date while the data flows.

``import streamgmm`` loads only the numerical core and the estimator (numpy and scipy);
the daemon, clients and wire codec (zmq, msgpack) live in their own modules.
"""

from streamgmm.core.params import MixtureParams
from streamgmm.core.suffstats import SufficientStats
from streamgmm.estimator import ConvergenceWarning, GaussianMixture, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "GaussianMixture",
    "MixtureParams",
    "NotFittedError",
    "SufficientStats",
]
__version__ = "0.1.0"
