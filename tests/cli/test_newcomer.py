"""What a newcomer meets first (issue 13): start-up time, watch/publish behaviour, endpoints.

Daemons are fakes from :mod:`tests.helpers.fakes` on random loopback ports, or the real
daemon on ipc:// endpoints in a temp dir (``daemon_factory``); subprocesses are bounded in
time and killed at the end of each test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from streamgmm import codec
from streamgmm.cli import main
from tests.helpers.fakes import (
    MODEL,
    TOPIC,
    FakeControl,
    SubCollector,
    bound_socket,
    snapshot_handler,
    update_payload,
    wait_subscribed,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


@pytest.fixture
def servers(ctx: zmq.Context) -> Iterator[list]:
    """Closes the fake servers a test appends (before their context is destroyed)."""
    made: list = []
    yield made
    for server in made:
        server.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# ---------------------------------------------------------------------------------------------
# item 12: the CLI imports light
# ---------------------------------------------------------------------------------------------

HEAVY = ("scipy.optimize", "sklearn", "matplotlib")


@pytest.mark.parametrize("statement", ["import streamgmm.cli", "import streamgmm.client",
                                       "import streamgmm"])
def test_imports_do_not_pull_in_heavy_modules(statement: str) -> None:
    code = (
        f"import sys, json; {statement}; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == []


def test_lazy_package_attributes_still_work() -> None:
    code = (
        "import streamgmm; print(streamgmm.__version__); "
        "print(streamgmm.GaussianMixture.__name__, streamgmm.SufficientStats.__name__, "
        "streamgmm.MixtureParams.__name__, streamgmm.NotFittedError.__name__, "
        "streamgmm.ConvergenceWarning.__name__); "
        "from streamgmm import GaussianMixture; print(GaussianMixture is streamgmm.GaussianMixture)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[1:] == ["GaussianMixture", "SufficientStats", "MixtureParams", "NotFittedError",
                       "ConvergenceWarning", "True"]
    probe = "import streamgmm\ntry:\n    streamgmm.nope\nexcept AttributeError as e:\n    print(e)"
    err = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "nope" in err


# ---------------------------------------------------------------------------------------------
# item 3: watch of an unknown model stops at once
# ---------------------------------------------------------------------------------------------


def test_watch_unknown_model_exits_at_once_naming_the_models(daemon_factory, capsys) -> None:
    daemon = daemon_factory()
    d = daemon.directory
    start = time.monotonic()
    code = main(["watch", "--endpoint", f"ipc://{d}/publish", "--control", f"ipc://{d}/control",
                 "--model", "nope", "--timeout", "3"])
    elapsed = time.monotonic() - start
    assert code == 2
    (line,) = error_lines(capsys)
    assert "no model named 'nope'" in line and "lidar" in line
    assert elapsed < 1.5


def test_watch_still_waits_for_a_model_without_parameters(servers, ctx, capsys) -> None:
    # The other refusal ("no parameters yet") is temporary: watch keeps waiting for it.
    server = FakeControl(ctx, snapshot_handler({"seq": None}))
    servers.append(server)
    start = time.monotonic()
    assert main(["watch", "--endpoint", "tcp://127.0.0.1:1", "--control", server.endpoint,
                 "--model", MODEL, "--timeout", "1"]) == 1
    assert time.monotonic() - start >= 0.9


# ---------------------------------------------------------------------------------------------
# item 9: an endpoint without a scheme
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["publish", "--synthetic", "lidar", "--endpoint", "127.0.0.1:5555"],
    ["watch", "--model", "lidar", "--endpoint", "127.0.0.1:5556"],
    ["watch", "--model", "lidar", "--control", "localhost:5557"],
    ["status", "--control", "127.0.0.1:5557"],
    ["snapshot", "--control", "127.0.0.1:5557"],
    ["refit", "--model", "lidar", "--control", "127.0.0.1:5557"],
])
def test_endpoint_without_scheme_says_so(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    (line,) = error_lines(capsys)
    assert "scheme" in line and "tcp://" in line and "ipc://" in line
    assert "Invalid argument" not in line


# ---------------------------------------------------------------------------------------------
# item 8: the publish rate is measured to delivery, not to queueing
# ---------------------------------------------------------------------------------------------


class SlowCollector:
    """A bound SUB with a one-message queue that reads one message every `pause` seconds."""

    def __init__(self, ctx: zmq.Context, pause: float) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.rcvhwm = 1
        self.sock.setsockopt(zmq.RCVBUF, 65536)
        self.sock.subscribe(b"")
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.times: list[float] = []
        self._pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if self.sock.poll(20):
                    self.sock.recv_multipart()
                    self.times.append(time.perf_counter())
                    time.sleep(self._pause)
        finally:
            self.sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def test_publish_summary_counts_until_the_points_are_delivered(ctx, servers, capsys) -> None:
    collector = SlowCollector(ctx, pause=0.05)
    servers.append(collector)
    n_messages, batch = 24, 50_000  # 1.2 MB a message: more than socket buffers hold
    start = time.perf_counter()
    assert main(["publish", "--endpoint", collector.endpoint, "--synthetic", "moving",
                 "--batch", str(batch), "--count", str(n_messages * batch),
                 "--wait-subscriber", "5", "--no-confirm"]) == 0
    out = capsys.readouterr().out
    assert f"sent {n_messages} messages" in out
    seconds = float(out.split(" points in ")[1].split(" s")[0])
    deadline = time.monotonic() + 10
    while len(collector.times) < n_messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(collector.times) == n_messages  # nothing lost to the close
    # The summary's interval reaches at least to when all but a buffer's worth had arrived.
    assert seconds >= collector.times[n_messages - 6] - start - 0.5
    assert seconds >= 0.4


# ---------------------------------------------------------------------------------------------
# item 10: watch runs to the end of the stream; SIGTERM acts like Ctrl-C
# ---------------------------------------------------------------------------------------------


def _feed_updates(ctx: zmq.Context, seqs: range, interval: float) -> tuple[str, threading.Thread]:
    pub, endpoint = bound_socket(ctx, zmq.XPUB)

    def publish() -> None:
        try:
            wait_subscribed(pub, TOPIC)
            for seq in seqs:
                time.sleep(interval)
                pub.send_multipart([TOPIC, update_payload(seq)])
            time.sleep(0.5)
        finally:
            pub.close(linger=0)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return endpoint, thread


def test_watch_idle_stops_after_the_stream_ends(ctx, servers, tmp_path, capsys) -> None:
    server = FakeControl(ctx, snapshot_handler({"seq": 4}))
    servers.append(server)
    endpoint, thread = _feed_updates(ctx, range(5, 25), 0.05)  # one second of updates
    png = tmp_path / "live.png"
    start = time.monotonic()
    try:
        assert main(["watch", "--endpoint", endpoint, "--control", server.endpoint,
                     "--model", MODEL, "--idle", "0.6", "--timeout", "20",
                     "--plot", str(png)]) == 0
    finally:
        thread.join(10)
    elapsed = time.monotonic() - start
    lines = capsys.readouterr().out.splitlines()
    assert "seq     24" in lines[-2]  # the whole stream was followed
    assert lines[-1] == f"wrote {png}"
    assert 1.0 < elapsed < 12.0  # well before --timeout 20 (plotting takes a while)
    assert png.stat().st_size > 1000


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r} within {timeout} s: {seen}")


def test_watch_writes_its_plot_on_sigterm(ctx, servers, procs, tmp_path) -> None:
    server = FakeControl(ctx, snapshot_handler({"seq": 4}))
    servers.append(server)
    png = tmp_path / "live.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgmm", "watch", "--endpoint", "tcp://127.0.0.1:1",
         "--control", server.endpoint, "--model", MODEL, "--plot", str(png)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
    )
    procs.append(proc)
    _wait_for_line(proc, "snapshot")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"wrote {png}" in out
    assert png.stat().st_size > 1000


def test_publish_prints_its_summary_on_sigterm(ctx, servers, procs) -> None:
    collector = SubCollector(ctx, b"points/")
    servers.append(collector)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgmm", "publish", "--endpoint", collector.endpoint,
         "--synthetic", "lidar", "--loop", "--rate", "20000", "--batch", "1000",
         "--no-confirm"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    procs.append(proc)
    deadline = time.monotonic() + 30
    while len(collector.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(collector.messages) >= 3
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sent " in out and " messages, " in out
    sent = int(out.split("sent ")[1].split(" messages")[0])
    assert sent >= 3


# ---------------------------------------------------------------------------------------------
# item 14: what watch --plot draws
# ---------------------------------------------------------------------------------------------


def _mixture_3d():
    from streamgmm.client import Mixture

    payload = codec.encode_update(
        model="room", seq=7, stamp=1.0, n_seen=1234, kind="online", covariance_type="full",
        weights=np.array([0.5, 0.3, 0.2]),
        means=np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 0.5], [-4.0, -3.0, 1.0]]),
        covariances=np.stack([np.diag([4.0, 4.0, 0.01]), np.diag([0.1, 0.1, 0.2]),
                              np.diag([0.2, 0.2, 0.3])]),
        avg_log_likelihood=-4.0, last_stamp=1.0,
    )
    return Mixture.from_update(codec.decode_update(payload))


def test_mixture_figure_has_top_and_side_views_with_units_and_legend() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamgmm.plotting import mixture_figure

    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3))
    fig = mixture_figure(_mixture_3d().to_estimator(), points=points, title="room",
                         sensor_origin=(0.0, 0.0, 0.0))
    try:
        axes = fig.axes
        labels = {(ax.get_xlabel(), ax.get_ylabel()) for ax in axes}
        assert ("x [m]", "y [m]") in labels and ("x [m]", "z [m]") in labels
        legends = [*fig.legends, *(ax.get_legend() for ax in axes if ax.get_legend())]
        legend_texts = {t.get_text() for legend in legends for t in legend.get_texts()}
        assert any("1" in t and "sigma" in t for t in legend_texts)
        assert any("2" in t and "sigma" in t for t in legend_texts)
        assert any("sensor" in t for t in legend_texts)
        # The points are drawn under the ellipses in both views.
        scattered = [c for ax in axes for c in ax.collections if len(c.get_offsets()) == 500]
        assert len(scattered) == 2
    finally:
        plt.close(fig)


def test_watch_plot_is_readable_for_a_3d_model(ctx, servers, tmp_path, capsys,
                                               monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import streamgmm.plotting

    made = []
    real = streamgmm.plotting.mixture_figure

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        made.append([(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes])
        return fig

    monkeypatch.setattr(streamgmm.plotting, "mixture_figure", spy)

    def handler(request: dict) -> list:
        m = _mixture_3d()
        return [codec.encode_update(
            model=MODEL, seq=m.seq, stamp=m.stamp, n_seen=m.n_seen, kind="snapshot",
            covariance_type="full", weights=m.weights, means=m.means,
            covariances=m.covariances, avg_log_likelihood=-4.0, last_stamp=1.0, ok=True,
            id=request["id"])]

    server = FakeControl(ctx, handler)
    servers.append(server)
    png = tmp_path / "live.png"
    assert main(["watch", "--endpoint", "tcp://127.0.0.1:1", "--control", server.endpoint,
                 "--model", MODEL, "--count", "1", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert made and ("x [m]", "y [m]") in made[0] and ("x [m]", "z [m]") in made[0]
