"""MixtureParams: the parameters of a Gaussian mixture as one immutable value.

This module is also the one home of the covariance types (:data:`COVARIANCE_TYPES`) and of
the shape each gives the covariances (:func:`covariance_shape`): the estimator, the codec,
the CLI and the daemon's config all take them from here. A new covariance type starts with
an entry in both, then its densities in :mod:`streamgmm.core.gaussian` and its statistics in
:mod:`streamgmm.core.suffstats`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamgmm.core.gaussian import (
    covariances_from_precision_cholesky,
    precision_cholesky,
    precisions_from_cholesky,
)

# In the order of the wire contract (docs/protocol.md); error messages list them so.
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


def check_covariance_type(covariance_type: str) -> None:
    """Raise ``ValueError`` unless ``covariance_type`` is one of :data:`COVARIANCE_TYPES`."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of the ``covariances`` array of a mixture.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}
    n_components : int
        Number of components ``K``.
    n_features : int
        Dimension ``d``.

    Returns
    -------
    tuple of int
        ``(K, d, d)`` full, ``(K, d)`` diag, ``(K,)`` spherical, ``(d, d)`` tied.

    Raises
    ------
    ValueError
        For an unknown covariance type.

    Examples
    --------
    >>> covariance_shape("diag", 4, 3)
    (4, 3)
    """
    check_covariance_type(covariance_type)
    k, d = n_components, n_features
    return {"full": (k, d, d), "diag": (k, d), "spherical": (k,), "tied": (d, d)}[covariance_type]



@dataclass(frozen=True, eq=False)
class MixtureParams:
    """Weights, means and covariances of a mixture, with the precision Cholesky factors.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
        Mixing proportions, summing to one.
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        Shape per ``covariance_type``: (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    precisions_cholesky : ndarray
        Upper Cholesky factors ``U`` of the precisions (``precision = U U^T``), same shape.
    covariance_type : {"full", "diag", "spherical", "tied"}
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    def __post_init__(self) -> None:
        # One memory layout whatever computed them (a Cholesky factor may come back as a
        # transposed view): the E-step's kernels then see the same bytes in the same order,
        # so equal parameters score equally, bit for bit, also after a checkpoint restore.
        for name in ("weights", "means", "covariances", "precisions_cholesky"):
            value = getattr(self, name)
            if not (isinstance(value, np.ndarray) and value.dtype == np.float64
                    and value.flags.c_contiguous):
                object.__setattr__(self, name, np.ascontiguousarray(value, dtype=np.float64))

    @classmethod
    def from_covariances(
        cls, weights, means, covariances, covariance_type: str
    ) -> MixtureParams:
        """Build parameters from covariances, computing the Cholesky factors.

        Raises
        ------
        ValueError
            If shapes disagree or a covariance is not positive definite.
        """
        check_covariance_type(covariance_type)
        weights = np.asarray(weights, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        covariances = np.asarray(covariances, dtype=np.float64)
        n_components, n_features = means.shape
        expected = covariance_shape(covariance_type, n_components, n_features)
        if weights.shape != (n_components,) or covariances.shape != expected:
            raise ValueError(
                f"inconsistent mixture shapes: weights {weights.shape}, means {means.shape}, "
                f"covariances {covariances.shape} (expected {expected} for {covariance_type!r})"
            )
        return cls(
            weights, means, covariances, precision_cholesky(covariances, covariance_type),
            covariance_type,
        )

    @classmethod
    def from_precisions_cholesky(
        cls, weights, means, precisions_cholesky, covariance_type: str
    ) -> MixtureParams:
        """Build parameters from precision Cholesky factors, computing the covariances."""
        check_covariance_type(covariance_type)
        precisions_cholesky = np.asarray(precisions_cholesky, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances_from_precision_cholesky(precisions_cholesky, covariance_type),
            precisions_cholesky,
            covariance_type,
        )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def precisions(self) -> np.ndarray:
        """Precision matrices (full, tied) or precision values (diag, spherical)."""
        return precisions_from_cholesky(self.precisions_cholesky, self.covariance_type)

    def n_parameters(self) -> int:
        """Number of free parameters, as used by BIC and AIC."""
        k, d = self.n_components, self.n_features
        cov = {
            "full": k * d * (d + 1) // 2,
            "tied": d * (d + 1) // 2,
            "diag": k * d,
            "spherical": k,
        }[self.covariance_type]
        return int(cov + k * d + k - 1)

    def full_covariances(self) -> np.ndarray:
        """Covariances expanded to shape (K, d, d), whatever the covariance type."""
        k, d = self.n_components, self.n_features
        c = self.covariances
        if self.covariance_type == "full":
            return c
        if self.covariance_type == "tied":
            return np.broadcast_to(c, (k, d, d)).copy()
        if self.covariance_type == "diag":
            return np.einsum("ki,ij->kij", c, np.eye(d))
        return c[:, None, None] * np.eye(d)

    def to_state(self) -> dict:
        """The arrays as they are (copies) and the covariance type: :meth:`from_state`
        rebuilds the same parameters bit for bit (no factorisation is recomputed)."""
        return {"weights": self.weights.copy(), "means": self.means.copy(),
                "covariances": self.covariances.copy(),
                "precisions_cholesky": self.precisions_cholesky.copy(),
                "covariance_type": self.covariance_type}

    @classmethod
    def from_state(cls, state: Mapping) -> MixtureParams:
        """Parameters saved by :meth:`to_state`."""
        return cls(*(np.array(state[k], dtype=np.float64) for k in
                     ("weights", "means", "covariances", "precisions_cholesky")),
                   str(state["covariance_type"]))
