"""Step sizes of stepwise (online) EM and the stepwise statistics update.

Stepwise EM (Cappe & Moulines 2009; Liang & Klein 2009) moves the running statistics a step
``eta_t`` towards the statistics of the newest batch::

    S_t = (1 - eta_t) S_{t-1} + eta_t S_batch,      eta_t = (t + t0) ** -alpha

with ``0.5 < alpha <= 1`` so that the steps sum to infinity but their squares do not
(Robbins-Monro). ``alpha = 1, t0 = 0`` weighs every batch equally, smaller ``alpha`` forgets
faster. A constant step ``eta`` instead keeps an exponential memory of about ``1 / eta``
batches, which is what a drifting stream needs (Sato & Ishii 2000).
"""

from __future__ import annotations

from streamgmm.core.constraints import validate_schedule
from streamgmm.core.suffstats import SufficientStats


def check_schedule(decay: float, offset: float, constant: float | None) -> None:
    """Raise ``ValueError`` for a schedule that breaks the conditions above.

    The ranges are those of :data:`~streamgmm.core.constraints.PARAMETER_CONSTRAINTS`:
    ``constant`` is ``None`` (decaying step) or in (0, 1]; with a constant step, ``decay``
    and ``offset`` are not used and not checked.
    """
    validate_schedule(decay, offset, constant)


def step_size(t: int, decay: float = 0.6, offset: float = 2.0, constant: float | None = None):
    """Step of update number ``t`` (1 for the first update after initialisation).

    Parameters
    ----------
    t : int
        Number of the update, counting from 1.
    decay : float
        ``alpha`` in ``(t + t0) ** -alpha``, in (0.5, 1].
    offset : float
        ``t0``: larger values take smaller first steps.
    constant : float or None
        If given, this step is used for every update (forgetting for drifting streams).
    """
    if constant is not None:
        return float(constant)
    base = t + offset
    # base ** -decay >= 1 when base <= 1; checking first also avoids 0.0 ** -decay.
    return 1.0 if base <= 1.0 else float(base**-decay)


def stepwise_update(
    running: SufficientStats, batch: SufficientStats, step: float
) -> SufficientStats:
    """``(1 - step) * running + step * batch`` on normalised statistics."""
    return running.interpolate(batch, step)
