"""What the daemon says about itself (issue 13, items 2, 5, 6, 7): a warning for topics that
are prefixes of one another, one name per figure in snapshots and refit log lines, the
``messages_last_turn`` status key, and a SIGHUP without CURVE that claims no reload.
"""

from __future__ import annotations

import re
import signal
import time

import numpy as np

from tests.helpers.daemon import Daemon
from tests.helpers.data import MODEL, blobs


def wait_log(d: Daemon, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    return d.log()


def test_daemon_warns_when_one_topic_is_a_prefix_of_another(daemon_factory) -> None:
    d = daemon_factory([MODEL, dict(MODEL, name="front", topic="points/lidar_front")])
    log = d.log()
    (line,) = [line for line in log.splitlines() if "prefix" in line]
    assert "WARNING" in line and "'points/lidar'" in line and "'points/lidar_front'" in line
    assert "model=lidar" in line or "'lidar'" in line


def test_snapshot_carries_the_last_predictive_figure(daemon_factory) -> None:
    d = daemon_factory()
    for i in range(3):
        d.send("points/lidar", blobs(400, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1200)
    d.settle()  # a refit publishes a "refit" update without new points (NaN)
    figures = [u["avg_log_likelihood"] for u in d.updates()]
    finite = [f for f in figures if np.isfinite(f)]
    assert len(finite) >= 2  # every update after the first has absorbed points
    snap = d.request(op="snapshot", model="lidar")
    assert snap["avg_log_likelihood"] == finite[-1]


def test_refit_log_line_names_its_in_sample_figure(daemon_factory) -> None:
    d = daemon_factory()
    for i in range(3):
        d.send("points/lidar", blobs(400, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1200)
    d.settle()
    assert d.request(op="refit", model="lidar", timeout=30)["ok"]
    log = wait_log(d, "refit done")
    (line,) = [line for line in log.splitlines() if "refit done" in line]
    assert re.search(r"refit_mean_log_likelihood=-?\d+\.\d+", line)
    assert "avg_log_likelihood" not in line


def test_status_reports_messages_of_the_last_turn_not_a_queue_depth(daemon_factory) -> None:
    d = daemon_factory()
    d.send("points/lidar", blobs(100))
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 100)
    assert "queue_depth" not in status
    assert isinstance(status["messages_last_turn"], int) and status["messages_last_turn"] >= 0


def test_sighup_without_curve_does_not_claim_a_reload(daemon_factory) -> None:
    d = daemon_factory()
    d.proc.send_signal(signal.SIGHUP)
    log = wait_log(d, "SIGHUP")
    assert "reloaded allowed clients" not in log
    assert "nothing to reload" in log
    assert d.status()["ok"]

