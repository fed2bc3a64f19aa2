"""Tests of the ``streamgmm`` command line, against fake daemons from ``tests/helpers/fakes.py``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

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

COMMANDS = ["run", "publish", "watch", "status", "snapshot", "refit", "fit", "keygen"]


@pytest.fixture
def servers(ctx: zmq.Context) -> Iterator[list]:
    """Closes the fake servers (FakeControl, SubCollector) a test appends."""
    made: list = []
    yield made
    for server in made:
        server.close()


def blobs(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 0.5, (n // 2, 2)), rng.normal(5, 0.5, (n - n // 2, 2))])


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# ---------------------------------------------------------------------------------------------
# help and argument errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_everywhere(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: streamgmm {' '.join(command)}".rstrip())


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("streamgmm ")


@pytest.mark.parametrize(
    "argv, says",
    [
        ([], "required"),
        (["bogus"], "invalid choice"),
        (["publish"], "--file"),
        (["publish", "--file", "{tmp}/x.npy", "--synthetic", "lidar"], "not allowed"),
        (["publish", "--synthetic", "lidar", "--batch", "0"], "--batch"),
        (["publish", "--synthetic", "lidar", "--rate", "nan"], "--rate"),
        (["publish", "--synthetic", "lidar", "--dim", "2"], "3-D"),
        (["publish", "--file", "{tmp}/missing.npy"], "cannot read"),
        (["publish", "--file", "{tmp}/pts.npy", "--dim", "3"], "not --dim 3"),
        (["fit", "{tmp}/pts.npy"], "--components"),
        (["fit", "{tmp}/missing.npy", "-k", "2"], "cannot read"),
        (["fit", "{tmp}/words.csv", "-k", "2"], "line 2: 'a' is not a number"),
        (["fit", "{tmp}/pts.txt", "-k", "2"], ".npy or .csv"),
        (["fit", "{tmp}/pts.npy", "-k", "500"], "cannot fit"),
        (["fit", "{tmp}/pts.npy", "-k", "2", "--covariance-type", "round"], "invalid choice"),
        (["watch"], "--model"),
        (["status", "--timeout", "-1"], "--timeout"),
        (["status", "--control", "bogus://x"], "status from bogus://x"),
        (["status", "--control", "tcp://127.0.0.1:1", "--timeout", "0.2"], "no reply"),
        (["refit", "--control", "tcp://127.0.0.1:1"], "--model"),
        (["status", "--server-key", "{tmp}/s.key"], "give both"),
        (["status", "--server-key", "{tmp}/s.key", "--client-key", "{tmp}/c.key"], "key file"),
        (["keygen", "{tmp}"], "NAME"),
        (["run", "{tmp}/c.toml", "--log-level", "verbose"], "--log-level must be one of"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, says, tmp_path, capsys) -> None:
    np.save(tmp_path / "pts.npy", blobs(100))
    (tmp_path / "pts.txt").write_text("1 2\n")
    (tmp_path / "words.csv").write_text("x,y\n1,a\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("streamgmm")
    assert says in line


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", "npy32", "csv", "csv-header", "csv-spaces"])
def test_fit_writes_model(fmt: str, tmp_path: Path, capsys) -> None:
    X = blobs()
    path = tmp_path / f"points.{fmt[:3]}"
    if fmt == "npy":
        np.save(path, X)
    elif fmt == "npy32":
        np.save(path, X.astype(np.float32))
    elif fmt == "csv":
        np.savetxt(path, X, delimiter=",")
    elif fmt == "csv-header":
        np.savetxt(path, X, delimiter=",", header="x,y", comments="")
    else:
        np.savetxt(path, X)
    out = tmp_path / "model.npz"
    code = main(["fit", str(path), "--components", "2", "--seed", "1", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "converged: True" in text and "BIC:" in text and f"wrote {out}" in text
    with np.load(out) as model:
        assert set(model.files) == {"weights", "means", "covariances", "covariance_type",
                                    "n_points"}
        assert int(model["n_points"]) == len(X)
        assert str(model["covariance_type"]) == "full"
        assert model["covariances"].shape == (2, 2, 2)
        np.testing.assert_allclose(np.sort(model["weights"]), [0.5, 0.5], atol=1e-6)
        np.testing.assert_allclose(np.sort(model["means"][:, 0]), [0.0, 5.0], atol=0.2)


def test_fit_diag_drops_nonfinite_rows(tmp_path: Path, capsys) -> None:
    X = blobs()
    X[3, 1] = np.nan
    np.save(tmp_path / "p.npy", X)
    assert main(["fit", str(tmp_path / "p.npy"), "-k", "2", "--covariance-type", "diag"]) == 0
    captured = capsys.readouterr()
    assert "dropped 1 rows" in captured.err
    assert "to 299 points" in captured.out


# ---------------------------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------------------------


def test_publish_file_with_count(ctx, servers, tmp_path: Path, capsys) -> None:
    collector = SubCollector(ctx, b"points/")
    servers.append(collector)
    X = blobs(40)
    np.save(tmp_path / "x.npy", X)
    argv = [
        "publish", "--endpoint", collector.endpoint, "--topic", "points/test",
        "--file", str(tmp_path / "x.npy"), "--batch", "10", "--count", "25",
        "--wait-subscriber", "5", "--source", "cli-test", "--no-confirm",
    ]
    assert main(argv) == 0
    assert "sent 3 messages, 25 points" in capsys.readouterr().out
    messages = collector.wait_for(3)
    time.sleep(0.05)
    assert len(collector.messages) == 3
    decoded = [codec.decode_points(frames[1]) for frames in messages]
    assert all(frames[0] == b"points/test" for frames in messages)
    assert [m.seq for m in decoded] == [0, 1, 2]
    assert {m.source for m in decoded} == {"cli-test"}
    np.testing.assert_array_equal(np.vstack([m.points for m in decoded]), X[:25])


def test_publish_csv_loop_until_count(ctx, servers, tmp_path: Path, capsys) -> None:
    collector = SubCollector(ctx, b"")
    servers.append(collector)
    X = blobs(6)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b", comments="")
    argv = [
        "publish", "--endpoint", collector.endpoint, "--file", str(tmp_path / "x.csv"),
        "--batch", "4", "--count", "14", "--loop", "--no-confirm",
    ]
    assert main(argv) == 0
    messages = collector.wait_for(5)
    sizes = [codec.decode_points(f[1]).points.shape[0] for f in messages]
    assert sizes == [4, 2, 4, 2, 2]  # the file is 6 rows long; the last batch is cut at 14
    assert "sent 5 messages, 14 points" in capsys.readouterr().out


@pytest.mark.parametrize("kind, dim", [("moving", 2), ("lidar", 3)])
def test_publish_synthetic_at_a_rate(kind, dim, ctx, servers, capsys) -> None:
    collector = SubCollector(ctx, b"points/")
    servers.append(collector)
    argv = [
        "publish", "--endpoint", collector.endpoint, "--synthetic", kind, "--dim", str(dim),
        "--batch", "50", "--count", "150", "--rate", "1000", "--no-confirm",
    ]
    start = time.perf_counter()
    assert main(argv) == 0
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.14  # 150 points at 1000 points/s, each batch in its time slot
    out = capsys.readouterr().out
    assert "sent 3 messages, 150 points" in out
    messages = collector.wait_for(3)
    shapes = [codec.decode_points(f[1]).points.shape for f in messages]
    assert shapes == [(50, dim)] * 3


# ---------------------------------------------------------------------------------------------
# control commands
# ---------------------------------------------------------------------------------------------

STATUS = {
    "ok": True,
    "uptime_s": 12.5,
    "models": {MODEL: {"n_seen": 1000, "seq": 4, "dim": 2, "components": 2}},
    "counters": {"messages_received": 9, "rejected": {"schema": 1, "empty": 2}},
}


def control_handler(request: dict) -> list:
    rid = {"id": request["id"]}
    if request["op"] == "status":
        return [STATUS | rid]
    if request["op"] == "snapshot":
        if request.get("model", MODEL) != MODEL:
            return [codec.error_reply(f"no model named {request['model']!r}", "unknown_model")
                    | rid]
        return [update_payload(4, kind="snapshot", ok=True, **rid)]
    if request["op"] == "refit":
        return [{"ok": True, "seq": 5} | rid]
    return [codec.error_reply("unknown op", "unknown_op") | rid]


@pytest.fixture
def control(ctx, servers) -> FakeControl:
    server = FakeControl(ctx, control_handler)
    servers.append(server)
    return server


def test_status(control, capsys) -> None:
    assert main(["status", "--control", control.endpoint]) == 0
    out = capsys.readouterr().out
    assert "up 12.5 s" in out
    assert "lidar  n_seen 1000  seq 4  dim 2  components 2" in out
    assert "rejected: schema 1, empty 2" in out
    assert main(["status", "--control", control.endpoint, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"v": 1, **STATUS}


def test_snapshot(control, capsys) -> None:
    assert main(["snapshot", "--control", control.endpoint, "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert "model lidar  seq 4  n_seen 400  K 2  d 2  covariance full" in out
    assert main(["snapshot", "--control", control.endpoint, "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert (snap["seq"], snap["kind"], snap["means"]) == (4, "snapshot", [[0, 0], [3, 7]])
    assert main(["snapshot", "--control", control.endpoint, "--model", "nope"]) == 2
    (line,) = error_lines(capsys)
    assert "no model named 'nope'" in line


def test_refit(control, capsys) -> None:
    assert main(["refit", "--control", control.endpoint, "--model", MODEL]) == 0
    assert "refit of lidar published as seq 5" in capsys.readouterr().out
    assert control.requests[-1]["model"] == MODEL


def test_keygen_and_curve_options(ctx, servers, tmp_path: Path, capsys) -> None:
    if not zmq.has("curve"):
        pytest.skip("libzmq without CURVE")
    keys = tmp_path / "keys"
    assert main(["keygen", str(keys), "server"]) == 0
    assert main(["keygen", str(keys), "robot"]) == 0
    assert "robot.key_secret" in capsys.readouterr().out
    assert (keys / "robot.key_secret").stat().st_mode & 0o777 == 0o600
    assert main(["keygen", str(keys), "robot"]) == 2  # never overwrites
    (line,) = error_lines(capsys)
    assert "exists" in line

    _, server_secret = zmq.auth.load_certificate(str(keys / "server.key_secret"))
    server = FakeControl(ctx, control_handler, curve_secret=server_secret)
    servers.append(server)
    argv = [
        "status", "--control", server.endpoint, "--server-key", str(keys / "server.key"),
        "--client-key", str(keys / "robot.key_secret"), "--json",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["uptime_s"] == 12.5
    # The wrong server key: the handshake never completes, the request times out.
    argv[argv.index("--server-key") + 1] = str(keys / "robot.key")
    assert main([*argv, "--timeout", "0.3"]) == 2
    assert "no reply" in error_lines(capsys)[0]


def test_run_calls_the_daemon(monkeypatch, tmp_path) -> None:
    import streamgmm.daemon.service

    calls = []

    def fake_run_daemon(path, log_level=None):
        calls.append((path, log_level))
        return 0

    monkeypatch.setattr(streamgmm.daemon.service, "run_daemon", fake_run_daemon)
    config = str(tmp_path / "c.toml")
    assert main(["run", config, "--log-level", "debug"]) == 0
    assert main(["run", config]) == 0
    assert calls == [(config, "debug"), (config, None)]


# ---------------------------------------------------------------------------------------------
# watch
# ---------------------------------------------------------------------------------------------


def test_watch_prints_updates_and_plots(ctx, control, tmp_path: Path, capsys) -> None:
    pub, endpoint = bound_socket(ctx, zmq.XPUB)

    def publish() -> None:
        wait_subscribed(pub, TOPIC)
        pub.send_multipart([TOPIC, update_payload(5)])

    thread = threading.Thread(target=publish)
    thread.start()
    png = tmp_path / "mixture.png"
    try:
        argv = [
            "watch", "--endpoint", endpoint, "--control", control.endpoint, "--model", MODEL,
            "--count", "2", "--timeout", "10", "--plot", str(png),
        ]
        assert main(argv) == 0
    finally:
        thread.join(10.0)
        pub.close(linger=0)
    lines = capsys.readouterr().out.splitlines()
    assert "seq      4  snapshot" in lines[0]
    assert "seq      5  online" in lines[1] and "K 2" in lines[1]
    assert lines[2] == f"wrote {png}"
    assert png.stat().st_size > 1000


def test_watch_times_out_with_exit_1(ctx, servers, capsys) -> None:
    server = FakeControl(ctx, snapshot_handler({"seq": None}))
    servers.append(server)
    start = time.monotonic()
    argv = [
        "watch", "--endpoint", "tcp://127.0.0.1:1", "--control", server.endpoint,
        "--model", MODEL, "--timeout", "0.3",
    ]
    assert main(argv) == 1
    assert time.monotonic() - start < 2.0
    (line,) = error_lines(capsys)
    assert "no mixture of model 'lidar'" in line and "no parameters yet" in line


def test_fit_refuses_an_unwritable_out_before_fitting(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(200, 2)))
    for out, why in [(tmp_path / "no" / "x.npz", "no directory"), (tmp_path, "is a directory")]:
        assert main(["fit", str(tmp_path / "p.npy"), "-k", "2", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert why in captured.err and captured.err.count("\n") == 1
        assert "fitted" not in captured.out  # refused before the fit, not after it


def test_watch_refuses_an_unwritable_output_before_connecting(tmp_path, capsys):
    for option in ("--rerun-save", "--foxglove-save"):
        code = main(["watch", "--model", "lidar", "--endpoint", f"ipc://{tmp_path}/none", option,
                     str(tmp_path / "no" / "out.file"), "--timeout", "0.2"])
        assert code == 2
        err = capsys.readouterr().err
        assert option in err and "no directory" in err and err.count("\n") == 1, err


def test_several_npy_files_fit_like_one_file_of_their_rows(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(300, 3)) + 5, np.zeros((20, 3))])  # 20 no-return rows
    np.save(tmp_path / "a.npy", X[:160])
    np.save(tmp_path / "b.npy", X[160:])
    np.save(tmp_path / "all.npy", X)
    assert main(["fit", str(tmp_path / "all.npy"), "-k", "2", "--seed", "1"]) == 0
    one = capsys.readouterr()
    assert main(["fit", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-k", "2",
                 "--seed", "1"]) == 0
    two = capsys.readouterr()
    assert "to 300 points" in one.out and one.out == two.out  # zeros dropped in both
    assert "20" in two.err


def test_fit_prints_means_to_the_digits_their_magnitude_needs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    utm = np.array([500010.0, 4500012.0]) + rng.normal(scale=0.5, size=(400, 2))
    np.save(tmp_path / "utm.npy", utm)
    assert main(["fit", str(tmp_path / "utm.npy"), "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "5000" in out and "45000" in out and "e+0" not in out, out
