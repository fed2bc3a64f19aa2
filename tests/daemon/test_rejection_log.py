"""The daemon logs the first rejection per source and reason, then only counts repeats
(``streamgmm.daemon.accounting.RejectionLog``: rate-limited and bounded). Issue 13, item 1.
"""

from __future__ import annotations

import time

from tests.helpers.daemon import Daemon
from tests.helpers.data import blobs


def wait_log(d: Daemon, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    return d.log()


def test_daemon_logs_the_first_rejection_per_source_and_reason(daemon_factory) -> None:
    d = daemon_factory()
    for _ in range(4):
        d.send("points/lidar", blobs(20, dim=5), source="robot-a")
    d.send("points/lidar", blobs(20, dim=5), source="robot-b")
    d.send_raw([b"points/lidar", b"\xc1 not msgpack"])
    d.wait_for(lambda s: sum(s["counters"]["rejected"].values()) == 6)
    log = wait_log(d, "reason=msgpack")
    lines = [line for line in log.splitlines() if "rejected" in line and "reason=dim" in line]
    assert len(lines) == 2, log  # one per source, the repeats only counted
    assert "source=robot-a" in lines[0] and "source=robot-b" in lines[1]
    assert "5-D" in lines[0] and "dim 3" in lines[0]
    assert d.stop() == 0


def test_rejection_log_is_rate_limited_and_bounded() -> None:
    from streamgmm.daemon.accounting import RejectionLog

    rl = RejectionLog(repeat_s=60.0, burst=3, capacity=4)
    assert rl.should_log("a", "dim", now=100.0) == 0
    assert rl.should_log("a", "dim", now=100.5) is None  # a repeat within the minute
    assert rl.should_log("a", "empty", now=100.6) == 0  # another reason: its own first line
    assert rl.should_log("b", "dim", now=100.7) == 0
    assert rl.should_log("c", "dim", now=100.8) is None  # the fourth line of this second
    assert rl.should_log("c", "dim", now=101.9) == 1  # next second; one went unlogged
    assert rl.should_log("a", "dim", now=161.0) == 1  # a minute on, with the count
    for i in range(50):
        rl.should_log(f"s{i}", "dim", now=200.0 + i)
    assert len(rl._last) <= 4 and len(rl._suppressed) <= 4

