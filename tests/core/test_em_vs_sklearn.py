"""Batch EM reproduces scikit-learn's iterations from the same start."""

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from streamgmm import GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _start(X, k, ctype, seed):
    """Parameters after one scikit-learn iteration from a random start."""
    sk = SkGaussianMixture(k, covariance_type=ctype, max_iter=1, tol=0,
                           init_params="random_from_data", random_state=seed)
    with pytest.warns(Warning):
        sk.fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
@pytest.mark.parametrize("loader", [load_iris, load_wine])
def test_fit_matches_sklearn_iteration_for_iteration(ctype, loader):
    X = loader().data
    X = (X - X.mean(0)) / X.std(0) if loader is load_wine else X
    start = _start(X, 3, ctype, seed=1)
    for max_iter in (1, 2, 5, 20):
        kw = dict(covariance_type=ctype, max_iter=max_iter, tol=1e-8, reg_covar=1e-6, **start)
        sk = SkGaussianMixture(3, **kw)
        ours = GaussianMixture(3, **kw)
        with pytest.warns(Warning) if max_iter < 20 else _nothing():
            sk.fit(X)
        with pytest.warns(Warning) if max_iter < 20 else _nothing():
            ours.fit(X)
        assert ours.n_iter_ == sk.n_iter_
        assert abs(ours.lower_bound_ - sk.lower_bound_) < 1e-6
        assert abs(ours.score(X) - sk.score(X)) < 1e-6
        np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-7)
        np.testing.assert_allclose(ours.covariances_, sk.covariances_, atol=1e-7)
        np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-9)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
