"""Fit a mixture to a LiDAR-like sweep, by batch EM and by one online pass in sensor order.

Run: ``python examples/plot_mixture.py [OUT.png]`` (needs the ``plot`` extra: matplotlib);
the default OUT is ``demo-out/mixture.png`` (untracked; ``make pictures`` writes the README's
``docs/img/mixture.png``). The picture shows the points under 1- and 2-sigma ellipses of each
component, seen from above (top) and from the side (bottom, z up), in metres: left the batch
EM fit, right the online fit after one pass in sweep order. The triangle is the sensor; the
arrow shows the order in which the sweep delivers the points.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamgmm import GaussianMixture
from streamgmm.plotting import draw_views, view_layout
from streamgmm.synthetic import lidar_scene

SENSOR = (0.0, 0.0, 0.0)  # lidar_scene sweeps around the origin


def main(out: str = "demo-out/mixture.png") -> None:
    X = lidar_scene(60_000, seed=3)
    batch = GaussianMixture(n_components=16, random_state=0).fit(X)
    online = GaussianMixture(n_components=16, random_state=0)
    for start in range(0, len(X), 2048):  # sweep order, as the sensor delivers it
        online.partial_fit(X[start : start + 2048])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits, ratios = view_layout(batch, X, SENSOR)
    # Height from the data's aspect, so both views keep the scale of x without white space.
    panel_width = 13 * 0.88 / 2 * 0.8
    height = panel_width * sum(ratios) / (limits[0][1] - limits[0][0]) + 1.9
    fig, axes = plt.subplots(2, 2, figsize=(13, height), gridspec_kw={"height_ratios": ratios})
    for column, (model, title) in enumerate([
        (batch, f"batch EM ({batch.n_iter_} iterations over all points)"),
        (online, f"online EM, one pass in sweep order ({online.n_seen_} points)"),
    ]):
        draw_views(axes[:, column], model, X, sensor_origin=SENSOR, sweep=True,
                   limits=limits, legend=column == 1)
        axes[0, column].set_title(f"{title}\nmean log-likelihood {model.score(X):.3f} "
                                  f"nats/point; top view", fontsize=10)
        axes[1, column].set_title("side view (looking along +y)", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 0.88, 1.0))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"batch EM {batch.score(X):.3f}, online {online.score(X):.3f} nats/point")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
