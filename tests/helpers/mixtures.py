"""Random mixtures and a scipy reference for the numerical core's tests."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from streamgmm.core.params import MixtureParams


def random_params(rng, ctype, k, d, offset=0.0):
    """A random ``k``-component mixture in ``d`` dimensions, means around ``offset``."""
    means = offset + rng.normal(0, 3, (k, d))
    weights = rng.dirichlet(np.ones(k) * 3)
    if ctype == "full":
        A = rng.normal(size=(k, d, d))
        covs = A @ np.swapaxes(A, 1, 2) / d + 0.5 * np.eye(d)
    elif ctype == "tied":
        A = rng.normal(size=(d, d))
        covs = A @ A.T / d + 0.5 * np.eye(d)
    elif ctype == "diag":
        covs = rng.uniform(0.3, 2.0, (k, d))
    else:
        covs = rng.uniform(0.3, 2.0, k)
    return MixtureParams.from_covariances(weights, means, covs, ctype)


def reference_log_resp(X, params):
    """Per-point log-likelihood and log-responsibilities by scipy, one component at a time."""
    covs = params.full_covariances()
    weighted = np.column_stack([
        np.log(w) + multivariate_normal(m, c).logpdf(X)
        for w, m, c in zip(params.weights, params.means, covs)
    ])
    norm = logsumexp(weighted, axis=1)
    return norm, weighted - norm[:, None]
