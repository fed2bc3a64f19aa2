"""SufficientStats: the mergeable state of a Gaussian mixture.

Per component ``k`` we keep the weighted count ``w_k``, the mean ``mu_k`` and the scatter
``C_k`` (the weighted second *central* moment per unit weight, i.e. the biased covariance
before ``reg_covar``). Raw second moments ``sum r x x'`` would cancel badly for data far from
the origin; the central form merges exactly with the Chan-Golub-LeVeque rule::

    w = w_a + w_b
    mu = mu_a + (w_b / w) (mu_b - mu_a)
    C = (w_a C_a + w_b C_b) / w + (w_a w_b / w^2) (mu_b - mu_a)(mu_b - mu_a)'

so statistics from two batches, two sensors or two machines combine into the statistics of
their union, and the stepwise EM update ``S = (1 - eta) S + eta S_batch`` is one
``scale`` and one ``merge``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamgmm.core.gaussian import precision_cholesky, triu
from streamgmm.core.params import MixtureParams, check_covariance_type, covariance_shape

# scikit-learn adds 10 * eps to every count so an empty component never divides by zero.
COUNT_EPS = 10 * np.finfo(np.float64).eps


def _scatter_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    # Tied mixtures keep one full scatter per component: the shared covariance is their
    # count-weighted average, which keeps the statistics mergeable.
    if covariance_type == "tied":
        return (n_components, n_features, n_features)
    return covariance_shape(covariance_type, n_components, n_features)


def _outer(delta: np.ndarray, covariance_type: str) -> np.ndarray:
    """The between-means term of a merge for each covariance type."""
    if covariance_type in ("full", "tied"):
        return outer_products(delta)
    if covariance_type == "diag":
        return delta**2
    return np.mean(delta**2, axis=1)


def outer_products(delta: np.ndarray) -> np.ndarray:
    """``delta[:, :, None] * delta[:, None, :]`` of an (n, d) array: (n, d, d), the same bits.

    Multiplied features first and then laid out (n, d, d): numpy's loops over a trailing
    axis of 3 cost more than the products (3x here, on the 500 means that the online model
    pools at every M-step).
    """
    columns = np.ascontiguousarray(delta.T)
    return np.ascontiguousarray((columns[:, None, :] * columns[None, :, :]).transpose(2, 0, 1))


def _per_component(x: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """Reshape a (K,) vector to broadcast against a scatter array."""
    return x.reshape(x.shape + (1,) * (scatter.ndim - 1))


def centered_scatter(
    X: np.ndarray, resp: np.ndarray, means: np.ndarray, covariance_type: str,
    components: np.ndarray | None = None,
) -> np.ndarray:
    """``sum_i r_ik (x_i - mu_k)(x_i - mu_k)'`` per component (not divided by the count).

    The direct, cancellation-free form, one component at a time; ``components`` limits it
    to some of them (the others are left zero). Shape as :class:`SufficientStats` scatter.
    """
    k, d = means.shape
    out = np.zeros(_scatter_shape(covariance_type, k, d))
    for j in range(k) if components is None else components:
        diff = X - means[j]
        r = resp[:, j]
        if covariance_type in ("full", "tied"):
            out[j] = (diff * r[:, None]).T @ diff
        elif covariance_type == "diag":
            out[j] = r @ (diff * diff)
        else:
            out[j] = r @ np.einsum("ij,ij->i", diff, diff) / d
    return out


def moments_to_arrays(moments: np.ndarray, shift: np.ndarray, covariance_type: str
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, means and scatters (as :class:`SufficientStats` holds them) from raw weighted
    moments ``R^T F`` of shifted data, over any leading axes: a stack of several batches'
    moments gives the arrays of each in one pass (the online model's re-scored blocks).

    Parameters
    ----------
    moments : ndarray of shape (..., n_components, 1 + d + n_quadratic)
        ``resp.T @ design_matrix(X, shift, covariance_type)``: per component the summed
        responsibility, the summed ``z = x - shift`` and the summed ``q(z)``.
    shift : ndarray of shape (n_features,)
    covariance_type : str
    """
    d = shift.shape[0]
    counts = moments[..., 0] + COUNT_EPS
    offset = moments[..., 1 : 1 + d] / counts[..., None]
    second = moments[..., 1 + d :] / counts[..., None]
    if covariance_type in ("full", "tied"):
        rows, cols = triu(d)
        m2 = np.empty(moments.shape[:-1] + (d, d))
        m2[..., rows, cols] = second
        m2[..., cols, rows] = second
        # Var = E[z z'] - E[z] E[z]'; the shift keeps both terms small.
        scatter = m2 - offset[..., :, None] * offset[..., None, :]
    elif covariance_type == "diag":
        scatter = second - offset**2
    else:
        scatter = (second[..., 0] - np.einsum("...i,...i->...", offset, offset)) / d
    return counts, offset + shift, scatter


@dataclass(frozen=True, eq=False)
class SufficientStats:
    """Counts, means and scatters of a mixture's components: accumulate, scale, merge.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    counts : ndarray of shape (n_components,)
        Weighted number of points per component (any non-negative scale).
    means : ndarray of shape (n_components, n_features)
    scatter : ndarray
        Biased covariance per component: (K, d, d) for full and tied, (K, d) for diag and
        (K,) for spherical (the mean variance over the dimensions).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 1.0]])
    >>> resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> a = SufficientStats.from_responsibilities(X[:2], resp[:2], "diag")
    >>> b = SufficientStats.from_responsibilities(X[2:], resp[2:], "diag")
    >>> whole = SufficientStats.from_responsibilities(X, resp, "diag")
    >>> bool(np.allclose(a.merge(b).means, whole.means))
    True
    """

    covariance_type: str
    counts: np.ndarray
    means: np.ndarray
    scatter: np.ndarray

    # ------------------------------------------------------------------ construction

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str) -> SufficientStats:
        """Statistics of no data at all: the identity of :meth:`merge`."""
        check_covariance_type(covariance_type)
        return cls(
            covariance_type,
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(_scatter_shape(covariance_type, n_components, n_features)),
        )

    @classmethod
    def from_responsibilities(
        cls,
        X: np.ndarray,
        resp: np.ndarray,
        covariance_type: str,
        sample_weight: np.ndarray | None = None,
    ) -> SufficientStats:
        """Statistics of a batch ``X`` (n, d) with responsibilities ``resp`` (n, K).

        Two passes, means first and then scatters about each component's own mean: exact
        whatever the data's offset (used for initialisation and tests, not the hot path).
        """
        check_covariance_type(covariance_type)
        X = np.asarray(X, dtype=np.float64)
        resp = np.asarray(resp, dtype=np.float64)
        if sample_weight is not None:
            resp = resp * np.asarray(sample_weight, dtype=np.float64)[:, None]
        counts = resp.sum(axis=0) + COUNT_EPS
        # Sum deviations from a centre, not raw values: far from the origin a BLAS product
        # of raw values loses digits in an order that depends on the kernel.
        centre = X[0] if len(X) else np.zeros(X.shape[1])
        means = centre + (resp.T @ (X - centre)) / counts[:, None]
        ndim = len(_scatter_shape(covariance_type, *means.shape))
        scatter = centered_scatter(X, resp, means, covariance_type)
        scatter /= counts.reshape((-1,) + (1,) * (ndim - 1))
        return cls(covariance_type, counts, means, scatter)

    @classmethod
    def from_labels(cls, X: np.ndarray, labels: np.ndarray, n_components: int,
                    covariance_type: str) -> SufficientStats:
        """:meth:`from_responsibilities` of hard responsibilities, ``labels`` (n,) in
        ``[0, n_components)``, without the (n, K) array: per-component sums by ``bincount``
        (a k-means start of a million points: 30 ms instead of 0.5 s)."""
        check_covariance_type(covariance_type)
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        counts = np.bincount(labels, minlength=n_components).astype(np.float64) + COUNT_EPS
        centre = X[0] if n else np.zeros(d)
        deviations = X - centre
        sums = np.column_stack([np.bincount(labels, weights=deviations[:, j],
                                            minlength=n_components) for j in range(d)])
        means = centre + sums / counts[:, None]
        diff = X - means[labels]
        out = np.zeros(_scatter_shape(covariance_type, n_components, d))
        if covariance_type in ("full", "tied"):
            for a, b in zip(*triu(d)):
                out[:, a, b] = np.bincount(labels, weights=diff[:, a] * diff[:, b],
                                           minlength=n_components)
                out[:, b, a] = out[:, a, b]
        elif covariance_type == "diag":
            for a in range(d):
                out[:, a] = np.bincount(labels, weights=diff[:, a] ** 2, minlength=n_components)
        else:
            out[:] = np.bincount(labels, weights=np.einsum("ij,ij->i", diff, diff) / d,
                                 minlength=n_components)
        out /= counts.reshape((-1,) + (1,) * (out.ndim - 1))
        return cls(covariance_type, counts, means, out)

    @classmethod
    def from_params(cls, params: MixtureParams, total: float = 1.0) -> SufficientStats:
        """Statistics that reproduce ``params`` (``reg_covar`` is kept in the scatter)."""
        k, d = params.n_components, params.n_features
        if params.covariance_type == "tied":
            scatter = np.broadcast_to(params.covariances, (k, d, d)).copy()
        else:
            scatter = np.array(params.covariances, dtype=np.float64)
        return cls(
            params.covariance_type,
            np.asarray(params.weights, dtype=np.float64) * total,
            np.array(params.means, dtype=np.float64),
            scatter,
        )

    # ------------------------------------------------------------------ algebra

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def total(self) -> float:
        """Sum of the counts."""
        return float(self.counts.sum())

    def scale(self, factor: float) -> SufficientStats:
        """The same moments carried by ``factor`` times the weight."""
        return SufficientStats(self.covariance_type, self.counts * factor, self.means, self.scatter)

    def normalized(self) -> SufficientStats:
        """Rescaled so that the counts sum to one."""
        total = self.total
        return self.scale(1.0 / total) if total > 0 else self

    @classmethod
    def pool(cls, parts: Sequence[SufficientStats]) -> SufficientStats:
        """Statistics of the union of the data behind every one of ``parts`` (one pass).

        The same result as merging them one by one, computed as deviations about the pooled
        means (no raw second moments, so no cancellation)::

            n = sum_b n_b,   mu = sum_b n_b mu_b / n,
            C = sum_b (n_b / n) (C_b + (mu_b - mu)(mu_b - mu)')
        """
        return cls.pool_arrays(parts[0].covariance_type,
                               np.stack([p.counts for p in parts]),
                               np.stack([p.means for p in parts]),
                               np.stack([p.scatter for p in parts]))

    @classmethod
    def pool_arrays(cls, covariance_type: str, counts: np.ndarray, means: np.ndarray,
                    scatter: np.ndarray) -> SufficientStats:
        """:meth:`pool` of parts given as stacked arrays: counts (B, K), means (B, K, d) and
        scatters (B, ...), the same bits (the online model pools its blocks this way, with
        no statistics object per block)."""
        total = counts.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, counts / total, 1.0 / len(counts))
        pooled_means = np.einsum("bk,bkd->kd", share, means)
        delta = means - pooled_means[None]
        b, k, d = delta.shape
        between = _outer(delta.reshape(b * k, d), covariance_type).reshape(scatter.shape)
        weights = share.reshape(share.shape + (1,) * (scatter.ndim - 2))
        between += scatter  # in place: weights * (scatter + between), summed over parts
        between *= weights
        pooled_scatter = np.sum(between, axis=0)
        return cls(covariance_type, total, pooled_means, pooled_scatter)

    def select(self, components: Sequence[int]) -> SufficientStats:
        """The statistics of some components only (in the given order)."""
        idx = np.asarray(components, dtype=np.intp)
        return SufficientStats(self.covariance_type, self.counts[idx], self.means[idx],
                               self.scatter[idx])

    def replace(self, parts: Mapping[int, SufficientStats]) -> SufficientStats:
        """A copy with component ``k`` replaced by the single component of ``parts[k]``."""
        counts, means, scatter = self.counts.copy(), self.means.copy(), self.scatter.copy()
        for k, part in parts.items():
            counts[k], means[k], scatter[k] = part.counts[0], part.means[0], part.scatter[0]
        return SufficientStats(self.covariance_type, counts, means, scatter)

    def merge(self, other: SufficientStats) -> SufficientStats:
        """Statistics of the union of the data behind ``self`` and ``other``."""
        if other.covariance_type != self.covariance_type or other.means.shape != self.means.shape:
            raise ValueError(
                "cannot merge statistics of different mixtures: "
                f"{self.covariance_type} {self.means.shape} vs "
                f"{other.covariance_type} {other.means.shape}"
            )
        wa, wb = self.counts, other.counts
        w = wa + wb
        with np.errstate(invalid="ignore", divide="ignore"):
            fb = np.where(w > 0, wb / w, 0.0)
        fa = 1.0 - fb
        delta = other.means - self.means
        means = self.means + fb[:, None] * delta
        scatter = (
            _per_component(fa, self.scatter) * self.scatter
            + _per_component(fb, other.scatter) * other.scatter
            + _per_component(fa * fb, self.scatter) * _outer(delta, self.covariance_type)
        )
        return SufficientStats(self.covariance_type, w, means, scatter)

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return self.merge(other)

    def interpolate(self, batch: SufficientStats, step: float) -> SufficientStats:
        """Stepwise EM move ``(1 - step) * self + step * batch``, both read as normalised.

        Each side is normalised first so that ``step`` is the share of the new statistics
        whatever the batch size (Cappe & Moulines 2009, eq. 5).
        """
        return self.normalized().scale(1.0 - step).merge(batch.normalized().scale(step))

    # ------------------------------------------------------------------ M-step

    def covariances(self, reg_covar: float) -> np.ndarray:
        """Covariances with ``reg_covar`` added to the diagonal (the M-step's covariances)."""
        ctype, s = self.covariance_type, self.scatter
        if ctype == "tied":
            w = self.counts / self.counts.sum()
            s = np.einsum("k,kij->ij", w, s)
        if ctype in ("full", "tied"):
            d = s.shape[-1]
            # Rounding leaves tiny asymmetries; the covariance is symmetric by definition.
            s = 0.5 * (s + np.swapaxes(s, -1, -2))
            return s + reg_covar * np.eye(d)
        return s + reg_covar

    def to_params(self, reg_covar: float) -> MixtureParams:
        """M-step: weights, means and regularised covariances.

        Raises
        ------
        ValueError
            If a covariance is not positive definite even after ``reg_covar``.
        """
        covariances = self.covariances(reg_covar)
        return MixtureParams(
            self.counts / self.counts.sum(),
            self.means,
            covariances,
            precision_cholesky(covariances, self.covariance_type),
            self.covariance_type,
        )

    def repaired(self, reg_covar: float, rcond: float = 1e-10) -> SufficientStats:
        """Scatters projected so that every covariance is safely positive definite.

        Eigenvalues are floored at ``rcond * largest`` (and at zero): a fixed ``reg_covar``
        is invisible next to a variance of 1e24, where rounding alone breaks Cholesky. Used
        by the online path, which must never stop on degenerate data; batch ``fit`` raises
        instead, as scikit-learn does.
        """
        s = self.scatter
        if self.covariance_type in ("full", "tied"):
            s = 0.5 * (s + np.swapaxes(s, -1, -2))
            vals, vecs = np.linalg.eigh(s)
            top = np.max(np.abs(vals), axis=-1, keepdims=True)
            vals = np.maximum(vals, rcond * top)
            s = np.einsum("kij,kj,klj->kil", vecs, vals, vecs)
        else:
            top = np.max(np.abs(s)) if s.size else 0.0
            s = np.maximum(s, rcond * top)
        s = np.where(np.isfinite(s), s, 0.0)
        return SufficientStats(self.covariance_type, self.counts, self.means, s)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict:
        """Plain dict of arrays; :meth:`from_state` restores it exactly."""
        return {
            "covariance_type": self.covariance_type,
            "counts": self.counts.copy(),
            "means": self.means.copy(),
            "scatter": self.scatter.copy(),
        }

    @classmethod
    def from_state(cls, state: Mapping) -> SufficientStats:
        """Rebuild statistics saved by :meth:`to_state`, checking their shapes."""
        ctype = state["covariance_type"]
        check_covariance_type(ctype)
        counts = np.array(state["counts"], dtype=np.float64)
        means = np.array(state["means"], dtype=np.float64)
        scatter = np.array(state["scatter"], dtype=np.float64)
        if counts.ndim != 1 or means.ndim != 2 or means.shape[0] != counts.shape[0]:
            raise ValueError("sufficient statistics have inconsistent shapes")
        if scatter.shape != _scatter_shape(ctype, *means.shape):
            raise ValueError("sufficient statistics have inconsistent shapes")
        return cls(ctype, counts, means, scatter)
