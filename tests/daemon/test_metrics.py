"""Prometheus exposition and the health check."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from streamgmm.daemon.metrics import MetricsServer, render
from tests.helpers.daemon import Daemon, write_config

STATUS = {
    "ok": True, "uptime_s": 12.5, "messages_last_turn": 3,
    "models": {"lidar": {"n_seen": 1000, "seq": 7, "refits": 1, "last_refit_s": float("nan")}},
    "counters": {"messages_received": 10, "messages_applied": 8, "points_applied": 1000,
                 "rows_dropped_nonfinite": 2, "messages_lost": 1, "publisher_restarts": 0,
                 "rejected": {"dim": 1, "msgpack": 1}},
}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_render_has_every_counter():
    text = render(STATUS, healthy=True)
    assert "streamgmm_messages_received_total 10" in text
    assert 'streamgmm_messages_rejected_total{reason="dim"} 1' in text
    assert 'streamgmm_model_n_seen_total{model="lidar"} 1000' in text
    assert 'streamgmm_model_last_refit_s{model="lidar"} NaN' in text
    assert "streamgmm_healthy 1" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2


def test_healthz_turns_503_when_the_loop_stalls():
    last_turn = [time.monotonic()]
    server = MetricsServer("127.0.0.1", 0, lambda: (STATUS, last_turn[0]), stall_after_s=0.5)
    server.start()
    try:
        assert _get(server.address + "/healthz") == (200, "ok\n")
        last_turn[0] -= 10  # the loop has not turned for 10 s
        code, body = _get(server.address + "/healthz")
        assert code == 503 and body == "stalled\n"
        assert "streamgmm_healthy 0" in _get(server.address + "/metrics")[1]
        last_turn[0] = time.monotonic()
        assert _get(server.address + "/healthz")[0] == 200
    finally:
        server.close()


@pytest.fixture
def daemon(tmp_path):
    port = _free_port()
    model = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 2,
             "publish_every_s": 0.0}
    d = Daemon(write_config(tmp_path, [model], {"metrics": f"127.0.0.1:{port}"}))
    d.metrics_url = f"http://127.0.0.1:{port}"
    yield d
    d.close()


def test_daemon_serves_metrics(daemon):
    daemon.send("points/lidar", np.random.default_rng(0).normal(size=(50, 3)))
    daemon.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 50)
    deadline = time.monotonic() + 5
    while True:  # the metrics snapshot refreshes every 0.5 s
        code, text = _get(daemon.metrics_url + "/metrics")
        if "streamgmm_points_applied_total 50" in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 200 and "streamgmm_points_applied_total 50" in text
    assert _get(daemon.metrics_url + "/healthz")[0] == 200
    assert daemon.stop() == 0
