"""Pictures of a mixture over its points with matplotlib (the optional ``plot`` extra).

:func:`mixture_figure` is what ``streamgmm watch --plot``, ``make demo`` and the examples
draw: a top view (x, y) and, for 3-D data, a side view (x, z) on the same scale, with the
points under 1- and 2-sigma ellipses of each component, labelled axes and a legend.
:func:`pairs_figure` draws a model of another dimension (IMU samples, features): one view per
pair of axes, labelled with the model's axis names. :func:`plot_mixture` draws one 2-D view
into given axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["draw_views", "mixture_figure", "pairs_figure", "plot_mixture", "view_layout"]

ELLIPSE_COLOR = "C3"
POINT_COLOR = "0.55"
# Line widths of the 1- and 2-sigma ellipses (and of their legend entries).
_WIDTHS = {1.0: 1.4, 2.0: 0.7}
_SHOWN_SHARE = 0.05  # of an even share 1/K: lighter components do not set the view


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "drawing needs matplotlib: pip install 'streamgmm[plot]'"
        ) from None


def plot_mixture(ax: Any, points: np.ndarray | None, weights: np.ndarray, means: np.ndarray,
                 covariances: np.ndarray, *, max_points: int = 20_000,
                 sigmas: Sequence[float] = (1.0, 2.0)) -> None:
    """Scatter ``points`` (n, 2) and draw 1- and 2-sigma ellipses of each component over them.

    Ellipses of heavier components are drawn more opaque; a ``+`` marks each mean.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    points : ndarray of shape (n, 2), or None
        Drawn first, in grey, under the ellipses; thinned to at most `max_points`.
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, 2)
    covariances : ndarray of shape (K, 2, 2)
        The components' covariances projected on the two axes drawn.
    max_points : int, default=20000
    sigmas : sequence of float, default=(1.0, 2.0)
        Radii of the ellipses in standard deviations.
    """
    from matplotlib.patches import Ellipse

    if points is not None and len(points):
        step = max(1, -(-len(points) // max_points))
        ax.scatter(points[::step, 0], points[::step, 1], s=1.5, c=POINT_COLOR, alpha=0.5,
                   linewidths=0, zorder=1, rasterized=True)
    top = max(float(np.max(weights)), 1e-12)
    for w, mu, cov in zip(weights, means, covariances):
        vals, vecs = np.linalg.eigh(cov)
        vals = np.maximum(vals, 0.0)
        # eigh sorts ascending: the last eigenvector is the major axis.
        angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
        for s in sigmas:
            ax.add_patch(Ellipse(tuple(mu), 2 * s * np.sqrt(vals[1]), 2 * s * np.sqrt(vals[0]),
                                 angle=angle, fill=False, lw=_WIDTHS.get(float(s), 0.7),
                                 color=ELLIPSE_COLOR, alpha=0.35 + 0.65 * w / top, zorder=3))
        ax.plot(mu[0], mu[1], "+", color=ELLIPSE_COLOR, ms=6, zorder=4)
    ax.set_aspect("equal", adjustable="datalim")


def _extent(values: list[np.ndarray]) -> tuple[float, float]:
    lo = min(float(np.min(v)) for v in values if len(v))
    hi = max(float(np.max(v)) for v in values if len(v))
    pad = 0.05 * max(hi - lo, 1e-9)
    return lo - pad, hi + pad


def _arrays(model: Any, points: np.ndarray | None):
    weights = np.asarray(model.weights_)
    means = np.asarray(model.means_)
    covs = np.asarray(model.params_.full_covariances())
    d = means.shape[1]
    if d < 2:
        raise ValueError(f"a picture needs at least 2 dimensions, the mixture has {d}")
    if points is not None:
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != d:
            raise ValueError(f"points must have shape (n, {d}), got {points.shape}")
    return weights, means, covs, points


def view_layout(model: Any, points: np.ndarray | None = None,
                sensor_origin: Sequence[float] | None = None
                ) -> tuple[list[tuple[float, float]], list[float]]:
    """Axis limits per dimension and panel height ratios for :func:`draw_views`.

    Parameters
    ----------
    model : GaussianMixture
        Fitted, ``d >= 2``.
    points : ndarray of shape (n, d), optional
    sensor_origin : sequence of float, optional

    Returns
    -------
    limits : list of (float, float)
        Per dimension: what holds the 2-sigma boxes (of the components weighing at least 5%
        of an even share), the central 99% of the points and the sensor.
    ratios : list of float
        Heights of the top view and (d >= 3) the side view, in data units of their y axes,
        so that both views keep the x axis's scale (the side view at least a fifth of the top).
    """
    weights, means, covs, points = _arrays(model, points)
    d = means.shape[1]
    # Components of less than 5% of an even share (a re-seeded one on a far outlier) would
    # squash the view into a strip: they are drawn but do not set the limits.
    shown = weights >= min(_SHOWN_SHARE / len(weights), float(np.max(weights)))
    means, covs = means[shown], covs[shown]
    sd = np.sqrt(np.einsum("kii->ki", covs))
    spread = [means + 2 * sd, means - 2 * sd]
    if points is not None and len(points):
        spread += [np.percentile(points, 0.5, axis=0)[None],
                   np.percentile(points, 99.5, axis=0)[None]]
    if sensor_origin is not None:
        spread.append(np.asarray(sensor_origin, dtype=float)[None, :d])
    limits = [_extent([v[:, i] for v in spread]) for i in range(d)]
    tall = limits[1][1] - limits[1][0]
    ratios = [tall]
    if d >= 3:
        ratios.append(max(limits[2][1] - limits[2][0], 0.2 * tall))
    return limits, ratios


def draw_views(axes: Sequence[Any], model: Any, points: np.ndarray | None = None, *,
               sensor_origin: Sequence[float] | None = None, sweep: bool = False,
               unit: str | None = "m", max_points: int = 20_000, legend: bool = True,
               limits: list[tuple[float, float]] | None = None,
               side_aspect: float = 1.0) -> None:
    """Draw the top view (x, y) into ``axes[0]`` and, for d >= 3, the side view (x, z) into
    ``axes[1]``; parameters as in :func:`mixture_figure`.

    `limits` (from :func:`view_layout`) lets several models share one scale; `side_aspect`
    stretches the side view's z axis (a flat scene, e.g. an outdoor LiDAR scan 150 m wide
    and 5 m high, would otherwise be a strip).
    """
    from matplotlib.lines import Line2D

    weights, means, covs, points = _arrays(model, points)
    d = means.shape[1]
    if limits is None:
        limits, _ = view_layout(model, points, sensor_origin)
    names = ["x", "y", "z"] if d <= 3 and unit else [f"x[{i}]" for i in range(d)]
    labels = [f"{n} [{unit}]" if unit else n for n in names]
    views = [(0, 1)] + ([(0, 2)] if d >= 3 else [])
    for ax, (i, j) in zip(axes, views):
        plot_mixture(ax, None if points is None else points[:, [i, j]], weights,
                     means[:, [i, j]], covs[:, [i, j]][:, :, [i, j]], max_points=max_points)
        ax.set_xlim(*limits[i])
        ax.set_ylim(*limits[j])
        ax.set_aspect(side_aspect if j == 2 else 1.0, adjustable="box")
        ax.locator_params(nbins=7)  # tick labels that do not run into each other
        ax.set_xlabel(labels[i])
        ax.set_ylabel(labels[j])
        ax.grid(True, lw=0.3, alpha=0.5)
        if sensor_origin is not None:
            ax.plot(sensor_origin[i], sensor_origin[j], marker="^", color="C0", ms=9,
                    ls="none", zorder=5)
    if sweep and sensor_origin is not None:
        _draw_sweep(axes[0], sensor_origin, 0.12 * (limits[0][1] - limits[0][0]))
    if not legend:
        return
    handles = [Line2D([], [], color=ELLIPSE_COLOR, lw=_WIDTHS[1.0], label="1-sigma ellipse"),
               Line2D([], [], color=ELLIPSE_COLOR, lw=_WIDTHS[2.0], label="2-sigma ellipse"),
               Line2D([], [], color=ELLIPSE_COLOR, marker="+", ls="none",
                      label="component mean")]
    if points is not None and len(points):
        handles.append(Line2D([], [], color=POINT_COLOR, marker=".", ls="none", label="points"))
    if sensor_origin is not None:
        handles.append(Line2D([], [], color="C0", marker="^", ls="none", label="sensor"))
    if sweep and sensor_origin is not None:
        handles.append(Line2D([], [], color="C0", lw=1.5, label="sweep direction"))
    fig = axes[0].figure
    if fig.get_layout_engine() is not None and len(fig.axes) == len(axes):
        # A figure of its own (mixture_figure): one legend at the right, outside the views.
        fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    else:
        axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=8, frameon=False, borderaxespad=0.0)


def mixture_figure(model: Any, points: np.ndarray | None = None, *, title: str | None = None,
                   sensor_origin: Sequence[float] | None = None, sweep: bool = False,
                   unit: str | None = "m", max_points: int = 20_000,
                   width: float = 8.0) -> Any:
    """A figure of a fitted mixture: top view (x, y) and, for d >= 3, side view (x, z).

    The views share the x axis and one scale (metres on both), so heights are seen true to
    size. Points, when given, are drawn under the ellipses.

    Parameters
    ----------
    model : GaussianMixture
        A fitted :class:`streamgmm.GaussianMixture` (e.g. ``Mixture.to_estimator()``), with
        ``d >= 2``.
    points : ndarray of shape (n, d), optional
    title : str, optional
    sensor_origin : sequence of float, optional
        Where the sensor sits; drawn as a marker in both views.
    sweep : bool, default=False
        Draw the sweep direction of a LiDAR around `sensor_origin`: counter-clockwise from
        azimuth -180 degrees, the order of :func:`streamgmm.synthetic.lidar_scene`.
    unit : str or None, default="m"
        Unit of the axes, as in ``x [m]``; None labels them ``x[0]``, ``x[1]``, ...
    max_points : int, default=20000
        Points drawn at most per view (a regular thinning).
    width : float, default=8.0
        Figure width in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Close it with ``matplotlib.pyplot.close(fig)`` after saving.
    """
    _check_matplotlib()
    import matplotlib.pyplot as plt

    limits, ratios = view_layout(model, points, sensor_origin)
    x_span = limits[0][1] - limits[0][0]
    side_aspect = 1.0
    d = np.asarray(model.means_).shape[1]
    if d >= 3:
        z_span = limits[2][1] - limits[2][0]
        if z_span < 0.25 * x_span:
            # A flat scene: stretch z so the side view is a quarter as tall as it is wide.
            side_aspect = _nice_factor(0.25 * x_span / max(z_span, 1e-12))
            ratios[1] = z_span * side_aspect
    # Height from the data's aspect (the axes get ~70% of the width, the legend the rest),
    # plus room for titles and labels, so equal-scale views leave no white bands.
    fig_h = 0.7 * width * sum(ratios) / x_span + 0.8 * len(ratios) + (0.6 if title else 0.2)
    fig, axes = plt.subplots(len(ratios), 1, figsize=(width, min(max(fig_h, 3.5), 14.0)),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": ratios})
    axes = list(axes[:, 0])
    draw_views(axes, model, points, sensor_origin=sensor_origin, sweep=sweep, unit=unit,
               max_points=max_points, limits=limits, side_aspect=side_aspect)
    axes[0].set_title("top view" + (" (looking down)" if d >= 3 else ""), fontsize=9)
    if len(axes) > 1:
        stretched = f"; z stretched {side_aspect:g}x" if side_aspect != 1.0 else ""
        axes[1].set_title(f"side view (looking along +y{stretched})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _nice_factor(value: float) -> float:
    """The largest of 1, 2, 5, 10, 20, 50, ... not above ``value`` (at least 1)."""
    best = 1.0
    for exponent in range(0, 7):
        for m in (1, 2, 5):
            f = m * 10.0**exponent
            if f <= value:
                best = f
    return best


def pairs_figure(model: Any, *, axis_names: Sequence[str] | None = None,
                 title: str | None = None, max_dims: int = 8) -> Any:
    """A figure of a fitted mixture of any dimension: a view per pair of axes.

    Data of d != 3 dimensions is rarely a point cloud in metres (IMU samples, features), so
    each pair (i, j) of the first ``max_dims`` axes gets its own panel, in its own units,
    below the diagonal of a (d-1) x (d-1) grid, with 1- and 2-sigma ellipses and means.

    Parameters
    ----------
    model : GaussianMixture
        Fitted, ``d >= 2``.
    axis_names : sequence of str, optional
        One name per axis (a model's ``axes``); default ``x[0]``, ``x[1]``, ...
    title : str, optional
    max_dims : int, default=8
        Axes shown at most (a 6-D IMU model shows all six: 15 panels).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_matplotlib()
    import matplotlib.pyplot as plt

    weights, means, covs, _ = _arrays(model, None)
    d = min(means.shape[1], max_dims)
    names = list(axis_names) if axis_names else []
    if len(names) < means.shape[1]:
        names = [f"x[{i}]" for i in range(means.shape[1])]
    limits, _ = view_layout(model)
    n = max(d - 1, 1)
    size = 2.6 if n > 1 else 5.0
    fig, axes = plt.subplots(n, n, figsize=(size * n + 1.5, size * n + 0.6), squeeze=False,
                             layout="constrained")
    for row in range(n):
        for col in range(n):
            ax = axes[row, col]
            i, j = col, row + 1  # x axis i, y axis j, below the diagonal
            if i >= j or j >= d:
                ax.set_visible(False)
                continue
            plot_mixture(ax, None, weights, means[:, [i, j]], covs[:, [i, j]][:, :, [i, j]])
            # Each axis in its own units: no equal aspect (it would fight the fixed limits),
            # but for a 2-D model, whose two axes are the plane of a scan in metres.
            ax.set_aspect("equal" if means.shape[1] == 2 else "auto", adjustable="box")
            ax.set_xlim(*limits[i])
            ax.set_ylim(*limits[j])
            ax.locator_params(nbins=5)
            ax.tick_params(labelsize=7)
            ax.grid(True, lw=0.3, alpha=0.5)
            ax.set_xlabel(names[i], fontsize=8)
            ax.set_ylabel(names[j], fontsize=8)
    if means.shape[1] > d:
        fig.text(0.99, 0.01, f"axes {d}..{means.shape[1] - 1} not shown", ha="right",
                 fontsize=7)
    fig.suptitle((title + "\n" if title else "")
                 + f"{means.shape[1]}-D mixture, one view per pair of axes", fontsize=10)
    return fig


def _draw_sweep(ax: Any, origin: Sequence[float], radius: float) -> None:
    """A counter-clockwise arrow around `origin`, starting at azimuth -180 degrees."""
    from matplotlib.patches import FancyArrowPatch

    start = np.radians(-170.0)
    end = np.radians(80.0)
    t = np.linspace(start, end, 60)
    x0, y0 = float(origin[0]), float(origin[1])
    ax.plot(x0 + radius * np.cos(t[:-3]), y0 + radius * np.sin(t[:-3]), color="C0", lw=1.5,
            zorder=5)
    ax.add_patch(FancyArrowPatch(
        (x0 + radius * np.cos(t[-4]), y0 + radius * np.sin(t[-4])),
        (x0 + radius * np.cos(t[-1]), y0 + radius * np.sin(t[-1])),
        arrowstyle="-|>", mutation_scale=14, color="C0", lw=1.5, zorder=5))
    ax.annotate("sweep", (x0 + radius * np.cos(np.radians(-45)),
                          y0 + radius * np.sin(np.radians(-45))),
                xytext=(4, -4), textcoords="offset points", color="C0", fontsize=8,
                va="top")
