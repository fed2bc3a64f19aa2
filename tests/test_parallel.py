"""Threads change the speed of the E-step, never the model (streamgmm.parallel)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import streamgmm
from streamgmm import GaussianMixture
from streamgmm.core.em import moments_pass, segment_statistics
from streamgmm.core.params import MixtureParams
from streamgmm.core.scoring import make_scorer
from streamgmm.parallel import ThreadPool, available_cores, current_pool


def _sorted_blobs(n: int, seed: int = 0) -> np.ndarray:
    """Eight blobs far from the origin, delivered blob after blob (a sensor's order)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, (8, 3)) + 50.0
    labels = np.sort(rng.integers(0, 8, n))
    return centers[labels] + rng.normal(size=(n, 3)) * rng.uniform(0.1, 2.0, (8, 3))[labels]


def _same_model(a: GaussianMixture, b: GaussianMixture) -> None:
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("weighted", [False, True])
def test_moments_pass_is_the_same_bit_for_bit_on_threads(weighted: bool) -> None:
    X = _sorted_blobs(40_000)
    rng = np.random.default_rng(1)
    params = MixtureParams.from_covariances(
        np.full(8, 1 / 8), X[rng.choice(len(X), 8, replace=False)],
        np.broadcast_to(np.eye(3) * 4.0, (8, 3, 3)).copy(), "full")
    weight = rng.uniform(0.5, 2.0, len(X)) if weighted else None
    scorer = make_scorer(params)
    serial = moments_pass(X, scorer, weight)
    pool = ThreadPool(3)
    try:
        threaded = moments_pass(X, scorer, weight, pool)
    finally:
        pool.close()
    np.testing.assert_array_equal(serial[0], threaded[0])
    assert serial[1] == threaded[1]


def test_segment_statistics_are_the_same_bit_for_bit_on_threads() -> None:
    X = _sorted_blobs(30_000)
    rng = np.random.default_rng(2)
    params = MixtureParams.from_covariances(
        np.full(8, 1 / 8), X[rng.choice(len(X), 8, replace=False)],
        np.broadcast_to(np.eye(3) * 4.0, (8, 3, 3)).copy(), "full")
    segments = np.split(X, [5, 900, 901, 17_000, 20_000])
    serial = segment_statistics(segments, params)
    pool = ThreadPool(3)
    try:
        threaded = segment_statistics(segments, params, pool=pool)
    finally:
        pool.close()
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a.stats.means, b.stats.means)
        np.testing.assert_array_equal(a.stats.scatter, b.stats.scatter)
        assert a.log_likelihood == b.log_likelihood


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied", "spherical"])
def test_fit_on_threads_is_the_same_model(covariance_type: str) -> None:
    X = _sorted_blobs(30_000)
    kwargs = dict(n_components=6, covariance_type=covariance_type, random_state=0, max_iter=15)
    # One BLAS thread, as inside threads(): OpenBLAS may split a product differently with two.
    with threadpool_limits(limits=1, user_api="blas"):
        alone = GaussianMixture(**kwargs).fit(X)
    with streamgmm.threads(2) as pool:
        assert current_pool() is pool
        threaded = GaussianMixture(**kwargs).fit(X)
    _same_model(alone, threaded)
    assert alone.n_iter_ == threaded.n_iter_


@pytest.mark.parametrize("batch", [4096, 20_000])
def test_partial_fit_on_threads_is_the_same_model(batch: int) -> None:
    """Re-scored blocks are scored in parallel groups, large batches in parallel chunks."""
    X = _sorted_blobs(60_000)
    alone = GaussianMixture(8, random_state=0)
    threaded = GaussianMixture(8, random_state=0)
    for start in range(0, len(X), batch):
        alone.partial_fit(X[start : start + batch])
        with streamgmm.threads(2):
            threaded.partial_fit(X[start : start + batch])
    _same_model(alone, threaded)
    assert alone.work_ == threaded.work_ and alone.n_moves_ == threaded.n_moves_


def test_models_stepped_side_by_side_are_the_models_stepped_alone() -> None:
    """What the daemon does with several models and threads: one thread per model's step."""
    data = [_sorted_blobs(20_000, seed) for seed in (5, 6)]

    def models() -> list[GaussianMixture]:
        return [GaussianMixture(6, random_state=seed, retain_size=5000) for seed in (7, 3)]

    alone, side_by_side = models(), models()
    pool = ThreadPool(2)
    try:
        for start in range(0, 20_000, 2048):
            for gm, X in zip(alone, data):
                gm.partial_fit(X[start : start + 2048])
            rows = slice(start, start + 2048)
            pool.map(lambda pair, rows=rows: pair[0].partial_fit(pair[1][rows]),
                     list(zip(side_by_side, data)))
    finally:
        pool.close()
    for a, b in zip(alone, side_by_side):
        _same_model(a, b)


def test_the_pool_is_gone_after_the_block_even_on_error() -> None:
    assert current_pool() is None
    with pytest.raises(RuntimeError, match="boom"), streamgmm.threads(2):
        raise RuntimeError("boom")
    assert current_pool() is None


def test_an_estimator_fitted_on_threads_pickles_without_its_pool() -> None:
    X = _sorted_blobs(10_000)
    gm = GaussianMixture(4, random_state=0)
    with streamgmm.threads(2):
        gm.partial_fit(X)
    again = pickle.loads(pickle.dumps(gm))
    _same_model(gm, again)


def test_thread_pool_settings() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ThreadPool(0)
    inline = ThreadPool(1)
    assert inline.map(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]
    inline.close()
    assert available_cores() >= 1
