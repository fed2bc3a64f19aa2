"""Fit a mixture to a LiDAR-like sweep, streamed in sensor order, and draw it.

Run: ``python examples/plot_mixture.py [OUT.png]`` (needs the ``plot`` extra: matplotlib).
The picture shows the points seen from above with 1- and 2-sigma ellipses of each
component: left the batch EM fit, right the online fit after one pass in sweep order.
"""

from __future__ import annotations

import sys

from streamgmm import GaussianMixture
from streamgmm.plotting import plot_mixture
from streamgmm.synthetic import lidar_scene


def main(out: str = "docs/img/mixture.png") -> None:
    X = lidar_scene(60_000, seed=3)
    batch = GaussianMixture(n_components=16, random_state=0).fit(X)
    online = GaussianMixture(n_components=16, random_state=0)
    for start in range(0, len(X), 2048):  # sweep order, as the sensor delivers it
        online.partial_fit(X[start : start + 2048])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharex=True, sharey=True)
    for ax, model, title in [
        (axes[0], batch, f"batch EM ({batch.n_iter_} iterations)"),
        (axes[1], online, f"online EM, one pass in sweep order ({online.n_seen_} points)"),
    ]:
        plot_mixture(ax, X[:, :2], model.weights_, model.means_[:, :2],
                     model.params_.full_covariances()[:, :2, :2])
        ax.set_title(f"{title}\nmean log-likelihood {model.score(X):.3f} nats/point")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
