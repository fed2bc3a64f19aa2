"""``streamgmm publish --file`` with bags and point clouds: one-line errors, stamps and frames
on the wire, recorded-time pacing, and a real daemon that sees exactly the non-NaN points."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamgmm import codec
from streamgmm.cli import main
from tests.formats.bags import write_mcap
from tests.formats.test_files import _bad_files
from tests.helpers.fakes import SubCollector

STAMPS = [50.0, 50.1, 50.2, 50.3]


def organised(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(STAMPS)):
        points = rng.normal(size=(40, 3)).astype(np.float32)
        points[rng.choice(40, size=i + 1, replace=False)] = np.nan  # 1 + 2 + 3 + 4 NaN rows
        out.append(points)
    return out


def test_bad_files_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    write_mcap(tmp_path / "run.mcap", organised(), stamps=STAMPS)
    cases = _bad_files(tmp_path)
    cases["run.mcap --ros-topic /chatter"] = "not sensor_msgs/PointCloud2"
    cases["run.mcap --fields x,q"] = "no field 'q'"
    cases["missing.pcd"] = "cannot read"
    for name, says in cases.items():
        file, *extra = name.split()
        argv = ["publish", "--endpoint", "tcp://127.0.0.1:1", "--file", str(tmp_path / file),
                *extra]
        assert main(argv) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("streamgmm publish: error: "), lines
        assert says in lines[0], (name, lines[0])


def test_mcap_stamps_frames_and_recorded_pace(ctx, tmp_path: Path, capsys) -> None:
    sent = organised()
    write_mcap(tmp_path / "run.mcap", sent, stamps=STAMPS, frame="os_sensor")
    collector = SubCollector(ctx, b"points/")
    try:
        argv = ["publish", "--endpoint", collector.endpoint, "--file",
                str(tmp_path / "run.mcap"), "--ros-topic", "/points", "--wait-subscriber", "5",
                "--no-confirm"]
        start = time.perf_counter()
        assert main(argv) == 0
        elapsed = time.perf_counter() - start
        assert "sent 4 messages, 150 points" in capsys.readouterr().out
        messages = collector.wait_for(4)
    finally:
        collector.close()
    assert elapsed >= 0.3  # 4 clouds recorded 0.1 s apart, replayed at --speed 1
    decoded = [codec.decode_points(frames[1]) for frames in messages]
    assert [m.stamp for m in decoded] == pytest.approx(STAMPS, abs=1e-6)
    assert {m.frame for m in decoded} == {"os_sensor"}
    for m, points in zip(decoded, sent):
        np.testing.assert_array_equal(m.points, points[np.isfinite(points).all(axis=1)])


def test_summary_counts_dropped_rows_and_batches_split(ctx, tmp_path: Path, capsys) -> None:
    write_mcap(tmp_path / "run.mcap", organised(), stamps=STAMPS)
    collector = SubCollector(ctx, b"")
    try:
        argv = ["publish", "--endpoint", collector.endpoint, "--file",
                str(tmp_path / "run.mcap"), "--speed", "0", "--batch", "16",
                "--wait-subscriber", "5", "--no-confirm"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        messages = collector.wait_for(12)
    finally:
        collector.close()
    # clouds of 39, 38, 37, 36 points in slices of 16: 3 messages each
    assert "sent 12 messages, 150 points" in out and "dropped 10 rows with NaN/Inf" in out
    sizes = [codec.decode_points(f[1]).points.shape[0] for f in messages]
    assert sizes == [16, 16, 7, 16, 16, 6, 16, 16, 5, 16, 16, 4]


def test_daemon_receives_exactly_the_finite_points(daemon_factory, tmp_path: Path,
                                                   capsys) -> None:
    from pypcd4 import Encoding, PointCloud

    d = daemon_factory()
    sent = organised(3)
    write_mcap(tmp_path / "run.mcap", sent, stamps=STAMPS)
    scan = np.random.default_rng(9).normal(size=(300, 4)).astype(np.float32)
    scan[::7, 0] = np.nan  # 43 rows
    PointCloud.from_xyzi_points(scan).save(tmp_path / "scan.pcd",
                                           encoding=Encoding.BINARY_COMPRESSED)
    endpoint = f"ipc://{d.directory}/ingest"
    common = ["--endpoint", endpoint, "--control", f"ipc://{d.directory}/control",
              "--topic", "points/lidar", "--wait-subscriber", "10"]
    assert main(["publish", "--file", str(tmp_path / "run.mcap"), "--speed", "0",
                 *common]) == 0
    assert main(["publish", "--file", str(tmp_path / "scan.pcd"), "--batch", "100",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "dropped 10 rows with NaN/Inf" in out and "dropped 43 rows with NaN/Inf" in out
    # each publish asked the daemon what arrived: everything, before it exited 0
    assert "sent 4, applied 4, rejected 0, lost 0 (150 points applied)" in out
    assert "sent 3, applied 3, rejected 0, lost 0 (257 points applied)" in out
    expected = 150 + 300 - 43
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] >= expected, timeout=20)
    assert status["models"]["lidar"]["n_seen"] == expected
    assert status["counters"]["rows_dropped_nonfinite"] == 0  # none reached the daemon
    snapshot = d.request(op="snapshot", model="lidar")
    assert snapshot["n_seen"] == expected


@pytest.mark.parametrize("module, file, extra", [("pypcd4", "a.pcd", "pointclouds"),
                                                 ("mcap_ros2.decoder", "a.mcap", "ros"),
                                                 ("rosbags.highlevel", "a.bag", "ros")])
def test_missing_extra_names_it(monkeypatch, tmp_path: Path, capsys, module, file,
                                extra) -> None:
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    (tmp_path / file).write_bytes(b"x")
    assert main(["publish", "--file", str(tmp_path / file)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"pip install 'streamgmm[{extra}]'" in line
