"""CURVE on all three sockets: only allowed clients get anything in or out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from streamgmm import codec
from streamgmm.keys import CurveKeys, generate_keys
from tests.helpers.daemon import Daemon, write_config

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 2,
         "publish_every_s": 0.0, "refit_every_s": 0.0}
RUN = [sys.executable, "-m", "streamgmm", "run"]


@pytest.fixture
def keyring(tmp_path):
    keys = tmp_path / "keys"
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    server_pub, server_secret = generate_keys(keys, "server")
    _, robot_secret = generate_keys(keys, "robot")
    _, rogue_secret = generate_keys(keys, "rogue")
    (allowed / "robot.key").write_bytes((keys / "robot.key").read_bytes())
    return {
        "curve": {"server_secret_key": str(server_secret), "allowed_clients": str(allowed)},
        "robot": CurveKeys.from_files(server_pub, robot_secret),
        "rogue": CurveKeys.from_files(server_pub, rogue_secret),
        "wrong_server": CurveKeys.from_files(keys / "rogue.key", robot_secret),
        "allowed": allowed,
    }


@pytest.fixture
def secure_daemon(tmp_path, keyring):
    d = Daemon(write_config(tmp_path, [MODEL], {"curve": keyring["curve"]}), curve=keyring["robot"])
    yield d
    d.close()


def _client(ctx, kind, endpoint, keys):
    sock = ctx.socket(kind)
    sock.linger = 0
    if keys is not None:
        keys.apply(sock)
    sock.connect(endpoint)
    return sock


def _points(n=100, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3))


def test_generated_secret_keys_are_private(keyring, tmp_path):
    mode = os.stat(keyring["curve"]["server_secret_key"]).st_mode & 0o777
    assert mode == 0o600


def test_allowed_client_works(secure_daemon):
    d = secure_daemon
    d.send("points/lidar", _points())
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 100)
    assert status["counters"]["messages_applied"] == 1
    assert [u["seq"] for u in d.updates()] == [1]


@pytest.mark.parametrize("who", ["plain", "rogue", "wrong_server"])
def test_other_peers_get_nothing_in_or_out(secure_daemon, keyring, who):
    d = secure_daemon
    keys = None if who == "plain" else keyring[who]
    ctx = zmq.Context()
    try:
        pub = _client(ctx, zmq.PUB, f"ipc://{d.directory}/ingest", keys)
        sub = _client(ctx, zmq.SUB, f"ipc://{d.directory}/publish", keys)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        req = _client(ctx, zmq.REQ, f"ipc://{d.directory}/control", keys)
        time.sleep(0.5)
        for i in range(20):
            pub.send_multipart([b"points/lidar",
                                codec.encode_points(_points(seed=i), seq=i, stamp=1.0)])
        try:  # a refused peer leaves REQ without a pipe: its send would block, not fail
            req.send(codec.encode_request("status"), zmq.NOBLOCK)
        except zmq.Again:
            pass
        # The allowed client publishes too: the intruder must not see the update.
        d.send("points/lidar", _points(7))
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 7)
        assert not sub.poll(500), "an unauthenticated subscriber received an update"
        assert not req.poll(200), "an unauthenticated client got a control reply"
        status = d.status()
        assert status["counters"]["messages_received"] == 1
        assert status["models"]["lidar"]["n_seen"] == 7
    finally:
        ctx.destroy(linger=0)


def test_revoked_client_is_refused_after_sighup(secure_daemon, keyring):
    d = secure_daemon
    (keyring["allowed"] / "robot.key").unlink()
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while b"reloaded allowed clients" not in d.log_path.read_bytes():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    ctx = zmq.Context()
    try:
        req = _client(ctx, zmq.REQ, f"ipc://{d.directory}/control", keyring["robot"])
        time.sleep(0.3)
        try:
            req.send(codec.encode_request("status"), zmq.NOBLOCK)
        except zmq.Again:
            pass  # no connection at all: refused, as it should be
        assert not req.poll(1000), "a revoked client got a reply"
    finally:
        ctx.destroy(linger=0)


def test_world_readable_secret_key_refuses_to_start(tmp_path, keyring):
    os.chmod(keyring["curve"]["server_secret_key"], 0o644)
    path = write_config(tmp_path, [MODEL], {"curve": keyring["curve"]})
    proc = subprocess.run([*RUN, str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "service.curve.server_secret_key" in proc.stderr
    assert "chmod 600" in proc.stderr
