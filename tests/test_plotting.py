"""Pictures of models that are not 3-D point clouds (pairwise views with the model's axis
names) and of flat outdoor scans (a side view that is not a strip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm import GaussianMixture, codec
from streamgmm.cli import main
from tests.helpers.fakes import FakeControl

pytest.importorskip("matplotlib")

IMU_AXES = ["ax", "ay", "az", "gx", "gy", "gz"]


def _fitted(d: int, spread=None, seed: int = 0) -> GaussianMixture:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, d)) * (1.0 if spread is None else np.asarray(spread))
    return GaussianMixture(n_components=2, random_state=0).fit(X)


def _labels(fig) -> set[tuple[str, str]]:
    return {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_visible()}


def test_pairs_figure_labels_every_pair_with_the_axis_names() -> None:
    import matplotlib.pyplot as plt

    from streamgmm.plotting import pairs_figure

    fig = pairs_figure(_fitted(6), axis_names=IMU_AXES, title="imu")
    try:
        labels = _labels(fig)
        assert len(labels) == 15  # every pair of 6 axes, once
        assert ("ax", "ay") in labels and ("gy", "gz") in labels
        assert "top view" not in " ".join(ax.get_title() for ax in fig.axes)
    finally:
        plt.close(fig)
    fig = pairs_figure(_fitted(2))
    try:
        assert _labels(fig) == {("x[0]", "x[1]")}
    finally:
        plt.close(fig)


def test_a_flat_scan_gets_a_stretched_side_view() -> None:
    import matplotlib.pyplot as plt

    from streamgmm.plotting import mixture_figure

    fig = mixture_figure(_fitted(3, spread=[40.0, 40.0, 0.8]))  # 160 m wide, ~3 m high
    try:
        side = next(ax for ax in fig.axes if ax.get_ylabel() == "z [m]")
        assert "z stretched" in side.get_title()
        bbox = side.get_position()
        top = next(ax for ax in fig.axes if ax.get_ylabel() == "y [m]").get_position()
        fig.canvas.draw()
        assert side.get_position().height > 0.15 * top.height  # not a strip
        assert bbox.width > 0
    finally:
        plt.close(fig)


def test_watch_plot_of_a_6d_model_uses_its_axes(ctx, tmp_path: Path, monkeypatch) -> None:
    import streamgmm.plotting

    gm = _fitted(6)
    made = []
    real = streamgmm.plotting.pairs_figure

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        made.append(_labels(fig))
        return fig

    monkeypatch.setattr(streamgmm.plotting, "pairs_figure", spy)

    def handler(request: dict) -> list:
        if request["op"] == "status":
            return [codec.encode_reply({"ok": True, "id": request["id"], "models": {
                "imu": {"dim": 6, "axes": IMU_AXES}}})]
        return [codec.encode_update(
            model="imu", seq=3, stamp=1.0, n_seen=400, kind="snapshot",
            covariance_type="full", weights=gm.weights_, means=gm.means_,
            covariances=gm.covariances_, avg_log_likelihood=-4.0, last_stamp=1.0, ok=True,
            id=request["id"])]

    server = FakeControl(ctx, handler)
    try:
        png = tmp_path / "imu.png"
        assert main(["watch", "--endpoint", "tcp://127.0.0.1:1", "--control", server.endpoint,
                     "--model", "imu", "--count", "1", "--plot", str(png)]) == 0
        assert png.stat().st_size > 1000
        assert made and ("gx", "gy") in made[0]
        assert main(["watch", "--endpoint", "tcp://127.0.0.1:1", "--control", server.endpoint,
                     "--model", "imu", "--count", "1", "--plot", str(png),
                     "--axes", "a,b,c,d,e,f"]) == 0
        assert ("a", "b") in made[1]
    finally:
        server.close()


def test_pairs_figure_keeps_its_limits_without_matplotlib_warnings(tmp_path, caplog) -> None:
    import logging

    import matplotlib.pyplot as plt

    from streamgmm.plotting import pairs_figure

    for d, spread in [(2, [1.0, 30.0]), (6, [1.0, 30.0, 1.0, 100.0, 1.0, 1.0])]:
        fig = pairs_figure(_fitted(d, spread=spread))
        try:
            with caplog.at_level(logging.WARNING, logger="matplotlib"):
                fig.savefig(tmp_path / f"pairs{d}.png")  # the aspect is applied on drawing
        finally:
            plt.close(fig)
    # matplotlib logs "Ignoring fixed x limits to fulfill fixed data aspect ..." to stderr.
    assert not [r for r in caplog.records if "Ignoring fixed" in r.getMessage()]


def test_a_far_light_component_does_not_set_the_view() -> None:
    from streamgmm.plotting import view_layout

    rng = np.random.default_rng(0)
    gm = GaussianMixture.from_parameters(
        np.array([0.5, 0.4991, 0.0009]), np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 1.0],
                                                   [500.0, 0.0, 0.0]]),
        np.stack([np.eye(3)] * 3))
    limits, _ = view_layout(gm, rng.normal(size=(500, 3)) * 3)
    assert limits[0][1] < 30.0  # the component at 500 m (weight 0.0009 of 3) is drawn only
