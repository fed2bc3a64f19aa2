"""GaussianMixture: a scikit-learn compatible estimator with batch and online EM.

``fit`` is batch EM and reproduces :class:`sklearn.mixture.GaussianMixture` iteration for
iteration from the same start; ``partial_fit`` is stepwise online EM built for streams that
arrive in sensor order (see :mod:`streamgmm.core.online`). The class coordinates the pure
functions of :mod:`streamgmm.core`; it holds no math of its own.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamgmm.core.constraints import validate_params
from streamgmm.core.em import run_em
from streamgmm.core.gaussian import precision_cholesky_from_precisions
from streamgmm.core.initialize import initial_statistics
from streamgmm.core.online import OnlineEM, OnlineSettings
from streamgmm.core.params import MixtureParams, covariance_shape
from streamgmm.core.scoring import estimate_log_prob_resp, log_likelihoods, most_likely_components
from streamgmm.core.suffstats import SufficientStats
from streamgmm.parallel import current_pool


class NotFittedError(ValueError, AttributeError):
    """Raised when a fitted attribute is needed before ``fit`` or ``partial_fit``."""


class ConvergenceWarning(UserWarning):
    """Batch EM stopped at ``max_iter`` before the lower bound settled."""


try:  # Use scikit-learn's classes when it is installed so its tooling recognises ours.
    from sklearn.exceptions import ConvergenceWarning  # type: ignore[no-redef]  # noqa: F811
    from sklearn.exceptions import NotFittedError as _SkNotFitted

    class NotFittedError(_SkNotFitted):  # type: ignore[no-redef]  # noqa: F811
        """Raised when a fitted attribute is needed before ``fit`` or ``partial_fit``."""

except ImportError:  # pragma: no cover - scikit-learn is optional at run time
    pass


def _check_random_state(seed) -> np.random.RandomState:
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a RandomState, got {seed!r}")


# Hyper-parameters validated against PARAMETER_CONSTRAINTS by the estimator itself.
_CHECKED_HERE = ("n_components", "max_iter", "n_init", "verbose_interval", "tol",
                 "reg_covar", "covariance_type", "init_params")


class _ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` as scikit-learn's BaseEstimator defines them,
    without importing scikit-learn at run time."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters of this estimator."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any):
        """Set constructor parameters; returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name)
            same = value is default
            if not same:
                try:
                    same = bool(value == default)
                except Exception:
                    same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        tags = Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False))
        tags.input_tags.two_d_array = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "means_")


class GaussianMixture(_ParamsMixin):
    """Gaussian mixture fitted by batch EM (``fit``) or stepwise online EM (``partial_fit``).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Batch EM stops when the mean log-likelihood gains less than this.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (scikit-learn's semantics).
    max_iter : int, default=100
        Batch EM iterations per initialisation.
    n_init : int, default=1
        Batch EM initialisations; the best lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weights_init, means_init, precisions_init : array-like, optional
        Starting parameters, as in scikit-learn; also used by the first ``partial_fit``.
    random_state : int, RandomState or None
    warm_start : bool, default=False
        ``fit`` starts from the previous solution.
    verbose : int, default=0
    verbose_interval : int, default=10
    retain : {"reservoir", "window"}, default="reservoir"
        What ``partial_fit`` remembers of the stream: a uniform sample of all of it, or the
        latest points (a robot that changes place: what leaves the window leaves the model;
        with the default step every point in the window weighs the same, as in batch EM on
        the window).
    retain_size : int, default=20000
        Points retained (>= ``n_components``); memory is bounded by it, not by the stream.
        The online update re-scores a uniform subsample of at most 8,192 of them, so a
        larger ``retain_size`` costs memory, not time per point.
    effort : float, default=1.0
        E-step evaluations per absorbed point spent on re-scoring retained points and on
        moves, beyond the point's own, once the stream is under way: early points and
        points where the model has no components buy up to 10x more (the formula is in
        :mod:`streamgmm.core.online`). Higher is slower and closer to batch EM.
    moves : bool, default=True
        Birth and merge moves, and re-seeding of components that lost their weight.
        ``effort=0, moves=False`` (with ``step_decay=0.6, step_offset=2``) is textbook
        stepwise EM.
    step_decay : float, default=1.0
        ``alpha`` of the online step ``eta = (n / m + t0) ** -alpha`` of a batch of ``m``
        points after ``n`` in all, in (0.5, 1]; the default gives every point the same weight
        (as batch EM), smaller values forget older batches.
    step_offset : float, default=0.0
        ``t0`` of the online step.
    step_constant : float or None, default=None
        A constant online step in (0, 1] instead: an exponential memory of about
        ``1 / step_constant`` batches, for drifting streams. With ``retain="window"`` it is
        not needed (the window forgets) and costs fit: a step of 0.05 left the models of
        ``bench_drift`` 0.05-0.10 nats/point further from batch EM on the window.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
    n_features_in_ : int
    n_seen_ : int
        Points absorbed by ``fit`` and ``partial_fit`` together.
    n_reseeded_ : int
        Components re-seeded online after losing their weight.
    n_moves_ : int
        Birth-merge moves accepted: the two most redundant components merged, the freed
        one born on badly explained retained points.
    n_change_points_ : int
        Batches that fitted worse than the retained points by more than 1 nat/point after
        a batch that did not (the stream left what the model describes);
        ``online_.last_change_point`` is the ``n_seen_`` of the last one.
    work_ : int
        E-step point-evaluations spent by ``partial_fit`` (and ``fit``'s hand-over).

    Examples
    --------
    >>> import numpy as np
    >>> from streamgmm import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(6, 1, (500, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> sorted(round(float(m)) for m in gm.means_[:, 0])
    [0, 6]
    >>> online = GaussianMixture(n_components=2, random_state=0)
    >>> for batch in np.array_split(rng.permutation(X), 10):
    ...     _ = online.partial_fit(batch)
    >>> online.n_seen_
    1000
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        retain: str = "reservoir",
        retain_size: int = 20_000,
        effort: float = 1.0,
        moves: bool = True,
        step_decay: float = 1.0,
        step_offset: float = 0.0,
        step_constant: float | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.retain = retain
        self.retain_size = retain_size
        self.effort = effort
        self.moves = moves
        self.step_decay = step_decay
        self.step_offset = step_offset
        self.step_constant = step_constant

    # ------------------------------------------------------------------ validation

    def _check_hyperparameters(self) -> None:
        # The rules: streamgmm.core.constraints (shared with the daemon's config). The step
        # schedule, retain_size, effort and moves are checked with the online settings below.
        validate_params({name: getattr(self, name) for name in _CHECKED_HERE})
        self._online_settings().check()

    def _online_settings(self) -> OnlineSettings:
        return OnlineSettings(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            retain=self.retain,
            retain_size=self.retain_size,
            effort=self.effort,
            moves=self.moves,
            step_decay=self.step_decay,
            step_offset=self.step_offset,
            step_constant=self.step_constant,
        )

    def _validate_data(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        """Array of shape (n, d) in float64 or float32, finite, with the fitted dimension."""
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError(
                "sparse input is not supported: a Gaussian mixture needs dense points; "
                "call X.toarray() first"
            )
        X = np.asarray(X)
        if X.dtype.kind == "c":
            raise ValueError("Complex data not supported; pass real-valued points.")
        if X.dtype.kind not in "fiub":
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError) as exc:
                # Keep numpy's exception type (TypeError for e.g. a dict in an object array,
                # ValueError for a non-numeric string), as scikit-learn's check_array does.
                raise type(exc)(
                    f"points must be numeric, got an array of dtype {X.dtype}: {exc}"
                ) from None
        if X.ndim == 1 or X.ndim == 0:
            raise ValueError(
                f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either "
                "using X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it "
                "is a single point."
            )
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D array of points, got shape {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        n, d = X.shape
        if d == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                "required."
            )
        if n < min_samples:
            raise ValueError(
                f"Found array with {n} sample(s) (shape={X.shape}) while a minimum of "
                f"{min_samples} is required."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(
                "Input X contains NaN or infinity: drop or impute those rows before fitting "
                "(the daemon drops and counts them for you)."
            )
        if reset:
            self.n_features_in_ = d
        elif hasattr(self, "n_features_in_") and d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _check_initial_parameters(self, n_features: int) -> None:
        k = self.n_components
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            if w.shape != (k,):
                raise ValueError(
                    f"The parameter 'weights' should have the shape of ({k},), but got {w.shape}"
                )
            if np.any(w < 0) or np.any(w > 1) or not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1] and sum to 1, "
                    f"but got min {w.min()}, max {w.max()}, sum {w.sum()}"
                )
        if self.means_init is not None:
            m = np.asarray(self.means_init, dtype=np.float64)
            if m.shape != (k, n_features):
                raise ValueError(
                    f"The parameter 'means' should have the shape of {(k, n_features)}, "
                    f"but got {m.shape}"
                )
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            expected = covariance_shape(self.covariance_type, k, n_features)
            if p.shape != expected:
                raise ValueError(
                    f"The parameter '{self.covariance_type} precision' should have the shape "
                    f"of {expected}, but got {p.shape}"
                )
            try:
                if not np.all(np.isfinite(p)):
                    raise np.linalg.LinAlgError
                if self.covariance_type in ("full", "tied"):
                    # Cholesky reads one triangle only: check symmetry as scikit-learn does.
                    if not np.allclose(p, np.swapaxes(p, -1, -2)):
                        raise np.linalg.LinAlgError
                elif np.any(p <= 0):
                    raise np.linalg.LinAlgError
                precision_cholesky_from_precisions(p, self.covariance_type)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"'{self.covariance_type} precision' should be symmetric, positive-definite"
                ) from None

    # ------------------------------------------------------------------ batch EM

    def _initial_params(self, X: np.ndarray, random_state: np.random.RandomState) -> MixtureParams:
        """scikit-learn's initialisation: responsibilities, one M-step, then ``*_init``."""
        ctype = self.covariance_type
        given = (self.weights_init, self.means_init, self.precisions_init)
        weights = means = covariances = None
        if any(v is None for v in given):
            stats = initial_statistics(X, self.n_components, self.init_params, random_state,
                                       ctype)
            weights = stats.counts / X.shape[0]
            means = stats.means
            covariances = stats.covariances(self.reg_covar)
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
        if self.precisions_init is None:
            return MixtureParams.from_covariances(weights, means, covariances, ctype)
        chol = precision_cholesky_from_precisions(self.precisions_init, ctype)
        return MixtureParams.from_precisions_cholesky(weights, means, chol, ctype)

    def fit(self, X, y=None) -> GaussianMixture:
        """Batch EM on ``X`` (n_samples, n_features); returns ``self``."""
        self._fit(X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Batch EM on ``X``, then the most likely component of each row.

        Labels come from a final E-step, so they always agree with ``fit(X).predict(X)``.
        """
        Xf = self._fit(X)
        if type(Xf).__module__.startswith("dask.array"):
            # Labels stay on the workers, chunk by chunk.
            return Xf.map_blocks(self.predict, drop_axis=1, dtype=np.intp)
        return most_likely_components(Xf, self._params)

    def _fit(self, X) -> np.ndarray:
        """Batch EM; returns the validated float64 data (a dask array: the array itself)."""
        if type(X).__module__.startswith("dask.array"):
            # Distributed EM on the current dask client (streamgmm[dask]), see dask_em.
            from streamgmm.dask_em import fit_dask

            return fit_dask(self, X)
        self._check_hyperparameters()
        X = self._validate_data(X, reset=True, min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        self._check_initial_parameters(X.shape[1])
        Xf = X.astype(np.float64, copy=False)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        random_state = _check_random_state(self.random_state)

        pool = current_pool()  # `with streamgmm.threads(n):` around the call, if any

        def run(start: MixtureParams, previous: float):
            return run_em(
                Xf, start, reg_covar=self.reg_covar, tol=self.tol, max_iter=self.max_iter,
                lower_bound=previous, callback=self._verbose_callback if self.verbose else None,
                pool=pool,
            )

        self._em_over_inits(lambda rs: self._initial_params(Xf, rs), run, random_state, do_init)
        params = self._params
        # A fitted model is also a starting point for partial_fit: seed the online state.
        self._online = OnlineEM(self._online_settings(), X.shape[1], seed=self._online_seed())
        self._online.start(params, fitted_on=Xf)  # where partial_fit continues from
        self._sync_online_attributes()
        return Xf

    def _em_over_inits(self, initial, run, random_state, do_init: bool, stacklevel: int = 3):
        """The ``n_init`` loop shared by in-memory and dask ``fit``; sets the fit attributes.

        ``initial(random_state)`` gives a start, ``run(start, lower_bound)`` the
        :class:`~streamgmm.core.em.EMResult` of EM from it. Returns the best result (None
        when ``max_iter == 0``).
        """
        n_init = self.n_init if do_init else 1
        best = None
        self.converged_ = False
        for init in range(n_init):
            if self.verbose:
                print(f"Initialization {init}")
            start = initial(random_state) if do_init else self._params
            previous = -np.inf if do_init else self.lower_bound_
            if self.max_iter == 0:
                em, result = None, (start, -np.inf, 0, False, [])
            else:
                em = run(start, previous)
                result = (em.params, em.lower_bound, em.n_iter, em.converged, em.lower_bounds)
            # scikit-learn's rule: the best lower bound wins; with max_iter=0 (no bound) the
            # last initialisation is kept.
            if best is None or self.max_iter == 0 or result[1] > best[1][1]:
                best = (em, result)
        params, lower_bound, n_iter, converged, lower_bounds = best[1]
        if not converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        self.converged_ = converged
        self._set_params(params)
        self.n_iter_ = n_iter
        self.lower_bound_ = lower_bound
        self.lower_bounds_ = lower_bounds
        return best[0]

    def _verbose_callback(self, n_iter: int, change: float) -> None:
        if n_iter % self.verbose_interval == 0:
            print(f"  Iteration {n_iter}\t change: {change:.5g}")

    # ------------------------------------------------------------------ online EM

    def _online_seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(_check_random_state(self.random_state).randint(0, 2**31 - 1))

    def partial_fit(self, X, y=None, *, represented: float | None = None) -> GaussianMixture:
        """Stepwise online EM on one batch ``X`` (any number of rows >= 1); returns ``self``.

        The first calls initialise the model: from ``weights_init``/``means_init``/
        ``precisions_init`` at once when all are given, else by a short batch EM once at
        least ``n_components`` points have arrived (earlier points are kept, not lost),
        started from the given ``*_init`` completed as ``fit`` would (when some are given)
        or from a k-means++ seeding (when none is).

        ``represented`` (at least ``len(X)``, default ``len(X)``) is the number of stream
        points ``X`` stands for when it is a uniform subset of a larger batch: ``n_seen_``
        and the step count that many (:meth:`streamgmm.core.online.OnlineEM.update`).
        """
        first = not hasattr(self, "_online")
        if first:
            self._check_hyperparameters()
        X = self._validate_data(X, reset=first, min_samples=1)
        if first:
            self._check_initial_parameters(X.shape[1])
            self._online = OnlineEM(self._online_settings(), X.shape[1], seed=self._online_seed())
            given = (self.weights_init, self.means_init, self.precisions_init)
            if all(v is not None for v in given):
                self._online.start(self._initial_params(X, _check_random_state(0)))
            elif any(v is not None for v in given):
                # Some *_init given: once n_components points are buffered, start the
                # initial batch EM from them, the rest estimated as ``fit`` does (from
                # ``init_params`` responsibilities), instead of from a k-means++ seeding.
                # (A bound method, not a lambda, so that the estimator still pickles.)
                self._online.initializer = functools.partial(
                    self._initial_params, random_state=np.random.RandomState(self._online_seed())
                )
        self._online.pool = current_pool()  # only for this call: the estimator pickles
        try:
            info = self._online.update(X.astype(np.float64, copy=False),
                                       represented=represented)
        finally:
            self._online.pool = None
        self.last_avg_log_likelihood_ = info.avg_log_likelihood
        self._sync_online_attributes()
        return self

    def _sync_online_attributes(self) -> None:
        online = self._online
        self.n_seen_ = online.n_seen
        self.n_reseeded_ = online.n_reseeded
        self.n_moves_ = online.n_moves
        self.n_change_points_ = online.n_change_points
        self.n_repaired_ = online.n_repaired
        self.work_ = online.work
        if online.params is not None:
            self._set_params(online.params)
            if not hasattr(self, "converged_"):
                self.converged_ = False
                self.n_iter_ = 0
                self.lower_bound_ = -np.inf
                self.lower_bounds_ = []

    # ------------------------------------------------------------------ parameters

    def _set_params(self, params: MixtureParams) -> None:
        self._params = params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions

    def _check_is_fitted(self) -> MixtureParams:
        if not hasattr(self, "_params"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator (or 'partial_fit' with at "
                "least n_components points in all)."
            )
        return self._params

    @property
    def params_(self) -> MixtureParams:
        """The fitted parameters as one :class:`~streamgmm.MixtureParams` value."""
        return self._check_is_fitted()

    @property
    def stats_(self) -> SufficientStats:
        """The sufficient statistics behind the model, with counts in points (``n_seen_``).

        Counts in points make statistics of models fed by different sensors or shards merge
        with the right weights: ``a.stats_.merge(b.stats_).to_params(reg_covar)``.
        """
        self._check_is_fitted()
        online = getattr(self, "_online", None)
        if online is None or online.stats is None:
            raise NotFittedError(
                f"This {type(self).__name__} holds parameters but no statistics; fit it or "
                "call partial_fit first."
            )
        return online.stats.normalized().scale(float(max(online.n_seen, 1)))

    # ------------------------------------------------------------------ inference

    def _log_prob_resp(self, X) -> tuple[np.ndarray, np.ndarray]:
        params = self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        return estimate_log_prob_resp(X.astype(np.float64, copy=False), params)

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each row under the mixture, shape (n_samples,)."""
        params = self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        return log_likelihoods(X.astype(np.float64, copy=False), params)

    def score(self, X, y=None) -> float:
        """Mean log-density per row of ``X``."""
        return float(self.score_samples(X).mean())

    def predict(self, X) -> np.ndarray:
        """Most likely component of each row."""
        params = self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        return most_likely_components(X.astype(np.float64, copy=False), params)

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities: probability of each component for each row, shape (n, K)."""
        return np.exp(self._log_prob_resp(X)[1])

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` points; returns ``(X, component_labels)``."""
        params = self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least "
                "one sample."
            )
        rng = _check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, params.weights)
        # The same draws as scikit-learn's sample() for every covariance type, so equal
        # parameters and random_state give equal samples.
        ctype, d = params.covariance_type, params.n_features
        if ctype in ("full", "tied"):
            covs = params.full_covariances()
            X = np.vstack([
                rng.multivariate_normal(mean, cov, int(c))
                for mean, cov, c in zip(params.means, covs, counts)
            ])
        else:
            X = np.vstack([
                mean + rng.standard_normal(size=(c, d)) * np.sqrt(cov)
                for mean, cov, c in zip(params.means, params.covariances, counts)
            ])
        y = np.concatenate([np.full(c, j, dtype=int) for j, c in enumerate(counts)])
        return X, y

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        X = np.asarray(X)
        return -2 * self.score(X) * X.shape[0] + self._params.n_parameters() * math.log(X.shape[0])

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        X = np.asarray(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._params.n_parameters()

    # ------------------------------------------------------------------ streaming state

    def get_state(self) -> dict:
        """The whole streaming state (statistics, step counter, retained sample, RNG).

        Plain values and numpy arrays only; :meth:`from_state` restores it exactly, so a
        checkpointed model resumes bit for bit.
        """
        if not hasattr(self, "_online"):
            self._check_is_fitted()
        fitted = hasattr(self, "converged_")
        return {
            "format": 2,
            "hyperparameters": {
                k: v for k, v in self.get_params().items()
                if k not in ("weights_init", "means_init", "precisions_init", "random_state")
            },
            "online": self._online.to_state(),
            "n_features_in": int(self.n_features_in_),
            # None while partial_fit is still buffering its first n_components points.
            "fit": {
                "converged": bool(self.converged_),
                "n_iter": int(self.n_iter_),
                "lower_bound": float(self.lower_bound_),
            } if fitted else None,
        }

    @classmethod
    def from_state(cls, state: Mapping) -> GaussianMixture:
        """Rebuild an estimator saved by :meth:`get_state`."""
        if state.get("format") != 2:
            raise ValueError(
                f"GaussianMixture state format {state.get('format')!r} is not the one this "
                "streamgmm reads (2): it was written by an earlier version; refit from the "
                "data, or load its mixture (streamgmm load)")
        gm = cls(**state["hyperparameters"])
        gm.n_features_in_ = int(state["n_features_in"])
        gm._online = OnlineEM.from_state(state["online"])
        fit = state["fit"]
        if fit is not None:
            gm.converged_ = bool(fit["converged"])
            gm.n_iter_ = int(fit["n_iter"])
            gm.lower_bound_ = float(fit["lower_bound"])
            gm.lower_bounds_ = []
        gm._sync_online_attributes()
        return gm

    @property
    def online_(self) -> OnlineEM:
        """The stepwise EM state behind ``partial_fit``: statistics, retained sample, counters.

        Exists once ``fit`` or ``partial_fit`` has been called.
        """
        if not hasattr(self, "_online"):
            raise NotFittedError(f"This {type(self).__name__} has no streaming state yet.")
        return self._online

    def adopt(self, params: MixtureParams, *, prior_points: float = 0.0) -> None:
        """Take parameters fitted elsewhere (a refit, a loaded mixture) as the model.

        Parameters
        ----------
        params : MixtureParams
        prior_points : float, default=0
            Points the adopted mixture stands for beyond the retained ones (a mixture fitted
            elsewhere, e.g. a site map): it stays in the statistics with that weight and
            fades as the stream outgrows it (see :meth:`OnlineEM.adopt`). A refit on the
            retained points leaves it 0.

        The retained points are re-scored under ``params``, so the online updates continue
        from it. A model that has no streaming state yet (nothing fitted, e.g. a daemon
        model seeded by a ``load``) gets one, with the dimension of ``params``.
        """
        if not hasattr(self, "_online"):
            self._check_hyperparameters()
            self.n_features_in_ = params.n_features
            self._online = OnlineEM(self._online_settings(), params.n_features,
                                    seed=self._online_seed())
            self._online.start(params, prior_points=prior_points)
        else:
            self._online.adopt(params, prior_points=prior_points)
        self._sync_online_attributes()

    @classmethod
    def from_parameters(
        cls, weights, means, covariances, covariance_type: str = "full"
    ) -> GaussianMixture:
        """An estimator that holds the given mixture, ready for ``predict``/``score_samples``.

        Used to turn a received mixture (a daemon update or snapshot) back into an estimator.

        Parameters
        ----------
        weights : array_like of shape (n_components,)
        means : array_like of shape (n_components, n_features)
        covariances : array_like
            Shape per ``covariance_type``: (K, d, d) full, (d, d) tied, (K, d) diag,
            (K,) spherical.
        covariance_type : {"full", "tied", "diag", "spherical"}, default="full"

        Returns
        -------
        GaussianMixture
            Looks fitted: ``converged_=True``, ``n_iter_=0``, ``lower_bound_=nan``,
            ``n_seen_=0``. It carries no online state, so ``fit``/``partial_fit`` start afresh
            (pass the parameters as ``*_init`` to warm-start instead).

        Raises
        ------
        ValueError
            If the shapes disagree or a covariance is not positive definite.
        """
        params = MixtureParams.from_covariances(weights, means, covariances, covariance_type)
        gm = cls(n_components=params.n_components, covariance_type=covariance_type)
        gm.n_features_in_ = params.n_features
        gm._set_params(params)
        gm.converged_ = True
        gm.n_iter_ = 0
        gm.lower_bound_ = float("nan")
        gm.lower_bounds_ = []
        gm.n_seen_ = 0
        return gm
