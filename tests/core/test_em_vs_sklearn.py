"""Batch EM reproduces scikit-learn's iterations from the same start."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from streamgmm import GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _standardised(loader):
    X = loader().data
    return (X - X.mean(0)) / X.std(0)


# The real data sets scikit-learn ships: raw where the features share one scale (iris in cm,
# digits in 0..16 grey levels, with constant pixels that only reg_covar keeps invertible),
# standardised where they do not (wine, breast cancer).
DATASETS = {
    "iris": lambda: load_iris().data,
    "wine": lambda: _standardised(load_wine),
    "breast_cancer": lambda: _standardised(load_breast_cancer),
    "digits": lambda: load_digits().data[:900],  # 64-d; half of it keeps the test quick
}


def _start(X, k, ctype, seed):
    """Parameters after one scikit-learn iteration from a k-means start.

    (Not from "random_from_data": for tied covariances scikit-learn's first M-step after a
    one-point-per-component init collapses every component onto the data mean, see
    tests/core/test_initialize.py, and EM would have nothing left to iterate.)
    """
    sk = SkGaussianMixture(k, covariance_type=ctype, max_iter=1, tol=0,
                           init_params="kmeans", random_state=seed)
    with pytest.warns(Warning):
        sk.fit(X)
    return dict(weights_init=sk.weights_, means_init=sk.means_, precisions_init=sk.precisions_)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
@pytest.mark.parametrize("data", list(DATASETS))
def test_fit_matches_sklearn_iteration_for_iteration(ctype, data):
    X = DATASETS[data]()
    start = _start(X, 3, ctype, seed=1)
    for max_iter in (1, 2, 5, 20) if data != "digits" else (2, 20):
        kw = dict(covariance_type=ctype, max_iter=max_iter, tol=1e-8, reg_covar=1e-6, **start)
        sk = SkGaussianMixture(3, **kw)
        ours = GaussianMixture(3, **kw)
        with warnings.catch_warnings(record=True) as sk_warned:
            warnings.simplefilter("always")
            sk.fit(X)
        with warnings.catch_warnings(record=True) as ours_warned:
            warnings.simplefilter("always")
            ours.fit(X)
        # The same ConvergenceWarning (scikit-learn's class) exactly when sklearn warns.
        assert [type(w.message) for w in ours_warned] == [type(w.message) for w in sk_warned]
        assert ours.converged_ == sk.converged_
        if max_iter < 20:
            assert not sk.converged_, "the start should leave EM something to do"
        assert ours.n_iter_ == sk.n_iter_
        assert abs(ours.lower_bound_ - sk.lower_bound_) < 1e-6
        assert abs(ours.score(X) - sk.score(X)) < 1e-6
        np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-7)
        np.testing.assert_allclose(ours.covariances_, sk.covariances_, atol=1e-7)
        np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-9)

