"""``streamgmm publish`` asks the daemon which model listens on its topic before it sends
(issue 13, items 1 and 2): points of the wrong dimension and topics no model subscribes to
are refused before anything is sent; topics match by prefix; without a control answer the
points go out unchecked. Real daemons on ipc:// endpoints in a temp dir (``daemon_factory``),
fake collectors on random loopback ports.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamgmm import codec
from streamgmm.cli import main
from tests.helpers.daemon import Daemon
from tests.helpers.data import MODEL, blobs
from tests.helpers.fakes import SubCollector


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def publish_argv(d: Daemon, *more: str) -> list[str]:
    return ["publish", "--endpoint", f"ipc://{d.directory}/ingest",
            "--control", f"ipc://{d.directory}/control", *more]


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



def test_publish_at_full_speed_waits_for_the_daemon_and_loses_nothing(daemon_factory,
                                                                       capsys) -> None:
    """As fast as possible, 2,000 messages against queues of a few: the publisher waits
    while the daemon's queue is full (lossless by default at full speed) and the daemon
    reads ahead into its backlog, so every message is applied whatever the machine's load."""
    d = daemon_factory(service={"sockets": {"rcvhwm": 4}})
    argv = publish_argv(d, "--synthetic", "lidar", "--count", "96000", "--batch", "48",
                        "--confirm-timeout", "60")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sent 2000, applied 2000, rejected 0, lost 0 (96000 points applied)" in out
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 96000, timeout=60.0)
    assert status["counters"]["messages_lost"] == 0


def test_still_absorbing_sums_the_backlogs_of_the_models_on_the_topic(fake_control) -> None:
    """After a replay at full speed the daemon may hold much of it read but not absorbed:
    `publish` says how much (models on a prefix of the topic), and how long at their
    measured cost; nothing when no status answers."""
    from streamgmm.replay import still_absorbing

    models = {
        "lidar": {"topic": "points/lidar", "backlog_points": 30_000, "seconds_per_point": 1e-4},
        "all": {"topic": "points/", "backlog_points": 5_000, "seconds_per_point": 2e-4},
        "imu": {"topic": "points/imu", "backlog_points": 900, "seconds_per_point": 1e-3},
        "idle": {"topic": "points/lidar", "backlog_points": 0, "seconds_per_point": 1e-4},
    }
    server = fake_control(lambda request: [{"ok": True, "models": models}])
    points, seconds = still_absorbing(server.endpoint, None, "points/lidar")
    assert points == 35_000 and seconds == pytest.approx(3.0)
    assert still_absorbing(server.endpoint, None, "other/topic") == (0, 0.0)
    silent = fake_control(lambda request: [])
    assert still_absorbing(silent.endpoint, None, "points/lidar") == (0, 0.0)


def test_a_replay_at_full_speed_gives_the_model_of_its_messages(daemon_factory, tmp_path,
                                                                capsys) -> None:
    """A file without sensor time sent as fast as possible, to a model that publishes on
    a timer, on a loaded machine: publish stamps it by its schedule (all at the start), the
    daemon folds the messages into steps of 4,096 rows by that rule alone, and the model is
    partial_fit's on those steps, bit for bit (not a function of how the loop met them)."""
    from streamgmm.daemon.config import load_config
    from streamgmm.daemon.model import ModelRuntime
    from streamgmm.daemon.steps import group_steps
    from streamgmm.synthetic import lidar_scene
    from tests.daemon.test_parity import cpu_hogs

    X = lidar_scene(24_000, seed=3).astype(np.float32)
    np.save(tmp_path / "scan.npy", X)
    d = daemon_factory([dict(MODEL, components=6, publish_every_s=0.1, seed=4)])
    with cpu_hogs(1):
        assert main(publish_argv(d, "--file", str(tmp_path / "scan.npy"), "--batch", "250",
                                 "--confirm-timeout", "60")) == 0
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=60.0)
    assert "applied 96, rejected 0, lost 0" in capsys.readouterr().out
    snap = d.request(op="snapshot", model="lidar")
    batches = [X[i : i + 250].astype(np.float64) for i in range(0, len(X), 250)]
    library = ModelRuntime(load_config(d.config_path).models[0]).estimator
    for step in group_steps(batches, [0.0] * len(batches), limit=4096, seconds=0.1):
        library.partial_fit(step)
    np.testing.assert_array_equal(snap["means"], library.means_)
    np.testing.assert_array_equal(snap["covariances"], library.covariances_)
