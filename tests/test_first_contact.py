"""Issue 13, the daemon side of a newcomer's first contact (items 1, 2, 5, 6, 7, 9, 11).

``publish`` asks the daemon which model listens on its topic before it sends; the daemon
logs rejections, names figures and files unambiguously, and checks its endpoints before it
restores anything. Real daemons on ipc:// endpoints in a temp dir (``daemon_factory``), fake
collectors on random loopback ports; every subprocess is bounded in time and killed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamgmm import codec
from streamgmm.cli import main
from streamgmm.daemon.config import load_config
from tests.helpers.daemon import Daemon, write_config
from tests.helpers.fakes import SubCollector

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "example.toml"
MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
         "publish_every_s": 0.0, "refit_every_s": 0.0}


def blobs(n: int, seed: int = 0, dim: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0] * dim, [5.0] * dim, [-5.0] + [5.0] * (dim - 1)])
    return centers[rng.integers(0, 3, n)] + rng.normal(size=(n, dim))


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def publish_argv(d: Daemon, *more: str) -> list[str]:
    return ["publish", "--endpoint", f"ipc://{d.directory}/ingest",
            "--control", f"ipc://{d.directory}/control", *more]


def wait_log(d: Daemon, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    return d.log()


# ---------------------------------------------------------------------------------------------
# item 1: publish refuses points of the wrong dimension before sending
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, dim", [("npy", 35), ("csv", 6), ("npy1d", 1)])
def test_publish_refuses_a_dimension_mismatch(kind, dim, daemon_factory, tmp_path,
                                              capsys) -> None:
    d = daemon_factory()
    if kind == "csv":
        path = tmp_path / "imu.csv"
        np.savetxt(path, blobs(50, dim=6), delimiter=",", header="a,b,c,d,e,f", comments="")
    elif kind == "npy1d":
        path = tmp_path / "line.npy"
        np.save(path, np.arange(40.0))
    else:
        path = tmp_path / "scan2d.npy"
        np.save(path, np.random.default_rng(0).normal(size=(600, 35)))
    assert main(publish_argv(d, "--file", str(path), "--topic", "points/lidar")) == 2
    (line,) = error_lines(capsys)
    assert f"{dim}-D" in line and "'lidar'" in line and "dim 3" in line
    assert d.status()["counters"]["messages_received"] == 0  # nothing was sent


def test_publish_refuses_synthetic_points_of_the_wrong_dimension(daemon_factory,
                                                                 capsys) -> None:
    d = daemon_factory()
    argv = publish_argv(d, "--synthetic", "moving", "--dim", "2", "--count", "100")
    assert main(argv) == 2
    (line,) = error_lines(capsys)
    assert "2-D" in line and "dim 3" in line
    assert d.status()["counters"]["messages_received"] == 0


def test_publish_sends_matching_points_and_no_check_skips_the_question(daemon_factory,
                                                                       capsys) -> None:
    d = daemon_factory()
    assert main(publish_argv(d, "--synthetic", "lidar", "--count", "3000",
                             "--batch", "1000")) == 0
    assert "sent 3 messages, 3000 points" in capsys.readouterr().out
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 3000)
    # --no-check sends what the daemon will reject (as before), the daemon counts it.
    argv = publish_argv(d, "--synthetic", "moving", "--dim", "2", "--count", "100",
                        "--no-check")
    assert main(argv) == 1  # sent, and the daemon says it rejected it
    assert "sent 1, applied 0, rejected 1, lost 0" in capsys.readouterr().out
    d.wait_for(lambda s: s["counters"]["rejected"].get("dim") == 1)


def test_publish_without_a_control_answer_proceeds(ctx, servers, tmp_path, capsys) -> None:
    collector = SubCollector(ctx, b"points/")
    servers.append(collector)
    start = time.monotonic()
    # Sent unchecked, but never reported as a success: nobody confirmed the delivery (3).
    assert main(["publish", "--endpoint", collector.endpoint, "--control",
                 f"ipc://{tmp_path}/nobody", "--synthetic", "moving", "--dim", "2",
                 "--count", "100", "--wait-subscriber", "5", "--confirm-timeout", "1"]) == 3
    assert time.monotonic() - start < 6.0
    captured = capsys.readouterr()
    assert "sent 1 messages, 100 points" in captured.out
    assert "no daemon answered" in captured.err.splitlines()[-1]
    data, marker = (codec.decode_points(f[1]) for f in collector.wait_for(2))
    assert len(data.points) == 100 and not data.end
    assert marker.end and marker.seq == 1 and marker.first_seq == 0 and len(marker.points) == 0


@pytest.fixture
def servers():
    made: list = []
    yield made
    for server in made:
        server.close()


def test_daemon_logs_the_first_rejection_per_source_and_reason(daemon_factory) -> None:
    d = daemon_factory()
    for _ in range(4):
        d.send("points/lidar", blobs(20, dim=5), source="robot-a")
    d.send("points/lidar", blobs(20, dim=5), source="robot-b")
    d.send_raw([b"points/lidar", b"\xc1 not msgpack"])
    d.wait_for(lambda s: sum(s["counters"]["rejected"].values()) == 6)
    log = wait_log(d, "reason=msgpack")
    lines = [line for line in log.splitlines() if "rejected" in line and "reason=dim" in line]
    assert len(lines) == 2, log  # one per source, the repeats only counted
    assert "source=robot-a" in lines[0] and "source=robot-b" in lines[1]
    assert "5-D" in lines[0] and "dim 3" in lines[0]
    assert d.stop() == 0


def test_rejection_log_is_rate_limited_and_bounded() -> None:
    from streamgmm.daemon.accounting import RejectionLog

    rl = RejectionLog(repeat_s=60.0, burst=3, capacity=4)
    assert rl.should_log("a", "dim", now=100.0) == 0
    assert rl.should_log("a", "dim", now=100.5) is None  # a repeat within the minute
    assert rl.should_log("a", "empty", now=100.6) == 0  # another reason: its own first line
    assert rl.should_log("b", "dim", now=100.7) == 0
    assert rl.should_log("c", "dim", now=100.8) is None  # the fourth line of this second
    assert rl.should_log("c", "dim", now=101.9) == 1  # next second; one went unlogged
    assert rl.should_log("a", "dim", now=161.0) == 1  # a minute on, with the count
    for i in range(50):
        rl.should_log(f"s{i}", "dim", now=200.0 + i)
    assert len(rl._last) <= 4 and len(rl._suppressed) <= 4


# ---------------------------------------------------------------------------------------------
# item 2: topics nobody subscribes to, and prefixes
# ---------------------------------------------------------------------------------------------


def test_publish_to_a_topic_no_model_subscribes_names_the_subscribed_ones(daemon_factory,
                                                                          capsys) -> None:
    d = daemon_factory([MODEL, dict(MODEL, name="imu", topic="points/imu", dim=6)])
    start = time.monotonic()
    argv = publish_argv(d, "--synthetic", "lidar", "--count", "100", "--topic", "lidar")
    assert main(argv) == 2
    assert time.monotonic() - start < 2.0  # no 2 s wait for a subscriber that cannot come
    (line,) = error_lines(capsys)
    assert "no model subscribes to topic 'lidar'" in line
    assert "points/lidar" in line and "points/imu" in line
    assert d.status()["counters"]["messages_received"] == 0


def test_publish_topic_matches_by_prefix(daemon_factory, capsys) -> None:
    d = daemon_factory()
    argv = publish_argv(d, "--synthetic", "lidar", "--count", "500",
                        "--topic", "points/lidar_front")
    assert main(argv) == 0
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 500)
    assert d.status()["models"]["lidar"]["topic"] == "points/lidar"


def test_daemon_warns_when_one_topic_is_a_prefix_of_another(daemon_factory) -> None:
    d = daemon_factory([MODEL, dict(MODEL, name="front", topic="points/lidar_front")])
    log = d.log()
    (line,) = [line for line in log.splitlines() if "prefix" in line]
    assert "WARNING" in line and "'points/lidar'" in line and "'points/lidar_front'" in line
    assert "model=lidar" in line or "'lidar'" in line


# ---------------------------------------------------------------------------------------------
# item 5: one name per figure, no NaN where a figure exists
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# item 6: the status key says what it measures
# ---------------------------------------------------------------------------------------------


def test_status_reports_messages_of_the_last_turn_not_a_queue_depth(daemon_factory) -> None:
    d = daemon_factory()
    d.send("points/lidar", blobs(100))
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 100)
    assert "queue_depth" not in status
    assert isinstance(status["messages_last_turn"], int) and status["messages_last_turn"] >= 0


# ---------------------------------------------------------------------------------------------
# items 7 and 9: log lines name what was used; endpoints first; one form for model keys
# ---------------------------------------------------------------------------------------------


def _checkpointed(tmp_path: Path, daemon_factory, **more) -> tuple[Path, dict]:
    ckpt = tmp_path / "lidar.ckpt"
    model = dict(MODEL, checkpoint=str(ckpt), **more)
    d = daemon_factory([model])
    d.send("points/lidar", blobs(300))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 300)
    assert d.stop() == 0
    assert ckpt.exists()
    return ckpt, model


def test_restore_names_the_generation_actually_used(tmp_path, daemon_factory) -> None:
    ckpt, model = _checkpointed(tmp_path, daemon_factory)
    shutil.copy(ckpt, f"{ckpt}.1")
    ckpt.write_bytes(b"not a checkpoint")
    d = daemon_factory([model])
    log = d.log()
    (line,) = [line for line in log.splitlines() if "restored model=lidar" in line]
    assert line.endswith(f"from {ckpt}.1"), log
    assert d.status()["models"]["lidar"]["n_seen"] == 300


def test_second_daemon_on_a_used_port_restores_nothing(tmp_path, daemon_factory) -> None:
    ckpt, model = _checkpointed(tmp_path, daemon_factory)
    # A port in use (ipc:// paths are taken over by a new bind, so this needs tcp).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, [model])
        text = config.read_text().replace(f'control = "ipc://{tmp_path}/control"',
                                          f'control = "tcp://127.0.0.1:{port}"')
        config.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "streamgmm", "run", str(config)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "restored" not in proc.stderr and "restored" not in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert "service.control" in line and "cannot use endpoint" in line


def test_sighup_without_curve_does_not_claim_a_reload(daemon_factory) -> None:
    d = daemon_factory()
    d.proc.send_signal(signal.SIGHUP)
    log = wait_log(d, "SIGHUP")
    assert "reloaded allowed clients" not in log
    assert "nothing to reload" in log
    assert d.status()["ok"]


def test_checkpoint_of_another_shape_is_named_like_every_model_key(tmp_path,
                                                                   daemon_factory) -> None:
    ckpt, model = _checkpointed(tmp_path, daemon_factory)
    config = write_config(tmp_path, [dict(model, dim=2)])
    proc = subprocess.run([sys.executable, "-m", "streamgmm", "run", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("streamgmm: config error: model[0].checkpoint: "), line
    assert "'lidar'" in line


# ---------------------------------------------------------------------------------------------
# item 11: the example config checkpoints, so the restart story can be tried with it
# ---------------------------------------------------------------------------------------------


def test_example_config_checkpoints_to_a_relative_state_dir() -> None:
    for model in load_config(EXAMPLE).models:
        assert model.checkpoint == f"state/{model.name}.ckpt"


def test_example_config_restart_keeps_the_model(tmp_path, monkeypatch) -> None:
    # The example as it is, with its endpoints moved to ipc:// in tmp_path; run in tmp_path.
    text = EXAMPLE.read_text()
    for port, name in (("5555", "ingest"), ("5556", "publish"), ("5557", "control")):
        text = text.replace(f"tcp://127.0.0.1:{port}", f"ipc://{tmp_path}/{name}")
    config = tmp_path / "daemon.toml"
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    d = Daemon(config)
    try:
        d.send("points/lidar", blobs(2000))
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 2000)
        d.wait_for(lambda s: s["models"]["lidar"]["seq"] >= 1)
        # Two messages, so that the last update has a predictive figure (the first has none).
        d.send("points/lidar", blobs(2000, seed=1))
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 4000)
        time.sleep(0.3)  # publish_every_s = 0.1: the update of the second message is out
        last = d.request(op="snapshot", model="lidar")
        assert np.isfinite(last["avg_log_likelihood"])
        seq = last["seq"]
        assert d.stop() == 0
    finally:
        d.close()
    assert (tmp_path / "state" / "lidar.ckpt").exists()
    d = Daemon(config)
    try:
        status = d.status()["models"]["lidar"]
        assert status["n_seen"] == 4000 and status["seq"] >= seq
        assert f"from {os.path.join('state', 'lidar.ckpt')}" in d.log()
        # The first line of a watch after the restart has the figure from before it.
        snap = d.request(op="snapshot", model="lidar")
        assert snap["avg_log_likelihood"] == last["avg_log_likelihood"]
    finally:
        d.stop()
