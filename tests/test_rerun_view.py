"""``streamgmm watch --rerun-save``: mixtures logged as ellipsoids to an .rrd, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.client import Mixture
from streamgmm.rerun_view import RerunView, ellipsoid_axes

rr = pytest.importorskip("rerun", reason="rerun-sdk not installed: pip install 'streamgmm[rerun]'")


def mixture(seq: int, k: int = 3, d: int = 3) -> Mixture:
    rng = np.random.default_rng(seq)
    a = rng.normal(size=(k, d, d))
    return Mixture(model="lidar", seq=seq, stamp=1000.0 + seq, n_seen=100 * seq, kind="online",
                   covariance_type="full", weights=np.full(k, 1 / k),
                   means=rng.normal(size=(k, d)), covariances=a @ a.transpose(0, 2, 1),
                   avg_log_likelihood=-3.5, last_stamp=50.0 + seq, extra={})


def read_rrd(path: Path) -> dict[str, list]:
    """entity path -> chunks (rerun-sdk's own reader)."""
    out: dict[str, list] = {}
    for chunk in rr.chunk.RrdReader(path).stream().to_chunks():
        out.setdefault(chunk.entity_path, []).append(chunk)
    return out


def test_ellipsoid_axes_rebuild_the_covariance() -> None:
    from scipy.spatial.transform import Rotation

    cov = mixture(4, k=20).covariances
    half, quats = ellipsoid_axes(cov)
    rot = Rotation.from_quat(quats).as_matrix()
    rebuilt = rot @ (half[:, :, None] ** 2 * np.eye(3)) @ rot.transpose(0, 2, 1)
    np.testing.assert_allclose(rebuilt, cov, atol=1e-10)


@pytest.mark.parametrize("d", [3, 2])
def test_updates_logged_to_an_rrd(tmp_path: Path, d: int) -> None:
    path = tmp_path / "out.rrd"
    view = RerunView(save=str(path))
    for seq in (1, 2, 3, 5):
        view.log_mixture(mixture(seq, k=4, d=d))
    view.log_points(np.random.default_rng(0).normal(size=(7, d)), seq=5)
    view.close()
    chunks = read_rrd(path)
    for entity in ("/mixture/sigma1", "/mixture/sigma2", "/mixture/means", "/mixture/info"):
        assert sum(c.num_rows for c in chunks[entity]) == 4, entity
        assert all({"seq", "stamp"} <= set(c.timeline_names) for c in chunks[entity])
    batch = chunks["/mixture/sigma1"][0].to_record_batch()
    seqs = batch.column(batch.schema.get_field_index("seq")).to_pylist()
    assert seqs == [1, 2, 3, 5]
    half_col = next(i for i, f in enumerate(batch.schema) if "half_sizes" in f.name.lower())
    halves = batch.column(half_col).to_pylist()
    assert [len(h) for h in halves] == [4] * 4  # one ellipsoid per component per update
    expected, _ = ellipsoid_axes(_pad3(mixture(1, k=4, d=d).covariances))
    np.testing.assert_allclose(np.array(halves[0]), expected, rtol=1e-5)
    assert sum(c.num_rows for c in chunks["/points"]) == 1


def _pad3(cov: np.ndarray) -> np.ndarray:
    out = np.zeros((len(cov), 3, 3))
    d = cov.shape[-1]
    out[:, :d, :d] = cov
    return out


def test_watch_rerun_save(ctx, fake_control, tmp_path: Path, capsys) -> None:
    import threading

    import zmq

    from streamgmm.cli import main
    from tests.cli.test_commands import control_handler
    from tests.helpers.fakes import MODEL, bound_socket, update_payload, wait_subscribed

    control = fake_control(control_handler)
    pub, endpoint = bound_socket(ctx, zmq.XPUB)
    topic = b"gmm/" + MODEL.encode()

    def publish() -> None:
        wait_subscribed(pub, topic)
        for seq in (5, 6):
            pub.send_multipart([topic, update_payload(seq)])

    thread = threading.Thread(target=publish)
    thread.start()
    out = tmp_path / "watch.rrd"
    try:
        argv = ["watch", "--endpoint", endpoint, "--control", control.endpoint, "--model",
                MODEL, "--count", "3", "--timeout", "10", "--rerun-save", str(out)]
        assert main(argv) == 0
    finally:
        thread.join(10.0)
        pub.close(linger=0)
    assert len(capsys.readouterr().out.splitlines()) == 3  # the snapshot, then seq 5 and 6
    chunks = read_rrd(out)
    batch = chunks["/mixture/sigma1"][0].to_record_batch()
    assert batch.column(batch.schema.get_field_index("seq")).to_pylist() == [4, 5, 6]


# --------------------------------------------------------------------------- the viewer


def test_the_viewer_is_found_next_to_the_interpreter_without_path(monkeypatch) -> None:
    import os
    import sys

    from streamgmm.rerun_view import viewer_executable

    monkeypatch.setenv("PATH", "")  # a venv's bin/ not activated: only sys.executable's dir
    exe = viewer_executable()
    assert exe is not None and os.path.dirname(exe) == os.path.dirname(sys.executable)


def test_watch_rerun_without_a_display_is_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "-m", "streamgmm", "watch", "--model", "lidar", "--rerun",
         "--control", f"ipc://{tmp_path}/c", "--endpoint", f"ipc://{tmp_path}/p"],
        capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("streamgmm watch: error: no display") and "--rerun-save" in line


def test_a_viewer_that_cannot_start_says_why(monkeypatch, tmp_path: Path) -> None:
    from streamgmm import rerun_view

    fake = tmp_path / "rerun"
    fake.write_text("#!/bin/sh\necho 'INFO starting' >&2\necho 'Error: no GPU adapter' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(rerun_view, "viewer_executable", lambda: str(fake))
    monkeypatch.setenv("DISPLAY", ":99")
    with pytest.raises(rerun_view.ViewerError, match="could not start: Error: no GPU adapter"):
        rerun_view.spawn_viewer(port=_free_port())
    # the viewer is asked to listen on loopback only
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nexit 3\n")
    with pytest.raises(rerun_view.ViewerError):
        rerun_view.spawn_viewer(port=_free_port())
    assert "--bind 127.0.0.1" in (tmp_path / "args").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
