"""Restoring from checkpoints at start-up (issue 13, items 7, 9, 11): the log names the
generation actually used, endpoints are checked before anything is restored, a checkpoint of
another shape is named like every model key, and the example config checkpoints to a
relative state dir so that a restart keeps the model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streamgmm.daemon.config import load_config
from tests.helpers.daemon import Daemon, write_config
from tests.helpers.data import MODEL, blobs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "example.toml"


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
    # A port in use by another process (not a daemon: nothing answers on it).
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


def test_second_daemon_on_a_running_ones_ipc_paths_exits_and_leaves_it_serving(
        tmp_path, daemon_factory) -> None:
    ckpt = tmp_path / "lidar.ckpt"
    model = dict(MODEL, checkpoint=str(ckpt))
    first = daemon_factory([model])
    first.send("points/lidar", blobs(300))
    first.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 300)
    # libzmq would delete the running daemon's socket files and bind anew: it must refuse.
    (tmp_path / "second").mkdir()
    config = write_config(tmp_path / "second", [model])
    text = config.read_text().replace(str(tmp_path / "second"), str(tmp_path))
    config.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "streamgmm", "run", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "cannot use endpoint" in line and "already in use" in line, line
    assert "restored" not in proc.stderr
    first.send("points/lidar", blobs(100, seed=1))
    assert first.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 400)


def test_stale_ipc_file_of_a_killed_daemon_is_taken_over(tmp_path) -> None:
    from streamgmm.daemon.transport import _ipc_in_use

    path = tmp_path / "control"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.listen()
    assert _ipc_in_use(f"ipc://{path}")
    stale.close()  # the file stays, as after a SIGKILL, with nobody listening
    assert path.exists() and not _ipc_in_use(f"ipc://{path}")
    assert not _ipc_in_use(f"ipc://{tmp_path}/absent")
    assert not _ipc_in_use("tcp://127.0.0.1:5555")


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

