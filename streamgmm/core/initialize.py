"""Initial responsibilities: k-means, k-means++, random and random-from-data seeding.

Each takes a ``numpy.random.RandomState`` (scikit-learn's convention, so the same seed picks
the same points as scikit-learn's ``GaussianMixture``) and returns hard or soft
responsibilities of shape (n, K) from which the first M-step builds the parameters. The
k-means functions also take a ``numpy.random.Generator`` (the online model's moves pass
theirs: a ``RandomState`` costs 0.1 ms to make, a tenth of a birth trial).
"""

from __future__ import annotations

import numpy as np

from streamgmm.core.suffstats import SufficientStats

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def _sq_distances(centers: np.ndarray, X: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(centers), n), clipped at zero."""
    d = np.einsum("ij,ij->i", centers, centers)[:, None] - 2.0 * (centers @ X.T) + x_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def kmeans_plusplus(
    X: np.ndarray, n_clusters: int,
    random_state: np.random.RandomState | np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with 2 + log k local trials).

    Returns the centers (n_clusters, d) and their row indices in ``X``; the random draws
    follow scikit-learn's ``kmeans_plusplus`` call for call.
    """
    n = X.shape[0]
    n_trials = 2 + int(np.log(n_clusters))
    x_sq = np.einsum("ij,ij->i", X, X)
    indices = np.empty(n_clusters, dtype=np.intp)
    indices[0] = random_state.choice(n, p=np.full(n, 1.0 / n))
    closest = _sq_distances(X[indices[:1]], X, x_sq)[0]
    potential = closest.sum()
    for c in range(1, n_clusters):
        # Draw candidates with probability proportional to the squared distance to the
        # nearest chosen center, keep the one that lowers the potential most.
        draws = random_state.uniform(size=n_trials) * potential
        candidates = np.searchsorted(np.cumsum(closest), draws)
        np.clip(candidates, None, n - 1, out=candidates)
        dist = np.minimum(closest, _sq_distances(X[candidates], X, x_sq))
        pots = dist.sum(axis=1)
        best = int(np.argmin(pots))
        potential, closest, indices[c] = pots[best], dist[best], candidates[best]
    return X[indices].copy(), indices


def _nearest_centers(centers: np.ndarray, XT1: np.ndarray) -> np.ndarray:
    """Index of the nearest center of every column of ``XT1 = [X^T; 1]`` (d + 1, n).

    ``|x - c|^2 = |x|^2 + (|c|^2 - 2 c.x)`` and ``|x|^2`` is the same for every center, so the
    argmin is that of ``[-2 c, |c|^2] @ [x; 1]``: one small product per row chunk, whose
    (K, rows) result stays in cache (the (K, n) distance arrays of a million points cost 10x
    as much in memory traffic).
    """
    k, n = centers.shape[0], XT1.shape[1]
    AT = np.empty((XT1.shape[0], k))
    AT[:-1] = -2.0 * centers.T
    AT[-1] = np.einsum("ij,ij->i", centers, centers)
    rows = max(64, (1 << 16) // max(k, 1))
    # (rows, K): numpy's argmin along the last axis is 2x faster than along the first.
    buf = np.empty((min(rows, n), k))
    labels = np.empty(n, dtype=np.intp)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        G = np.matmul(XT1[:, start:stop].T, AT, out=buf[: stop - start])
        labels[start:stop] = G.argmin(axis=1)
    return labels


def kmeans_labels(
    X: np.ndarray,
    n_clusters: int,
    random_state: np.random.RandomState | np.random.Generator,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> np.ndarray:
    """Lloyd's k-means from a k-means++ start; returns the label of each row.

    The iterations run on the data centred on its mean (as scikit-learn's ``KMeans`` does),
    laid out by features, ``[X^T; 1]``: far from the origin the distances keep their digits.
    """
    centers, _ = kmeans_plusplus(X, n_clusters, random_state)
    n, d = X.shape
    middle = X.mean(axis=0)
    XT1 = np.empty((d + 1, n))
    np.subtract(X.T, middle[:, None], out=XT1[:d])
    XT1[d] = 1.0
    centers = centers - middle
    # scikit-learn's tolerance: relative to the mean per-feature variance of the data.
    threshold = tol * np.mean(np.var(X, axis=0))
    for _ in range(max_iter):
        labels = _nearest_centers(centers, XT1)
        counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        # bincount per coordinate: ~20x faster than np.add.at for the same sums.
        sums = np.column_stack([
            np.bincount(labels, weights=XT1[j], minlength=n_clusters) for j in range(d)
        ])
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], centers)
        shift = np.sum((new - centers) ** 2)
        centers = new
        if shift <= threshold:
            break
    return _nearest_centers(centers, XT1)


def initial_responsibilities(
    X: np.ndarray, n_components: int, init_params: str, random_state: np.random.RandomState
) -> np.ndarray:
    """Responsibilities (n, K) to start EM from, per ``init_params``."""
    n = X.shape[0]
    if init_params == "kmeans":
        resp = np.zeros((n, n_components))
        resp[np.arange(n), kmeans_labels(X, n_components, random_state)] = 1.0
    elif init_params == "random":
        resp = random_state.uniform(size=(n, n_components))
        resp /= resp.sum(axis=1)[:, None]
    elif init_params == "random_from_data":
        resp = np.zeros((n, n_components))
        chosen = random_state.choice(n, size=n_components, replace=False)
        resp[chosen, np.arange(n_components)] = 1.0
    elif init_params == "k-means++":
        resp = np.zeros((n, n_components))
        _, chosen = kmeans_plusplus(X, n_components, random_state)
        resp[chosen, np.arange(n_components)] = 1.0
    else:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {init_params!r}")
    return resp


def initial_statistics(
    X: np.ndarray, n_components: int, init_params: str,
    random_state: np.random.RandomState | np.random.Generator, covariance_type: str,
) -> SufficientStats:
    """Statistics of :func:`initial_responsibilities` (what the first M-step is built from).

    k-means labels go straight to :meth:`SufficientStats.from_labels`: the same statistics
    without the dense (n, K) responsibilities.
    """
    if init_params == "kmeans":
        labels = kmeans_labels(X, n_components, random_state)
        return SufficientStats.from_labels(X, labels, n_components, covariance_type)
    resp = initial_responsibilities(X, n_components, init_params, random_state)
    return SufficientStats.from_responsibilities(X, resp, covariance_type)
