"""SufficientStats against a slow per-component reference, and its algebra."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.core.gaussian import COVARIANCE_TYPES
from streamgmm.core.params import MixtureParams
from streamgmm.core.suffstats import COUNT_EPS, SufficientStats


def reference_stats(X, resp, ctype):
    """Counts, means and biased scatters, one component at a time, two-pass formulas."""
    k = resp.shape[1]
    counts, means, scatters = [], [], []
    for j in range(k):
        r = resp[:, j]
        w = r.sum() + COUNT_EPS
        mu = r @ X / w
        Z = X - mu
        C = (r[:, None] * Z).T @ Z / w
        counts.append(w)
        means.append(mu)
        scatters.append(C)
    counts, means, C = np.array(counts), np.array(means), np.array(scatters)
    if ctype in ("full", "tied"):
        scatter = C
    elif ctype == "diag":
        scatter = np.diagonal(C, axis1=1, axis2=2)
    else:
        scatter = np.trace(C, axis1=1, axis2=2) / X.shape[1]
    return counts, means, scatter


def reference_covariances(X, resp, ctype, reg):
    """scikit-learn's M-step covariances, written out."""
    counts, _, scatter = reference_stats(X, resp, ctype)
    d = X.shape[1]
    if ctype == "full":
        return scatter + reg * np.eye(d)
    if ctype == "tied":
        return np.einsum("k,kij->ij", counts, scatter) / counts.sum() + reg * np.eye(d)
    return scatter + reg


def random_batch(rng, n, k, d, offset=0.0, spread=1.0):
    X = offset + spread * rng.normal(size=(n, d))
    resp = rng.dirichlet(np.ones(k), size=n)
    return X, resp


def assert_stats_close(a, b, rtol=1e-9, atol=1e-10):
    assert a.covariance_type == b.covariance_type
    np.testing.assert_allclose(a.counts, b.counts, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.scatter, b.scatter, rtol=rtol, atol=atol)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_from_responsibilities_matches_reference(ctype):
    rng = np.random.default_rng(0)
    X, resp = random_batch(rng, 300, 4, 3, offset=5.0)
    stats = SufficientStats.from_responsibilities(X, resp, ctype)
    counts, means, scatter = reference_stats(X, resp, ctype)
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-12)
    np.testing.assert_allclose(stats.means, means, rtol=1e-10)
    np.testing.assert_allclose(stats.scatter, scatter, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        stats.covariances(1e-6), reference_covariances(X, resp, ctype, 1e-6), rtol=1e-9
    )


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_from_labels_is_from_responsibilities_of_hard_labels(ctype):
    # Far from the origin, thin in one direction, and one label never used.
    rng = np.random.default_rng(3)
    X = 1e4 + rng.normal(size=(3000, 3)) * [1.0, 2.0, 0.01]
    labels = rng.integers(0, 5, len(X))
    labels[labels == 3] = 4
    resp = np.zeros((len(X), 5))
    resp[np.arange(len(X)), labels] = 1.0
    got = SufficientStats.from_labels(X, labels, 5, ctype)
    ref = SufficientStats.from_responsibilities(X, resp, ctype)
    np.testing.assert_array_equal(got.counts, ref.counts)
    np.testing.assert_allclose(got.means, ref.means, rtol=1e-15)
    np.testing.assert_allclose(got.scatter, ref.scatter, rtol=1e-12, atol=0)
    assert got.counts[3] == COUNT_EPS


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_sample_weight_equals_repeated_rows(ctype):
    rng = np.random.default_rng(1)
    X, resp = random_batch(rng, 50, 3, 2)
    w = rng.integers(1, 4, size=50)
    weighted = SufficientStats.from_responsibilities(X, resp, ctype, sample_weight=w)
    repeated = SufficientStats.from_responsibilities(
        np.repeat(X, w, axis=0), np.repeat(resp, w, axis=0), ctype
    )
    assert_stats_close(weighted, repeated)


@settings(max_examples=40, deadline=None)
@given(
    ctype=st.sampled_from(COVARIANCE_TYPES),
    n_a=st.integers(1, 40),
    n_b=st.integers(1, 40),
    k=st.integers(1, 4),
    d=st.integers(1, 4),
    offset=st.sampled_from([0.0, 3.0, -1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_merge_equals_stats_of_union(ctype, n_a, n_b, k, d, offset, seed):
    rng = np.random.default_rng(seed)
    Xa, Ra = random_batch(rng, n_a, k, d, offset)
    Xb, Rb = random_batch(rng, n_b, k, d, offset + rng.normal())
    a = SufficientStats.from_responsibilities(Xa, Ra, ctype)
    b = SufficientStats.from_responsibilities(Xb, Rb, ctype)
    union = SufficientStats.from_responsibilities(np.vstack([Xa, Xb]), np.vstack([Ra, Rb]), ctype)
    merged = a.merge(b)
    # Each side carries COUNT_EPS, the union only once.
    np.testing.assert_allclose(merged.counts - COUNT_EPS, union.counts, rtol=1e-12)
    scale = max(1.0, abs(offset))
    np.testing.assert_allclose(merged.means, union.means, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(merged.scatter, union.scatter, rtol=1e-7, atol=1e-8)
    assert_stats_close(a + b, merged, rtol=0, atol=0)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_merge_with_zeros_is_identity(ctype):
    rng = np.random.default_rng(2)
    X, resp = random_batch(rng, 30, 3, 2, offset=10.0)
    a = SufficientStats.from_responsibilities(X, resp, ctype)
    zero = SufficientStats.zeros(3, 2, ctype)
    assert_stats_close(a.merge(zero), a, rtol=0, atol=0)
    assert_stats_close(zero.merge(a), a, rtol=0, atol=0)
    assert zero.merge(zero).total == 0.0


def test_merge_of_different_mixtures_raises():
    a = SufficientStats.zeros(3, 2, "full")
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(SufficientStats.zeros(3, 2, "diag"))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(SufficientStats.zeros(2, 2, "full"))


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_scale_normalized_interpolate(ctype):
    rng = np.random.default_rng(3)
    Xa, Ra = random_batch(rng, 40, 3, 2)
    Xb, Rb = random_batch(rng, 90, 3, 2, offset=1.0)
    a = SufficientStats.from_responsibilities(Xa, Ra, ctype)
    b = SufficientStats.from_responsibilities(Xb, Rb, ctype)

    s = a.scale(2.5)
    np.testing.assert_array_equal(s.counts, a.counts * 2.5)
    np.testing.assert_array_equal(s.means, a.means)
    np.testing.assert_array_equal(s.scatter, a.scatter)
    assert a.normalized().total == pytest.approx(1.0, rel=1e-15)
    assert SufficientStats.zeros(2, 2, ctype).normalized().total == 0.0
    # Moments are unchanged by scaling, so parameters are too.
    np.testing.assert_allclose(s.to_params(1e-6).weights, a.to_params(1e-6).weights)

    step = 0.3
    got = a.interpolate(b, step)
    expected = a.scale((1 - step) / a.total).merge(b.scale(step / b.total))
    assert_stats_close(got, expected, rtol=1e-14, atol=0)
    assert got.total == pytest.approx(1.0)
    # step=1 forgets the running statistics, step=0 ignores the batch.
    assert_stats_close(a.interpolate(b, 1.0), b.normalized(), rtol=1e-14, atol=1e-14)
    assert_stats_close(a.interpolate(b, 0.0), a.normalized(), rtol=1e-14, atol=1e-14)
    # The interpolated first moment is the count-weighted mix, component by component.
    wa, wb = (1 - step) * a.counts / a.total, step * b.counts / b.total
    np.testing.assert_allclose(
        got.means, (wa[:, None] * a.means + wb[:, None] * b.means) / (wa + wb)[:, None]
    )


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_state_round_trip_is_exact(ctype):
    rng = np.random.default_rng(4)
    X, resp = random_batch(rng, 25, 3, 3, offset=7.0)
    a = SufficientStats.from_responsibilities(X, resp, ctype)
    b = SufficientStats.from_state(a.to_state())
    assert_stats_close(a, b, rtol=0, atol=0)
    # The state holds copies, not views.
    state = a.to_state()
    state["means"][0, 0] = 1e9
    assert a.means[0, 0] != 1e9


def test_from_state_rejects_inconsistent_shapes():
    state = SufficientStats.zeros(3, 2, "full").to_state()
    state["scatter"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        SufficientStats.from_state(state)
    state = SufficientStats.zeros(3, 2, "diag").to_state()
    state["counts"] = np.zeros(4)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        SufficientStats.from_state(state)
    state["covariance_type"] = "banana"
    with pytest.raises(ValueError, match="covariance_type"):
        SufficientStats.from_state(state)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_huge_offset_tiny_spread(ctype):
    """Data 1e6 from the origin with a spread of 1e-3: raw moments would lose every digit."""
    rng = np.random.default_rng(5)
    d, k = 3, 2
    noise = 1e-3 * rng.normal(size=(4000, d)) * np.array([1.0, 2.0, 0.5])
    X = 1e6 + noise
    resp = np.zeros((4000, k))
    resp[:, 0] = 1.0  # one component holds everything; the other is empty
    expected = np.cov(X - 1e6, rowvar=False, bias=True)  # X - 1e6 is exact here
    stats = SufficientStats.from_responsibilities(X, resp, ctype)
    # Two halves merged must agree as well.
    half = SufficientStats.from_responsibilities(X[:1500], resp[:1500], ctype).merge(
        SufficientStats.from_responsibilities(X[1500:], resp[1500:], ctype)
    )
    for s in (stats, half):
        C = s.covariances(0.0)
        if ctype == "full":
            np.testing.assert_allclose(C[0], expected, rtol=1e-6, atol=1e-13)
        elif ctype == "tied":
            np.testing.assert_allclose(C, expected, rtol=1e-6, atol=1e-13)
        elif ctype == "diag":
            np.testing.assert_allclose(C[0], np.diag(expected), rtol=1e-6)
        else:
            np.testing.assert_allclose(C[0], np.trace(expected) / d, rtol=1e-6)
        # (X - 1e6 is exact; X.mean() itself would be off by ~1e-9 here.)
        np.testing.assert_allclose(s.means[0] - 1e6, (X - 1e6).mean(axis=0), rtol=0, atol=5e-10)
        assert s.counts[1] < 1e-9


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_to_params_and_from_params(ctype):
    rng = np.random.default_rng(6)
    X, resp = random_batch(rng, 200, 3, 2)
    stats = SufficientStats.from_responsibilities(X, resp, ctype)
    params = stats.to_params(1e-3)
    counts, means, _ = reference_stats(X, resp, ctype)
    np.testing.assert_allclose(params.weights, counts / counts.sum(), rtol=1e-12)
    np.testing.assert_allclose(params.means, means, rtol=1e-10)
    np.testing.assert_allclose(
        params.covariances, reference_covariances(X, resp, ctype, 1e-3), rtol=1e-9
    )
    if ctype in ("full", "tied"):
        np.testing.assert_array_equal(params.covariances, np.swapaxes(params.covariances, -1, -2))
    # from_params keeps reg_covar in the scatter: reg 0 reproduces the parameters.
    back = SufficientStats.from_params(params, total=10.0)
    assert back.total == pytest.approx(10.0)
    again = back.to_params(0.0)
    np.testing.assert_allclose(again.weights, params.weights, rtol=1e-14)
    np.testing.assert_allclose(again.covariances, params.covariances, rtol=1e-14)
    ref = MixtureParams.from_covariances(params.weights, params.means, params.covariances, ctype)
    np.testing.assert_allclose(ref.precisions_cholesky, params.precisions_cholesky, rtol=1e-12)


def test_to_params_raises_on_empty_covariance():
    stats = SufficientStats.from_responsibilities(
        np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), "full"
    )
    with pytest.raises(ValueError, match="reg_covar"):
        stats.to_params(0.0)
    assert stats.to_params(1e-6).covariances.shape == (2, 2, 2)


def test_outer_products_are_the_broadcast_products_bit_for_bit():
    from streamgmm.core.suffstats import outer_products

    delta = np.random.default_rng(0).normal(0, 5, (517, 3))
    got = outer_products(delta)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, delta[:, :, None] * delta[:, None, :])
