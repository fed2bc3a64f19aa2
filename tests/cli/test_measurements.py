"""``streamgmm publish`` and ``fit`` with real recordings' quirks: no-return rows and range
limits counted, damaged bags read up to the damage, IMU bags, and a publish that reports what
the daemon applied (exit 0 only when everything was)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from streamgmm.cli import main
from tests.formats.bags import imu_samples, write_mcap, write_mcap_imu, write_rosbags
from tests.formats.test_measurements import RULE, expected, scan

LIDAR = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 2,
         "publish_every_s": 0.0, "refit_every_s": 0.0}
IMU = {"name": "imu", "topic": "points/imu", "dim": 6, "components": 2,
       "publish_every_s": 0.0, "refit_every_s": 0.0}


def ends(d) -> list[str]:
    return ["--endpoint", f"ipc://{d.directory}/ingest", "--control",
            f"ipc://{d.directory}/control", "--wait-subscriber", "10"]


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_publish_counts_zeros_nan_and_range_and_the_daemon_applies_the_rest(
        daemon_factory, tmp_path: Path, capsys) -> None:
    d = daemon_factory([LIDAR])
    data = scan()
    data.tofile(tmp_path / "000000.bin")
    want = expected(data)
    kept = len(want["kept"])
    assert main(["publish", "--file", str(tmp_path / "000000.bin"), "--min-range", "1",
                 "--max-range", "50", "--batch", "100", *ends(d)]) == 0
    out = capsys.readouterr().out
    assert (f"dropped {want['zeros']} zero rows (no return), {want['nonfinite']} rows with "
            f"NaN/Inf, {want['out_of_range']} rows out of range") in out
    messages = -(-kept // 100)
    assert f"sent {messages}, applied {messages}, rejected 0, lost 0 ({kept} points" in out
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == kept)
    assert status["counters"]["points_applied"] == kept


def test_keep_zeros_sends_them(daemon_factory, tmp_path: Path, capsys) -> None:
    d = daemon_factory([LIDAR])
    data = scan(nan=False)
    np.save(tmp_path / "s.npy", data[:, :3])
    assert main(["publish", "--file", str(tmp_path / "s.npy"), "--keep-zeros", *ends(d)]) == 0
    assert "zero rows" not in capsys.readouterr().out
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(data))


def test_damaged_mcap_publishes_what_precedes_the_damage(daemon_factory, tmp_path: Path,
                                                         capsys) -> None:
    d = daemon_factory([LIDAR])
    rng = np.random.default_rng(2)
    clouds = [rng.normal(size=(500, 3)).astype(np.float32) + 3 for _ in range(5)]
    write_mcap(tmp_path / "run.mcap", clouds, stamps=[1.0, 1.1, 1.2, 1.3, 1.4], chunk_size=1024)
    data = (tmp_path / "run.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data[: int(len(data) * 0.7)])
    assert main(["publish", "--file", str(tmp_path / "cut.mcap"), "--speed", "0",
                 *ends(d)]) == 0
    captured = capsys.readouterr()
    (warning,) = [line for line in captured.err.splitlines() if "damaged" in line]
    assert warning.startswith("streamgmm publish: warning: ")
    assert "cut.mcap: damaged after byte" in warning
    read = int(warning.split("; read ")[1].split(" messages")[0])
    assert 1 <= read < 5
    assert f"sent {read}, applied {read}, rejected 0, lost 0" in captured.out
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 500 * read)
    (tmp_path / "head.mcap").write_bytes(data[:200])  # not even a channel: nothing read
    assert main(["publish", "--file", str(tmp_path / "head.mcap"), *ends(d)]) == 2
    line = one_error_line(capsys)
    assert "head.mcap" in line and "nothing could be read" in line


def test_imu_bag_goes_to_a_6d_model_in_groups(daemon_factory, tmp_path: Path, capsys) -> None:
    d = daemon_factory([LIDAR, IMU])
    samples = imu_samples(250)
    write_mcap_imu(tmp_path / "imu.mcap", samples, stamps=[5.0 + i * 0.005 for i in range(250)])
    assert main(["publish", "--file", str(tmp_path / "imu.mcap"), "--ros-topic", "/imu/data",
                 "--topic", "points/imu", "--speed", "0", *ends(d)]) == 0
    out = capsys.readouterr().out
    assert "sent 3 messages, 250 points" in out  # 100 samples a message
    assert "sent 3, applied 3, rejected 0, lost 0" in out
    d.wait_for(lambda s: s["models"]["imu"]["n_seen"] == 250)
    # the old refusal, now a choice of the wrong model: one line, nothing sent
    assert main(["publish", "--file", str(tmp_path / "imu.mcap"), "--ros-topic", "/imu/data",
                 *ends(d)]) == 2
    assert "6-D points" in one_error_line(capsys)


def test_publish_to_nobody_is_not_a_success(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)))
    argv = ["publish", "--file", str(tmp_path / "x.npy"), "--endpoint",
            f"ipc://{tmp_path}/ingest", "--control", f"ipc://{tmp_path}/control",
            "--wait-subscriber", "0", "--confirm-timeout", "0.5"]
    start = time.monotonic()
    assert main(argv) == 3
    assert time.monotonic() - start < 8
    captured = capsys.readouterr()
    assert "sent 1 messages, 50 points" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith(
        "streamgmm publish: error: no daemon answered")
    # without a known control endpoint nothing can be confirmed either
    argv = ["publish", "--file", str(tmp_path / "x.npy"), "--endpoint",
            f"ipc://{tmp_path}/ingest", "--wait-subscriber", "0"]
    assert main(argv) == 3
    assert "delivery not confirmed" in capsys.readouterr().err
    assert main([*argv, "--no-confirm"]) == 0


def test_publish_to_a_stalled_daemon_is_not_a_success(daemon_factory, tmp_path: Path,
                                                      capsys) -> None:
    d = daemon_factory([LIDAR])
    data = scan(nan=False)
    data.tofile(tmp_path / "a.bin")
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        assert main(["publish", "--file", str(tmp_path / "a.bin"), *ends(d),
                     "--wait-subscriber", "0.5", "--confirm-timeout", "1"]) == 3
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert "no daemon answered" in capsys.readouterr().err
    # A stopped daemon never subscribed this publisher: ZeroMQ dropped what was sent, which
    # is why publish said so instead of "sent ..." and exit 0.
    assert d.status()["counters"]["messages_received"] == 0


def test_publish_whose_messages_the_daemon_rejects_exits_1(daemon_factory, tmp_path: Path,
                                                           capsys) -> None:
    d = daemon_factory([LIDAR])
    np.save(tmp_path / "flat.npy", np.random.default_rng(0).normal(size=(30, 2)))
    assert main(["publish", "--file", str(tmp_path / "flat.npy"), "--no-check",
                 *ends(d)]) == 1
    captured = capsys.readouterr()
    assert "sent 1, applied 0, rejected 1, lost 0" in captured.out
    assert "not every message was applied: 1 rejected" in captured.err


@pytest.mark.parametrize("argv, says", [
    (["publish", "--synthetic", "lidar", "--endpoint", "tcp://127.0.0.1:55555555"],
     "port must be a number from 1 to 65535"),
    (["status", "--control", "tcp://127.0.0.1:0"], "port must be a number"),
    (["publish", "--synthetic", "lidar", "--min-range", "-1"], "--min-range"),
    (["publish", "--file", "x.bin", "--min-range", "5", "--max-range", "2"],
     "--min-range 5.0 is above --max-range 2.0"),
])
def test_bad_numbers_are_one_line(argv, says, capsys, tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(np.ones((4, 4), dtype=np.float32).tobytes())
    argv = [str(tmp_path / a) if a == "x.bin" else a for a in argv]
    assert main(argv) == 2
    assert says in one_error_line(capsys)


def test_status_to_nobody_fails_within_its_timeout(tmp_path: Path, capsys) -> None:
    start = time.monotonic()
    assert main(["status", "--control", f"ipc://{tmp_path}/nobody", "--timeout", "0.5"]) == 2
    assert time.monotonic() - start < 2.0
    assert "no reply" in one_error_line(capsys)
    from streamgmm.cli import build_parser

    assert build_parser().parse_args(["status"]).timeout == 2.0


# --------------------------------------------------------------------------- fit


def test_fit_reads_what_publish_reads(tmp_path: Path, capsys) -> None:
    data = scan(seed=5)
    clouds = [data[i : i + 100, :3] for i in range(0, 400, 100)]
    write_rosbags(tmp_path / "bag2", clouds, stamps=[1.0, 1.1, 1.2, 1.3])
    kept = len(expected(data, RULE)["kept"])
    common = ["-k", "2", "--min-range", "1", "--max-range", "50"]
    assert main(["fit", str(tmp_path / "bag2"), *common]) == 0  # a rosbag2 directory
    captured = capsys.readouterr()
    assert f"to {kept} points, d=3" in captured.out
    assert "zero rows (no return)" in captured.err
    data[:200].tofile(tmp_path / "000000.bin")
    data[200:].tofile(tmp_path / "000001.bin")
    assert main(["fit", str(tmp_path / "000000.bin"), str(tmp_path / "000001.bin"),
                 *common]) == 0  # two KITTI scans
    assert f"to {kept} points, d=3" in capsys.readouterr().out
    write_mcap_imu(tmp_path / "imu.mcap", imu_samples(60), stamps=[1 + i / 100 for i in range(60)])
    assert main(["fit", str(tmp_path / "imu.mcap"), "-k", "2", "--ros-topic", "/imu/data",
                 "--fields", "angular_velocity"]) == 0
    assert "to 60 points, d=3" in capsys.readouterr().out


def test_fit_csv_leaves_the_time_column_out(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    rows = np.c_[np.arange(40) * 0.01, rng.normal(size=(40, 3))]
    np.savetxt(tmp_path / "xio.csv", rows, delimiter=",", comments="",
               header="Time (s),Gyroscope X (deg/s),Gyroscope Y (deg/s),Gyroscope Z (deg/s)")
    assert main(["fit", str(tmp_path / "xio.csv"), "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "to 40 points, d=3" in captured.out
    assert "left out column 'Time (s)'" in captured.err


def test_fit_a_bag_on_a_local_dask_cluster(tmp_path: Path, capsys) -> None:
    pytest.importorskip("distributed")
    rng = np.random.default_rng(1)
    clouds = [rng.normal(size=(300, 3)).astype(np.float32) + 4 for _ in range(4)]
    clouds[0][:20] = 0.0  # no returns
    write_mcap(tmp_path / "run.mcap", clouds, stamps=[1.0, 1.1, 1.2, 1.3])
    assert main(["fit", str(tmp_path / "run.mcap"), "-k", "2", "--workers", "1",
                 "--max-iter", "5"]) == 0
    captured = capsys.readouterr()
    assert "to 1180 points in 1 chunks, d=3, on 1 workers" in captured.out
    assert "dropped 20 zero rows" in captured.err
