"""``watch --foxglove/--foxglove-save`` against a real daemon, read by a client of our own.

A Foxglove WebSocket client written from the protocol alone (tests/helpers/foxglove_ws.py)
connects to the watcher on loopback, finds the SceneUpdate channel, subscribes, and checks
that the ellipsoids' poses and sizes give back the daemon's covariances; the MCAP the same
watcher wrote, read by ``mcap``'s reader, holds the same. Every wait is bounded; every process
is killed at the end.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("foxglove", reason="foxglove-sdk not installed: pip install "
                    "'streamgmm[foxglove]'")
pytest.importorskip("websockets", reason="the test client needs websockets")
pytest.importorskip("google.protobuf", reason="the test client needs protobuf")

from tests.helpers.foxglove_ws import FoxgloveClient, read_mcap  # noqa: E402

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
         "publish_every_s": 0.0, "refit_every_s": 0.0, "sample_points": 64}
CENTERS = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0], [6.0, 6.0, 2.0]])
SCALES = np.array([[1.0, 0.3, 0.2], [0.5, 1.5, 0.4], [0.3, 0.3, 1.2], [0.8, 0.8, 0.8]])


def points(rng: np.random.Generator, n: int) -> np.ndarray:
    k = rng.integers(0, 4, n)
    rot = Rotation.from_euler("z", 35, degrees=True).as_matrix()
    return CENTERS[k] + (rng.normal(size=(n, 3)) * SCALES[k]) @ rot.T


class Watcher:
    """``streamgmm watch`` as a subprocess; its stderr lines are read by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "watch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_line(self, text: str, timeout: float = 30.0) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no stderr line with {text!r}: {self.err}") from None
            if text in line:
                return line

    def stop(self) -> tuple[int, str]:
        """SIGTERM (the watcher finishes its files), then its exit status and stdout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        code = self.proc.wait(30)
        self.thread.join(10)
        return code, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def watchers():
    started: list[Watcher] = []
    yield started
    for w in started:
        w.kill()


def spheres(entity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, quaternions (x, y, z, w) and sizes of a decoded SceneEntity's spheres."""
    c = np.array([[s.pose.position.x, s.pose.position.y, s.pose.position.z]
                  for s in entity.spheres])
    q = np.array([[s.pose.orientation.x, s.pose.orientation.y, s.pose.orientation.z,
                   s.pose.orientation.w] for s in entity.spheres])
    z = np.array([[s.size.x, s.size.y, s.size.z] for s in entity.spheres])
    return c, q, z


def check_scene_update(update, daemon_update: dict, frame: str) -> None:
    """The SceneUpdate's ellipsoids are the daemon's mixture (covariances within 1e-3)."""
    ids = [e.id for e in update.entities]
    assert ids == ["lidar/sigma1", "lidar/sigma2"]
    for entity, sigma in zip(update.entities, (1.0, 2.0)):
        assert entity.frame_id == frame
        meta = {kv.key: kv.value for kv in entity.metadata}
        assert int(meta["seq"]) == daemon_update["seq"]
        assert int(meta["n_seen"]) == daemon_update["n_seen"]
        assert "n_change_points" in meta
        centers, quats, sizes = spheres(entity)
        rot = Rotation.from_quat(quats).as_matrix()
        half = sizes / (2 * sigma)
        cov = rot @ (half[:, :, None] ** 2 * np.eye(3)) @ rot.transpose(0, 2, 1)
        want = daemon_update["covariances"]
        rel = np.linalg.norm(cov - want, axis=(1, 2)) / np.linalg.norm(want, axis=(1, 2))
        assert rel.max() < 1e-3, rel
        np.testing.assert_allclose(centers, daemon_update["means"], rtol=1e-6, atol=1e-9)


def test_watch_serves_and_records_the_live_mixture(daemon_factory, watchers, tmp_path):
    d = daemon_factory(models=[MODEL])
    rng = np.random.default_rng(21)
    sent = [points(rng, 2000)]
    stamp = 1_750_000_000.0
    d.send("points/lidar", sent[0], stamp=stamp, frame="lidar_front")
    d.wait_for(lambda s: s["models"]["lidar"]["fitted"])

    mcap = tmp_path / "model.mcap"
    rrd = tmp_path / "model.rrd"
    png = tmp_path / "model.png"
    args = ["--endpoint", f"ipc://{d.directory}/publish", "--control",
            f"ipc://{d.directory}/control", "--model", "lidar", "--timeout", "120",
            "--foxglove", "127.0.0.1:0", "--foxglove-save", str(mcap)]
    extras = []
    if _has("rerun"):
        extras += ["--rerun-save", str(rrd)]
    if _has("matplotlib"):
        extras += ["--plot", str(png)]
    w = Watcher(args + extras, tmp_path)
    watchers.append(w)
    line = w.wait_line("Foxglove WebSocket at ws://127.0.0.1:")
    port = int(line.split("ws://127.0.0.1:")[1].split()[0])

    client = FoxgloveClient(f"ws://127.0.0.1:{port}")
    try:
        assert client.subprotocol in ("foxglove.sdk.v1", "foxglove.websocket.v1")
        # The watcher logs the daemon's snapshot at once, so the channel is advertised.
        channel = client.wait_channel("/streamgmm/lidar/mixture")
        assert channel["schemaName"] == "foxglove.SceneUpdate"
        client.subscribe(channel, 1)
        # Live updates: Foxglove has no latching, so keep sending until some arrive after
        # the subscription took effect (bounded).
        got: list = []
        for attempt in range(40):
            if attempt and attempt % 8 == 0:
                # The Foxglove server can refuse a subscription that follows its channel's
                # advertisement too closely ("attempted to subscribe to unknown channel: 1"
                # in the watcher's stderr, a loaded fresh-clone run): a client asks again.
                client.subscribe(channel, 1)
            stamp += 1.0
            batch = points(rng, 500)
            sent.append(batch)
            d.send("points/lidar", batch, stamp=stamp, frame="lidar_front")
            try:
                got = client.wait_messages(1, 3, timeout=0.5)
            except TimeoutError:
                continue
            break
        assert len(got) >= 3, f"no SceneUpdate reached the client; watcher stderr: {w.err[-5:]}"
        points_channel = client.wait_channel("/streamgmm/lidar/points")
        assert points_channel["schemaName"] == "foxglove.PointCloud"
        client.subscribe(points_channel, 2)
        clouds: list = []
        for attempt in range(40):
            if attempt and attempt % 8 == 0:
                client.subscribe(points_channel, 2)  # asked again, as above
            stamp += 1.0
            batch = points(rng, 500)
            sent.append(batch)
            d.send("points/lidar", batch, stamp=stamp, frame="lidar_front")
            try:
                clouds = client.wait_messages(2, 1, timeout=0.5)
            except TimeoutError:
                continue
            break
        assert clouds, "no PointCloud reached the client"
        live = client.wait_messages(1, len(got))
    finally:
        client.close()
    n_sent = sum(len(b) for b in sent)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == n_sent, timeout=60)
    by_seq = {u["seq"]: u for u in d.updates(timeout=1.0)}
    code, out = w.stop()
    assert code == 0, w.err

    for ts, update in live:
        seq = int({kv.key: kv.value for kv in update.entities[0].metadata}["seq"])
        check_scene_update(update, by_seq[seq], "lidar_front")
        assert ts == round(by_seq[seq]["last_stamp"] * 1e9)  # the sensor stamp

    everything = np.concatenate(sent).astype(np.float32)
    for _, cloud in clouds:
        assert cloud.frame_id == "lidar_front" and cloud.point_stride == 12
        xyz = np.frombuffer(cloud.data, "<f4").reshape(-1, 3)
        assert 1 <= len(xyz) <= 64
        # Every sampled point is one the daemon absorbed.
        dist = np.abs(xyz[:, None, :] - everything[None, :, :]).max(axis=2).min(axis=1)
        assert dist.max() == 0.0

    # The recording holds the same: every update the watcher received, with its stamp.
    recorded = [(t, m) for topic, _, t, m in read_mcap(mcap)
                if topic == "/streamgmm/lidar/mixture"]
    seqs = [int({kv.key: kv.value for kv in m.entities[0].metadata}["seq"])
            for _, m in recorded]
    watched = [line for line in out.splitlines() if line.startswith("lidar seq")]
    assert seqs == sorted(seqs) and len(seqs) == len(watched)
    for (t, update), seq in zip(recorded, seqs):
        check_scene_update(update, by_seq[seq], "lidar_front")
        assert t == round(by_seq[seq]["last_stamp"] * 1e9)
    assert any(topic == "/streamgmm/lidar/points" for topic, _, _, _ in read_mcap(mcap))
    if "--plot" in extras:
        assert png.stat().st_size > 1000
    if "--rerun-save" in extras:
        import rerun as rr

        entities = {c.entity_path for c in rr.chunk.RrdReader(rrd).stream().to_chunks()}
        assert {"/mixture/sigma1", "/points"} <= entities


def test_watch_foxglove_refuses_other_dimensions(daemon_factory, watchers, tmp_path):
    model = dict(MODEL, name="imu", topic="points/imu", dim=5, sample_points=0)
    d = daemon_factory(models=[model])
    d.send("points/imu", np.random.default_rng(0).normal(size=(200, 5)))
    d.wait_for(lambda s: s["models"]["imu"]["fitted"])
    w = Watcher(["--endpoint", f"ipc://{d.directory}/publish", "--control",
                 f"ipc://{d.directory}/control", "--model", "imu", "--timeout", "60",
                 "--foxglove", "127.0.0.1:0"], tmp_path)
    watchers.append(w)
    code = w.proc.wait(60)
    w.thread.join(10)
    assert code == 2
    last = w.err[-1].strip()
    assert last == ("streamgmm watch: error: --foxglove draws models of 2 or 3 dimensions; "
                    "model 'imu' has 5"), w.err


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
