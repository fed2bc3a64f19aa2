"""Component alignment after a refit (``streamgmm.core.refit.align_components``): a refit
from a fresh seeding does not shuffle the numbering of an unchanged mixture."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.core.em import m_step
from streamgmm.core.refit import align_components
from streamgmm.core.suffstats import SufficientStats

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def fitted(covariance_type: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    noise = rng.normal(scale=[0.5, 1.0], size=(len(labels), 2))
    X = centres[labels] + noise * (1 + labels[:, None])
    stats = SufficientStats.from_responsibilities(X, np.eye(4)[labels], covariance_type)
    return m_step(stats, 1e-6), stats


def permuted(params, stats, perm):
    from streamgmm.core.params import MixtureParams

    tied = params.covariance_type == "tied"
    p = MixtureParams(params.weights[perm], params.means[perm],
                      params.covariances if tied else params.covariances[perm],
                      params.precisions_cholesky if tied else params.precisions_cholesky[perm],
                      params.covariance_type)
    s = SufficientStats(stats.covariance_type, stats.counts[perm], stats.means[perm],
                        stats.scatter[perm])
    return p, s


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_shuffled_refit_is_renumbered_like_the_reference(covariance_type: str) -> None:
    reference, stats = fitted(covariance_type)
    perm = np.array([2, 0, 3, 1])
    params, shuffled = permuted(reference, stats, perm)
    # The refit moved a little: still each component nearest its own reference.
    params.means[:] += 0.3
    aligned, aligned_stats = align_components(reference, params, shuffled)
    np.testing.assert_allclose(aligned.means, reference.means + 0.3)
    np.testing.assert_array_equal(aligned.weights, reference.weights)
    np.testing.assert_array_equal(aligned.covariances, reference.covariances)
    np.testing.assert_array_equal(aligned.precisions_cholesky, reference.precisions_cholesky)
    np.testing.assert_array_equal(aligned_stats.counts, stats.counts)
    np.testing.assert_array_equal(aligned_stats.means, stats.means)
    np.testing.assert_array_equal(aligned_stats.scatter, stats.scatter)
    assert aligned.covariance_type == covariance_type


def test_an_aligned_refit_is_returned_as_it_is() -> None:
    reference, stats = fitted("full")
    params, same = align_components(reference, reference, stats)
    assert params is reference and same is stats


def test_alignment_is_one_to_one_not_greedy() -> None:
    # Both new components are nearest reference component 0; a greedy nearest match would
    # give it to both. The optimal assignment minimises the summed squared distance.
    reference, stats = fitted("diag")
    params, shuffled = permuted(reference, stats, np.array([1, 0, 2, 3]))
    params.means[0] = reference.means[0] + [4.0, 0.0]  # was component 1, now nearer 0
    params.means[1] = reference.means[0] + [1.0, 0.0]
    aligned, aligned_stats = align_components(reference, params, shuffled)
    np.testing.assert_allclose(aligned.means[0], reference.means[0] + [1.0, 0.0])
    np.testing.assert_allclose(aligned.means[1], reference.means[0] + [4.0, 0.0])
    assert sorted(aligned_stats.counts) == sorted(stats.counts)
    np.testing.assert_array_equal(aligned_stats.counts[:2], stats.counts[:2])
