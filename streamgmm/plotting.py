"""Drawing a 2-D view of a mixture with matplotlib (the optional ``plot`` extra)."""

from __future__ import annotations

import numpy as np


def plot_mixture(ax, points, weights, means, covariances, *, max_points: int = 20_000,
                 sigmas=(1.0, 2.0)) -> None:
    """Scatter ``points`` (n, 2) and draw 1- and 2-sigma ellipses of each component.

    Parameters
    ----------
    ax : matplotlib Axes
    points : ndarray of shape (n, 2), or None
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, 2)
    covariances : ndarray of shape (K, 2, 2)
    """
    from matplotlib.patches import Ellipse

    if points is not None and len(points):
        step = max(1, len(points) // max_points)
        ax.scatter(points[::step, 0], points[::step, 1], s=1, c="0.6", alpha=0.5, linewidths=0)
    top = max(float(np.max(weights)), 1e-12)
    for w, mu, cov in zip(weights, means, covariances):
        vals, vecs = np.linalg.eigh(cov)
        vals = np.maximum(vals, 0.0)
        angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        for s in sigmas:
            ax.add_patch(Ellipse(mu, 2 * s * np.sqrt(vals[1]), 2 * s * np.sqrt(vals[0]),
                                 angle=angle, fill=False, lw=1.2 if s == 1 else 0.7,
                                 color="C3", alpha=0.3 + 0.7 * w / top))
        ax.plot(mu[0], mu[1], "+", color="C3", ms=6)
    ax.set_aspect("equal")
