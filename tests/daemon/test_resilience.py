"""The daemon under overload, stalled subscribers, dying publishers and failing disks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers.daemon import Daemon

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 16,
         "publish_every_s": 0.05, "refit_every_s": 0.0}

BLAST = r"""
import sys, time, numpy as np, zmq
from streamgmm import codec
endpoint, seconds, source = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ctx = zmq.Context(); pub = ctx.socket(zmq.PUB); pub.sndhwm = 100; pub.connect(endpoint)
time.sleep(0.5)
X = np.random.default_rng(0).normal(size=(4096, 3))
seq, end = 0, time.monotonic() + seconds
while time.monotonic() < end:            # several times what the daemon absorbs: overload
    pub.send_multipart([b"points/lidar", codec.encode_points(X, seq=seq, stamp=1.0, source=source)])
    seq += 1
    if seq % 20 == 0:                     # but leave the 2-core machine some room to breathe
        time.sleep(0.001)
print("blasted", flush=True)
sys.stdin.readline()                      # the test says when the daemon has drained;
for _ in range(3):                        # a final message at a slow pace is not dropped,
    pub.send_multipart([b"points/lidar", codec.encode_points(X[:10], seq=seq, stamp=2.0,
                                                             source=source)])
    seq += 1                              # so every earlier drop shows up as a seq gap
    time.sleep(0.2)
print(seq, flush=True)
ctx.destroy(linger=2000)
"""


@pytest.fixture
def daemon_model() -> dict:
    """The model of this module's daemon_factory daemons (tests/conftest.py)."""
    return MODEL


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _wait_drained(d: Daemon, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
    """Until the daemon has received nothing new for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        received = d.status()["counters"]["messages_received"]
        if received != last:
            last, since = received, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.1)
    raise TimeoutError("the daemon kept receiving")


def test_overload_keeps_control_responsive_and_accounts_for_every_message(daemon_factory):
    d = daemon_factory(service={})
    blaster = subprocess.Popen(
        [sys.executable, "-c", BLAST, f"ipc://{d.directory}/ingest", "4", "blaster"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    latencies, rss = [], []
    try:
        deadline = time.monotonic() + 4.5
        time.sleep(0.7)
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            d.status()
            latencies.append(time.perf_counter() - t0)
            rss.append(_rss_mb(d.proc.pid))
            time.sleep(0.05)
        assert blaster.stdout.readline().strip() == "blasted"
        _wait_drained(d)
        sent = int(blaster.communicate("go\n", timeout=30)[0].strip())
    finally:
        if blaster.poll() is None:
            blaster.kill()
    status = d.wait_for(lambda s: s["counters"]["messages_received"] > 0
                        and s["models"]["lidar"]["n_seen"] % 4096 == 30, timeout=20)
    c = status["counters"]
    rejected = sum(c["rejected"].values())
    # Overload shows as thinning (rows skipped, messages kept) or, beyond what the daemon
    # reads per turn, as messages lost at the high-water mark.
    assert c["messages_lost"] > 0 or c["points_thinned"] > 0, \
        "the blaster did not overload the daemon"
    # Per source: sent = applied + rejected + lost, exactly.
    assert sent == c["messages_applied"] + rejected + c["messages_lost"]
    assert status["models"]["lidar"]["n_seen"] == c["points_applied"]
    # Control keeps answering. Blaster, daemon, this test and whatever else runs share 2
    # cores, so any one answer can wait for the scheduler (a p95 of 0.112 s failed a full
    # run once); a loop stalled by ingest would show in most answers, hence the median. The
    # latency goal itself (p99 < 100 ms) is measured by bench_service, not asserted here.
    p50 = float(np.median(latencies))
    assert p50 < 0.1, f"control latency under overload: median {p50:.3f} s"
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    assert max(rss) < 600, f"daemon RSS grew to {max(rss):.0f} MB"
    assert d.stop() == 0


SUBSCRIBER = r"""
import sys, time
from streamgmm.client import MixtureSubscriber
sub = MixtureSubscriber(sys.argv[1], sys.argv[2], "lidar", timeout=5.0)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    m = sub.recv(timeout=0.5)
    if m is not None:
        print(m.seq, m.kind, sub.resyncs, flush=True)
sub.close()
"""


def test_stalled_subscriber_never_slows_ingest_and_resyncs(daemon_factory):
    # One update per message is what this test counts: thinning off, since a burst of 500
    # one-message steps can be more than a second of work, which thinning would coalesce.
    d = daemon_factory([dict(MODEL, publish_every_s=0.0, components=2, overload_budget_s=0.0)],
                       {"sockets": {"sndhwm": 10}})
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, f"ipc://{d.directory}/publish",
         f"ipc://{d.directory}/control", "12"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        X = np.random.default_rng(0).normal(size=(64, 3))
        for _ in range(5):
            d.send("points/lidar", X)
        time.sleep(2.0)
        sub.send_signal(signal.SIGSTOP)
        t0 = time.perf_counter()
        for i in range(500):  # 500 updates while the subscriber sleeps
            d.send("points/lidar", X)
            if i % 50 == 0:
                time.sleep(0.01)
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 505 * 64, timeout=20)
        stalled_rate = 500 / (time.perf_counter() - t0)
        sub.send_signal(signal.SIGCONT)
        for _ in range(3):
            time.sleep(0.5)
            d.send("points/lidar", X)
        out, _ = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.send_signal(signal.SIGCONT)
            sub.kill()
    lines = [line.split() for line in out.strip().splitlines()]
    seqs = [int(s) for s, _, _ in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq must only go up"
    # 508 messages, one update each: the subscriber ends on the daemon's last seq.
    final_seq = d.status()["models"]["lidar"]["seq"]
    assert final_seq >= 508
    assert seqs[-1] == final_seq, f"subscriber did not catch up: {lines[-3:]}"
    assert int(lines[-1][2]) >= 1, "the stalled subscriber should have re-synced by snapshot"
    assert stalled_rate > 200, f"ingest slowed to {stalled_rate:.0f} msg/s by a stalled peer"
    assert d.stop() == 0


def test_publisher_restart_and_death_are_survived(daemon_factory):
    d = daemon_factory([dict(MODEL, components=2, publish_every_s=0.0)])
    X = np.random.default_rng(0).normal(size=(32, 3))
    for round_ in range(3):  # a publisher process that dies and comes back, seq from 0
        script = (
            "import sys, time, numpy as np, zmq\n"
            "from streamgmm import codec\n"
            "ctx = zmq.Context(); pub = ctx.socket(zmq.PUB); pub.connect(sys.argv[1])\n"
            "time.sleep(0.4)\n"
            "X = np.ones((32, 3)) * np.arange(3)\n"
            "for i in range(10):\n"
            "    pub.send_multipart([b'points/lidar', codec.encode_points(X + i, seq=i, "
            "stamp=1.0, source='cam')])\n"
            "time.sleep(0.3)\n"
            "import os; os.kill(os.getpid(), 9)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script, f"ipc://{d.directory}/ingest"],
                              timeout=30)
        assert proc.returncode == -signal.SIGKILL
        d.wait_for(lambda s, r=round_: s["models"]["lidar"]["n_seen"] == 320 * (r + 1))
    d.send("points/lidar", X)
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 960 + 32)
    assert status["counters"]["publisher_restarts"] == 2
    assert status["counters"]["messages_lost"] == 0
    assert d.stop() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_checkpoint_dir_fails_loudly_but_ingest_goes_on_nonroot(
        daemon_factory, tmp_path):
    _checkpoint_failure_scenario(daemon_factory, tmp_path, make_dir_unwritable=True)


def test_unwritable_checkpoint_fails_loudly_but_ingest_goes_on(daemon_factory, tmp_path):
    _checkpoint_failure_scenario(daemon_factory, tmp_path, make_dir_unwritable=False)


def _checkpoint_failure_scenario(daemon_factory, tmp_path, make_dir_unwritable: bool):
    state = tmp_path / "state"
    if make_dir_unwritable:
        state.mkdir()
        os.chmod(state, 0o500)
        path = state / "lidar.ckpt"
    else:
        # A regular file where the checkpoint's directory should be: every write fails
        # (ENOTDIR), whoever runs the test.
        state.write_text("not a directory")
        path = state / "lidar.ckpt"
    d = daemon_factory([dict(MODEL, components=2, publish_every_s=0.0, checkpoint=str(path),
                             checkpoint_every_s=0.1)])
    X = np.random.default_rng(0).normal(size=(100, 3))
    for _i in range(10):
        d.send("points/lidar", X)
        time.sleep(0.05)
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 1000
                        and s["models"]["lidar"]["checkpoint_failures"] >= 2)
    assert status["counters"]["messages_applied"] == 10
    assert "checkpoint failed" in d.log()
    if make_dir_unwritable:
        os.chmod(state, 0o700)
    assert d.stop() == 0


def test_sigterm_under_load_saves_everything_applied(daemon_factory, tmp_path):
    path = tmp_path / "lidar.ckpt"
    model = dict(MODEL, components=4, checkpoint=str(path), checkpoint_every_s=60.0)
    for trial in range(3):
        d = daemon_factory([model])
        blaster = subprocess.Popen(
            [sys.executable, "-c", BLAST, f"ipc://{d.directory}/ingest", "1.5", f"t{trial}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )
        try:
            d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] > 0)
            time.sleep(0.2 * trial)
            applied_before = d.status()["models"]["lidar"]["n_seen"]
            assert d.stop(signal.SIGTERM) == 0
        finally:
            blaster.kill()
            blaster.wait()
        assert "Traceback" not in d.log()
        last = [line for line in d.log().splitlines() if "stopped" in line]
        assert last, d.log()
        restarted = daemon_factory([model])
        snap = restarted.status()["models"]["lidar"]
        # Nothing applied before the SIGTERM is lost: the final checkpoint holds at least it.
        assert snap["n_seen"] >= applied_before > 0
        assert restarted.stop() == 0


def test_sigkill_at_random_moments_restarts_from_an_intact_checkpoint(daemon_factory, tmp_path):
    path = tmp_path / "lidar.ckpt"
    model = dict(MODEL, components=4, checkpoint=str(path), checkpoint_every_s=0.01,
                 window_points=50_000)
    rng = np.random.default_rng(5)
    seen = 0
    for _trial in range(5):
        d = daemon_factory([model])
        start = d.status()["models"]["lidar"]["n_seen"]
        assert start >= seen  # never goes back past what a completed checkpoint held
        X = rng.normal(size=(2000, 3))
        for _ in range(20):
            d.send("points/lidar", X)
        d.wait_for(lambda s, n=start: s["models"]["lidar"]["checkpoints"] >= 1
                   and s["models"]["lidar"]["n_seen"] > n)
        time.sleep(float(rng.uniform(0.0, 0.2)))
        seen = d.status()["models"]["lidar"]["n_seen"] - 40_000  # a lower bound
        d.stop(signal.SIGKILL)
        assert not any(p.name.endswith(".corrupt") for p in tmp_path.iterdir())


STEADY = r"""
import sys, time, numpy as np, zmq
from streamgmm import codec
ctx = zmq.Context(); pub = ctx.socket(zmq.PUB); pub.connect(sys.argv[1])
time.sleep(0.5)
X = np.random.default_rng(int(sys.argv[3])).normal(size=(100, 3))
for seq in range(int(sys.argv[4])):
    pub.send_multipart([b"points/lidar", codec.encode_points(X, seq=seq, stamp=1.0,
                                                             source=sys.argv[2])])
    time.sleep(0.01)
ctx.destroy(linger=2000)
"""


def test_frozen_publisher_does_not_hold_up_the_others(daemon_factory):
    d = daemon_factory([dict(MODEL, components=2, publish_every_s=0.0)])
    endpoint = f"ipc://{d.directory}/ingest"
    frozen = subprocess.Popen([sys.executable, "-c", STEADY, endpoint, "frozen", "1", "300"])
    steady = subprocess.Popen([sys.executable, "-c", STEADY, endpoint, "steady", "2", "300"])
    try:
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] >= 5000)
        frozen.send_signal(signal.SIGSTOP)
        before = d.status()["models"]["lidar"]["n_seen"]
        time.sleep(1.0)
        during = d.status()["models"]["lidar"]["n_seen"]
        assert during - before >= 3000, "the other publisher was held up by a frozen one"
        frozen.send_signal(signal.SIGCONT)
        assert frozen.wait(30) == 0 and steady.wait(30) == 0
    finally:
        for proc in (frozen, steady):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 600 * 100)
    assert status["counters"]["messages_lost"] == 0
    assert d.stop() == 0
