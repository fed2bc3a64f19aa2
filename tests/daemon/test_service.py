"""End-to-end tests of the daemon, driven through the wire only."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
import zmq

from streamgmm import codec
from tests.helpers.daemon import write_config
from tests.helpers.data import MODEL, blobs


def test_exact_n_seen_and_consecutive_seq(daemon_factory):
    d = daemon_factory()
    for i in range(10):
        d.send("points/lidar", blobs(500, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 5000)
    status = d.settle()
    updates = d.updates()
    seqs = [u["seq"] for u in updates]
    assert seqs == list(range(1, len(seqs) + 1))
    # One online update per message when publish_every_s = 0.
    online = [u for u in updates if u["kind"] == "online"]
    assert [u["n_seen"] for u in online] == [500 * (i + 1) for i in range(10)]
    assert all(u["kind"] in ("online", "refit") and u["model"] == "lidar" for u in updates)
    assert np.isclose(updates[-1]["weights"].sum(), 1.0)
    assert status["counters"]["messages_applied"] == 10
    assert status["counters"]["points_applied"] == 5000
    assert status["models"]["lidar"]["seq"] == len(updates)
    # The first update has no predictive score (nothing was absorbed before it); later ones do.
    assert all(np.isfinite(u["avg_log_likelihood"]) for u in online[1:])
    assert d.stop() == 0


def test_snapshot_matches_last_update(daemon_factory):
    d = daemon_factory()
    for i in range(3):
        d.send("points/lidar", blobs(400, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1200)
    d.settle()
    updates = d.updates()
    last = updates[-1]
    snap = d.request(op="snapshot", model="lidar")
    assert snap["kind"] == "snapshot" and snap["seq"] == last["seq"] >= 3
    assert snap["n_seen"] == 1200
    np.testing.assert_array_equal(snap["means"], last["means"])
    np.testing.assert_array_equal(snap["covariances"], last["covariances"])
    # "model" may be left out when the daemon has one model.
    assert d.request(op="snapshot")["seq"] == last["seq"]
    assert d.stop() == 0


def test_rejections_are_counted_and_good_rows_kept(daemon_factory):
    d = daemon_factory()
    d.send("points/lidar", blobs(100))
    bad = blobs(10)
    bad[[1, 4], 0] = np.nan
    bad[7, 2] = np.inf
    d.send("points/lidar", bad)  # 7 good rows kept, 3 dropped
    d.send("points/lidar", np.full((4, 3), np.nan))  # nothing usable: rejected 'empty'
    d.send("points/lidar", blobs(10, dim=2))  # wrong dimension
    d.send_raw([b"points/lidar", b"\xc1not msgpack"])
    d.send_raw([b"points/lidar", b"x", b"y"])  # three frames
    d.send_raw([b"points/lidar", codec.encode_request("status")])  # a map without points
    d.send("points/lidar", blobs(5), seq=d.seq["test"] + 3)  # two messages lost
    d.send("points/lidar", blobs(5), seq=0)  # publisher restart
    far = blobs(6)
    far[2, 1] = 1e300  # finite, but its square overflows: dropped and counted
    d.send("points/lidar", far)
    # Received counts a message when it is read; it is absorbed from the backlog after.
    status = d.wait_for(lambda s: s["counters"]["messages_received"] == 10
                        and s["models"]["lidar"]["backlog_points"] == 0)
    c = status["counters"]
    assert status["models"]["lidar"]["n_seen"] == 100 + 7 + 5 + 5 + 5
    assert c["messages_applied"] == 5
    assert c["rows_dropped_range"] == 1
    assert c["rows_dropped_nonfinite"] == 3 + 4
    assert c["rejected"] == {"empty": 1, "dim": 1, "msgpack": 1, "frames": 1, "schema": 1}
    assert c["messages_lost"] == 2
    assert c["publisher_restarts"] == 1
    # Still serving.
    assert d.request(op="nonsense")["ok"] is False
    assert d.status()["ok"] is True
    assert d.stop() == 0


def test_hostile_frames_leave_model_as_valid_batches_alone(daemon_factory, tmp_path):
    """Random frames interleaved with valid batches: same model as the valid batches alone."""
    rng = np.random.default_rng(1)
    batches = [blobs(200, seed=i) for i in range(8)]
    clean_dir = tmp_path / "clean"
    noisy_dir = tmp_path / "noisy"
    clean_dir.mkdir()
    noisy_dir.mkdir()
    results = []
    for directory, noisy in ((clean_dir, False), (noisy_dir, True)):
        d = daemon_factory(directory=directory)
        for i, batch in enumerate(batches):
            if noisy:
                for _ in range(20):
                    d.send_raw([b"points/lidar", rng.bytes(int(rng.integers(0, 300)))])
            d.send("points/lidar", batch)
            d.wait_for(lambda s, i=i: s["models"]["lidar"]["n_seen"] == 200 * (i + 1))
            d.settle()
        results.append(d.request(op="snapshot"))
        assert d.stop() == 0
    clean, noisy = results
    np.testing.assert_array_equal(clean["means"], noisy["means"])
    np.testing.assert_array_equal(clean["covariances"], noisy["covariances"])
    np.testing.assert_array_equal(clean["weights"], noisy["weights"])


def test_refit_on_request(daemon_factory):
    d = daemon_factory()
    for i in range(5):
        d.send("points/lidar", blobs(1000, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 5000)
    d.updates(timeout=0.3)
    reply = d.request(op="refit", model="lidar", timeout=30)
    assert reply["ok"] is True
    refits = [u for u in d.updates() if u["kind"] == "refit"]
    assert [u["seq"] for u in refits] == [reply["seq"]]
    status = d.status()["models"]["lidar"]
    assert status["refits"] == 1 and status["n_seen"] == 5000
    assert d.request(op="refit", model="nope")["ok"] is False
    assert d.stop() == 0


def test_refusals_carry_a_machine_readable_code(daemon_factory):
    d = daemon_factory()
    unknown = d.request(op="snapshot", model="nope")
    assert (unknown["ok"], unknown["code"]) == (False, "unknown_model")
    assert "no model named 'nope'" in unknown["error"]  # the text stays, for people
    assert d.request(op="snapshot", model="lidar")["code"] == "no_parameters"
    assert d.request(op="refit", model="lidar")["code"] == "no_parameters"
    assert d.request(op="source")["code"] == "bad_request"
    assert d.stop() == 0

def test_two_models_on_two_topics(daemon_factory):
    models = [dict(MODEL), {"name": "imu", "topic": "points/imu", "dim": 6, "components": 2,
                            "covariance_type": "diag", "publish_every_s": 0.0}]
    d = daemon_factory(models)
    d.send("points/lidar", blobs(300))
    d.send("points/imu", blobs(200, dim=6), source="imu")
    d.send("points/imu", blobs(50, dim=3), source="imu")  # wrong dim for imu
    status = d.wait_for(lambda s: s["counters"]["messages_received"] == 3 and all(
        m["backlog_points"] == 0 for m in s["models"].values()))  # read, then absorbed
    assert status["models"]["lidar"]["n_seen"] == 300
    assert status["models"]["imu"]["n_seen"] == 200
    assert status["counters"]["rejected"] == {"dim": 1}
    by_model = {}
    for u in d.updates():
        by_model.setdefault(u["model"], []).append(u)
    assert [u["seq"] for u in by_model["imu"]] == [1]
    assert by_model["imu"][0]["covariances"].shape == (2, 6)
    assert d.request(op="snapshot")["ok"] is False  # several models: name one
    assert d.request(op="snapshot", model="imu")["means"].shape == (2, 6)
    assert d.stop() == 0


def test_sigterm_checkpoints_and_restart_continues(daemon_factory, tmp_path):
    model = dict(MODEL, checkpoint=str(tmp_path / "state" / "lidar.ckpt"))
    d = daemon_factory([model])
    for i in range(4):
        d.send("points/lidar", blobs(250, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1000)
    d.settle()
    before = d.request(op="snapshot")
    assert d.stop(signal.SIGTERM) == 0
    assert "Traceback" not in d.log()
    d2 = daemon_factory([model])
    after = d2.request(op="snapshot")
    assert after["n_seen"] == 1000 and after["seq"] == before["seq"]
    np.testing.assert_array_equal(after["means"], before["means"])
    d2.send("points/lidar", blobs(100, seed=9))
    d2.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1100)
    d2.settle()
    seqs = [u["seq"] for u in d2.updates()]
    assert seqs[0] == before["seq"] + 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert d2.stop(signal.SIGINT) == 0


def test_sigkill_restart_never_reuses_seq(daemon_factory, tmp_path):
    model = dict(MODEL, checkpoint=str(tmp_path / "lidar.ckpt"), checkpoint_every_s=0.2)
    d = daemon_factory([model])
    for i in range(5):
        d.send("points/lidar", blobs(200, seed=i))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1000)
    published = max(u["seq"] for u in d.updates())
    d.wait_for(lambda s: s["models"]["lidar"]["checkpoints"] >= 2, timeout=5)
    d.stop(signal.SIGKILL)
    d2 = daemon_factory([model])
    snap = d2.request(op="snapshot")
    assert snap["seq"] > published
    assert snap["n_seen"] == 1000
    assert d2.stop() == 0


def test_corrupt_checkpoint_is_moved_aside(daemon_factory, tmp_path):
    path = tmp_path / "lidar.ckpt"
    model = dict(MODEL, checkpoint=str(path), checkpoint_generations=1)
    d = daemon_factory([model])
    d.send("points/lidar", blobs(300))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 300)
    assert d.stop() == 0
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    path.write_bytes(bytes(blob))
    d2 = daemon_factory([model])
    assert d2.status()["models"]["lidar"]["n_seen"] == 0
    assert (tmp_path / "lidar.ckpt.corrupt").read_bytes() == bytes(blob)
    assert "WARNING" in d2.log() and "corrupt" in d2.log()
    assert d2.stop() == 0


@pytest.mark.parametrize(
    "model, key",
    [
        (dict(MODEL, components=0), "model[0].components"),
        (dict(MODEL, bogus=1), "model[0].bogus"),
        (dict(MODEL, dim="three"), "model[0].dim"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, model, key):
    path = write_config(tmp_path, [model])
    proc = subprocess.run([sys.executable, "-m", "streamgmm", "run", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]


def test_endpoint_in_use_exits_2(tmp_path):
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.PUB)
    port = squatter.bind_to_random_port("tcp://127.0.0.1")
    try:
        path = write_config(tmp_path, [MODEL], {"publish": f"tcp://127.0.0.1:{port}"})
        text = path.read_text().replace(f'publish = "ipc://{tmp_path}/publish"\n', "")
        path.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "streamgmm", "run", str(path)],
                              capture_output=True, text=True, timeout=30)
    finally:
        ctx.destroy(linger=0)
    assert proc.returncode == 2
    assert "service.publish" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_points_buffered_before_initialisation_survive_a_restart(daemon_factory, tmp_path):
    model = dict(MODEL, checkpoint=str(tmp_path / "lidar.ckpt"))  # 4 components
    d = daemon_factory([model])
    d.send("points/lidar", blobs(2))  # too few to seed 4 components: kept, not yet a model
    d.wait_for(lambda s: s["counters"]["messages_applied"] == 1)
    assert d.request(op="snapshot")["ok"] is False
    assert d.stop() == 0
    d2 = daemon_factory([model])
    d2.send("points/lidar", blobs(3, seed=1))
    status = d2.wait_for(lambda s: s["models"]["lidar"]["fitted"])
    assert status["models"]["lidar"]["n_seen"] == 5
    assert d2.stop() == 0


# ------------------------------------------------------------------ in-process unit tests


@pytest.mark.parametrize("bad_rows", [0, 1, 7, 300])
def test_range_fast_path_drops_and_counts_like_the_row_maximum(bad_rows):
    from streamgmm.daemon.service import drop_out_of_range

    rng = np.random.default_rng(bad_rows)
    bound = 1e3
    for _ in range(10):
        X = rng.normal(scale=100.0, size=(300, int(rng.integers(1, 5))))
        rows = rng.choice(300, size=bad_rows, replace=False)
        X[rows, rng.integers(0, X.shape[1], bad_rows)] = rng.choice([-1, 1], bad_rows) * 2e3
        X[rng.integers(0, 300)] = bound  # on the bound: kept
        keep = np.max(np.abs(X), axis=1) <= bound
        kept, dropped = drop_out_of_range(X, bound)
        assert dropped == 300 - int(keep.sum()) == bad_rows - int(keep[rows].sum())
        np.testing.assert_array_equal(kept, X[keep])
    empty, dropped = drop_out_of_range(np.zeros((0, 3)), bound)
    assert empty.shape == (0, 3) and dropped == 0


def test_control_dispatch_table_serves_exactly_the_codec_ops():
    from streamgmm.daemon.service import Service

    assert list(Service.CONTROL_HANDLERS) == list(codec.CONTROL_OPS)
    assert all(callable(handler) for handler in Service.CONTROL_HANDLERS.values())


def _config(tmp_path):
    return write_config(tmp_path, [MODEL])


def test_signal_handlers_stay_through_shutdown_and_are_restored(tmp_path, monkeypatch):
    import os
    import threading
    import time

    from streamgmm.daemon import service as svc

    during_shutdown = {}
    real_shutdown = svc.Service.shutdown

    def shutdown(self):
        during_shutdown[signal.SIGTERM] = signal.getsignal(signal.SIGTERM)
        real_shutdown(self)

    monkeypatch.setattr(svc.Service, "shutdown", shutdown)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                      signal.SIGHUP)}

    def terminate_once_installed():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            handler = signal.getsignal(signal.SIGTERM)
            if getattr(handler, "__name__", "") == "request_exit":
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=terminate_once_installed, daemon=True)
    killer.start()
    assert svc.run_daemon(_config(tmp_path)) == svc.EXIT_OK
    killer.join(5)
    # Shutdown ran under the daemon's handler; afterwards the previous handlers are back.
    assert getattr(during_shutdown[signal.SIGTERM], "__name__", "") == "request_exit"
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_run_daemon_from_a_thread_installs_no_signal_handlers(tmp_path, monkeypatch):
    import threading

    from streamgmm.daemon import service as svc

    seen = []
    monkeypatch.setattr(svc.Service, "run",
                        lambda self: seen.append(signal.getsignal(signal.SIGTERM)))
    before = signal.getsignal(signal.SIGTERM)
    result = []
    thread = threading.Thread(target=lambda: result.append(svc.run_daemon(_config(tmp_path))))
    thread.start()
    thread.join(30)
    assert result == [svc.EXIT_OK]
    assert seen == [before] and signal.getsignal(signal.SIGTERM) is before
