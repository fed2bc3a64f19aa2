"""Log-densities of row chunks (the scorer and what is read from it) against scipy."""

import numpy as np
import pytest

from streamgmm.core.gaussian import COVARIANCE_TYPES
from streamgmm.core.scoring import (
    e_step,
    estimate_log_prob_resp,
    log_likelihoods,
    mean_log_likelihood,
    most_likely_components,
)
from tests.helpers.mixtures import random_params, reference_log_resp


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_estimate_log_prob_resp_matches_scipy(ctype):
    rng = np.random.default_rng(0)
    params = random_params(rng, ctype, 4, 3, offset=100.0)
    # More rows than one chunk, so the chunked loop is exercised.
    X = 100.0 + rng.normal(0, 3, (20_000, 3))
    norm, log_resp = estimate_log_prob_resp(X, params)
    ref_norm, ref_resp = reference_log_resp(X, params)
    np.testing.assert_allclose(norm, ref_norm, rtol=1e-10)
    np.testing.assert_allclose(np.exp(log_resp), np.exp(ref_resp), atol=1e-10)
    mean, log_resp2 = e_step(X, params)
    assert mean == pytest.approx(ref_norm.mean(), rel=1e-12)
    np.testing.assert_array_equal(log_resp2, log_resp)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_log_likelihoods_and_labels_match_scipy(ctype):
    # Far from the origin and over several chunks: the peaked log-sum-exp and the argmax of
    # the weighted log-densities against the responsibilities scipy gives.
    rng = np.random.default_rng(1)
    params = random_params(rng, ctype, 5, 3, offset=-40.0)
    X = -40.0 + rng.normal(0, 4, (15_000, 3))
    ref_norm, ref_resp = reference_log_resp(X, params)
    np.testing.assert_allclose(log_likelihoods(X, params), ref_norm, rtol=1e-11)
    assert mean_log_likelihood(X, params) == pytest.approx(ref_norm.mean(), rel=1e-12)
    np.testing.assert_array_equal(most_likely_components(X, params), ref_resp.argmax(axis=1))
