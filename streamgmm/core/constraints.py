"""The rules of the mixture's hyper-parameters, declared once.

:data:`PARAMETER_CONSTRAINTS` maps each parameter name to the values it accepts, in the style
of scikit-learn's ``_parameter_constraints``: a list of constraints, any of which may hold
(:class:`Interval`, :class:`Options`, or ``None`` for "None is allowed"). The estimator
(:class:`~streamgmm.GaussianMixture`), the online settings
(:class:`~streamgmm.core.online.OnlineSettings`), the step schedule
(:func:`~streamgmm.core.stepwise.check_schedule`) and the daemon's config
(``streamgmm.daemon.config``) all check against these entries, so a range is written in one
place and means the same thing everywhere.

One meaning per value: ``step_constant=None`` is the decaying step; a constant step is a
number in (0, 1]. (The daemon's TOML has no ``None``: there ``step_constant = 0`` spells it,
mapped to ``None`` by the config parser.)

Pure (no I/O, nothing of the daemon), like the rest of :mod:`streamgmm.core`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamgmm.core.blocks import RETAIN_KINDS
from streamgmm.core.initialize import INIT_PARAMS
from streamgmm.core.params import COVARIANCE_TYPES

__all__ = [
    "PARAMETER_CONSTRAINTS",
    "Interval",
    "Options",
    "describe",
    "is_valid",
    "validate_online_settings",
    "validate_params",
    "validate_schedule",
]


@dataclass(frozen=True)
class Interval:
    """Numbers of one kind between two bounds.

    Parameters
    ----------
    kind : {numbers.Integral, numbers.Real}
        Integers only, or any real number (bools are neither; reals must be finite).
    left, right : float or None
        The bounds; ``None`` is unbounded on that side.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.

    Examples
    --------
    >>> import numbers
    >>> step = Interval(numbers.Real, 0, 1, closed="right")
    >>> step.is_satisfied_by(1.0), step.is_satisfied_by(0.0)
    (True, False)
    >>> str(step)
    'a number > 0.0 and <= 1.0'
    """

    kind: type
    left: float | None
    right: float | None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither', "
                             f"got {self.closed!r}")

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if self.kind is numbers.Real and not math.isfinite(value):
            return False
        if self.left is not None:
            left_in = self.closed in ("left", "both")
            if value < self.left or (value == self.left and not left_in):
                return False
        if self.right is not None:
            right_in = self.closed in ("right", "both")
            if value > self.right or (value == self.right and not right_in):
                return False
        return True

    def bounds(self) -> str:
        """The bounds alone, e.g. ``"> 0.5 and <= 1.0"`` (``""`` when unbounded)."""
        show = float if self.kind is numbers.Real else int
        parts = []
        if self.left is not None:
            op = ">=" if self.closed in ("left", "both") else ">"
            parts.append(f"{op} {show(self.left)}")
        if self.right is not None:
            op = "<=" if self.closed in ("right", "both") else "<"
            parts.append(f"{op} {show(self.right)}")
        return " and ".join(parts)

    def __str__(self) -> str:
        kind = "an integer" if self.kind is numbers.Integral else "a number"
        return f"{kind} {self.bounds()}".strip()


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (compared with ``==``, as ``in`` does)."""

    values: tuple

    def is_satisfied_by(self, value: Any) -> bool:
        try:
            return value in self.values
        except Exception:  # an array compared with a string, say
            return False

    def __str__(self) -> str:
        return f"one of {self.values}"


Constraint = Interval | Options | None

_REAL, _INT = numbers.Real, numbers.Integral

#: Parameter name -> the constraints any of which a valid value satisfies.
PARAMETER_CONSTRAINTS: dict[str, list[Constraint]] = {
    "n_components": [Interval(_INT, 1, None, closed="left")],
    "covariance_type": [Options(COVARIANCE_TYPES)],
    "tol": [Interval(_REAL, 0, None, closed="left")],
    "reg_covar": [Interval(_REAL, 0, None, closed="left")],
    "max_iter": [Interval(_INT, 0, None, closed="left")],
    "n_init": [Interval(_INT, 1, None, closed="left")],
    "init_params": [Options(INIT_PARAMS)],
    "verbose_interval": [Interval(_INT, 1, None, closed="left")],
    # Robbins-Monro: the steps (t + t0)^-alpha sum to infinity, their squares do not
    # (alpha = 1, t0 = 0, the default, gives each batch its share m / n of the points).
    "step_decay": [Interval(_REAL, 0.5, 1, closed="right")],
    "step_offset": [Interval(_REAL, 0, None, closed="left")],
    # None: the decaying step above; a number: that step for every update (drifting data).
    "step_constant": [Interval(_REAL, 0, 1, closed="right"), None],
    "retain": [Options(RETAIN_KINDS)],
    "retain_size": [Interval(_INT, 1, None, closed="left")],
    # E-step evaluations per absorbed point beyond its own (streamgmm.core.online).
    "effort": [Interval(_REAL, 0, 64, closed="both")],
    # Birth and merge moves (and the re-seeding of dead components) in partial_fit.
    "moves": [Options((True, False))],
}


def is_valid(value: Any, constraints: Sequence[Constraint]) -> bool:
    """Does ``value`` satisfy at least one of ``constraints``?"""
    return any(
        value is None if c is None else c.is_satisfied_by(value) for c in constraints
    )


def describe(constraints: Sequence[Constraint]) -> str:
    """``"a number > 0.0 and <= 1.0 or None"``: what the constraints accept, in words."""
    words = [str(c) for c in constraints if c is not None]
    if any(c is None for c in constraints):
        words.append("None")
    return " or ".join(words)


def validate_params(
    params: Mapping[str, Any],
    constraints: Mapping[str, Sequence[Constraint]] = PARAMETER_CONSTRAINTS,
) -> None:
    """Check every entry of ``params`` that ``constraints`` has a rule for.

    Parameters
    ----------
    params : Mapping
        Parameter name -> value; names without a rule are not checked.
    constraints : Mapping, default=PARAMETER_CONSTRAINTS

    Raises
    ------
    ValueError
        For the first invalid value: ``"<name> must be <what it accepts>, got <value>"``.

    Examples
    --------
    >>> validate_params({"step_constant": None, "n_components": 3})
    >>> validate_params({"step_constant": 1.5})
    Traceback (most recent call last):
    ...
    ValueError: step_constant must be a number > 0.0 and <= 1.0 or None, got 1.5
    """
    for name, value in params.items():
        rule = constraints.get(name)
        if rule is not None and not is_valid(value, rule):
            raise ValueError(f"{name} must be {describe(rule)}, got {value!r}")


def validate_schedule(decay: float, offset: float, constant: float | None) -> None:
    """Check a step schedule: ``constant`` if given (then the other two are unused), else
    ``decay`` and ``offset``; raises ``ValueError`` as :func:`validate_params`."""
    validate_params({"step_constant": constant})
    if constant is None:
        validate_params({"step_decay": decay, "step_offset": offset})


def validate_online_settings(settings: Any) -> None:
    """Check :class:`~streamgmm.core.online.OnlineSettings` (any object with its fields).

    Raises
    ------
    ValueError
        As :func:`validate_params`, or when ``retain_size < n_components``.
    """
    validate_params({name: getattr(settings, name) for name in
                     ("n_components", "covariance_type", "reg_covar", "retain", "retain_size",
                      "effort", "moves")})
    validate_schedule(settings.step_decay, settings.step_offset, settings.step_constant)
    if settings.retain_size < settings.n_components:
        raise ValueError(
            f"retain_size must be >= n_components ({settings.n_components}), "
            f"got {settings.retain_size}"
        )
