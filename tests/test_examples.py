"""Every script in examples/ runs to the end (issue 13): a broken example fails CI.

Each script runs as a newcomer would run it (a subprocess, from a temp working directory),
against a real daemon on ipc:// endpoints where it needs one, with every wait bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
MODELS = [
    {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
     "publish_every_s": 0.0, "refit_every_s": 0.0},
    {"name": "imu", "topic": "points/imu", "dim": 6, "components": 3,
     "covariance_type": "diag", "publish_every_s": 0.0, "refit_every_s": 0.0},
]


def run(script: str, *args: str, cwd: Path, timeout: float = 120.0) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args], cwd=cwd, timeout=timeout,
        capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"),
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def fed_daemon(daemon_factory):
    """A daemon running MODELS, each fed points from the synthetic source of its dimension."""
    from streamgmm.synthetic import lidar_scene, moving_sensor_stream

    daemon = daemon_factory(models=MODELS)
    daemon.send("points/lidar", lidar_scene(3_000, seed=1))
    daemon.send("points/imu", np.vstack(list(moving_sensor_stream(3_000, 3_000, dim=6))),
                source="imu")
    daemon.wait_for(lambda s: all(m["n_seen"] >= 3_000 for m in s["models"].values()))
    return daemon


def test_every_example_has_a_test() -> None:
    assert set(EXAMPLES) == {"plot_learning_curve.py", "plot_mixture.py", "publish_points.py",
                             "subscribe_mixture.py", "plot_foxglove_mcap.py"}, (
        "add a test for each new example")


def test_plot_foxglove_mcap(tmp_path) -> None:
    pytest.importorskip("foxglove", reason="needs the foxglove extra")
    pytest.importorskip("google.protobuf", reason="needs protobuf (test extra)")
    pytest.importorskip("matplotlib", reason="needs the plot extra")
    out = run("plot_foxglove_mcap.py", "pic.png", cwd=tmp_path)
    assert "wrote pic.png from demo-out/model.mcap" in out
    assert (tmp_path / "pic.png").stat().st_size > 10_000
    # The same script draws a recording it is given.
    out = run("plot_foxglove_mcap.py", "again.png", "demo-out/model.mcap", cwd=tmp_path)
    assert (tmp_path / "again.png").stat().st_size > 10_000


@pytest.mark.parametrize("model", ["lidar", "imu"])
def test_subscribe_mixture(model, daemon_factory, tmp_path) -> None:
    d = fed_daemon(daemon_factory).directory
    out = run("subscribe_mixture.py", "--endpoint", f"ipc://{d}/publish", "--control",
              f"ipc://{d}/control", "--model", model, "--count", "1", "--timeout", "10",
              cwd=tmp_path)
    assert "daemon models: lidar, imu" in out
    (line,) = [x for x in out.splitlines() if "held-out log-likelihood" in x]
    assert np.isfinite(float(line.split()[-1]))


def test_publish_points(daemon_factory, tmp_path) -> None:
    daemon = daemon_factory(models=MODELS)
    d = daemon.directory
    out = run("publish_points.py", "--endpoint", f"ipc://{d}/ingest", "--sweeps", "2",
              "--points", "5000", "--batch", "1000", "--scan-rate", "20", cwd=tmp_path)
    assert "sent 10 messages (2 scans of 5000 points)" in out
    status = daemon.wait_for(lambda s: s["models"]["lidar"]["n_seen"] >= 10_000)
    assert status["models"]["lidar"]["n_seen"] == 10_000


def test_plot_mixture_writes_an_untracked_picture(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = run("plot_mixture.py", cwd=tmp_path)
    picture = tmp_path / "demo-out" / "mixture.png"  # by default, never docs/img/
    assert "wrote demo-out/mixture.png" in out
    assert picture.stat().st_size > 10_000


def test_plot_learning_curve(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = run("plot_learning_curve.py", "--quick", cwd=tmp_path)
    assert "wrote demo-out/learning_curve.png" in out
    assert (tmp_path / "demo-out" / "learning_curve.png").stat().st_size > 10_000
    scores = [float(w.rstrip(",")) for w in out.split("points: ")[1].split("(")[0].split()
              if w.rstrip(",").lstrip("-").replace(".", "").isdigit()]
    assert len(scores) == 3 and all(np.isfinite(scores))
