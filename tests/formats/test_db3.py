"""rosbag2's SQLite storage read with sqlite3 (streamgmm.formats.db3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from streamgmm.formats import db3
from tests.formats.bags import write_rosbags


def test_topics_and_messages_in_recorded_order(tmp_path: Path) -> None:
    clouds = [np.full((4, 3), i + 1.0, dtype=np.float32) for i in range(3)]
    file = write_rosbags(tmp_path / "bag", clouds, stamps=[1.0, 2.0, 3.0])
    with sqlite3.connect(file) as db:  # a message recorded last with an earlier stamp
        db.execute("UPDATE messages SET timestamp = 5 WHERE id = 3")
    db = db3.connect(file)
    try:
        assert db3.topics(db) == {"/points": "sensor_msgs/msg/PointCloud2"}
        got = list(db3.messages(db, "/points"))
        assert [t for t, _ in got] == [1_700_000_000_000_000_000,
                                       1_700_000_000_100_000_000, 5]
        assert list(db3.messages(db, "/other")) == []
        with pytest.raises(sqlite3.OperationalError):  # read-only
            db.execute("DELETE FROM messages")
    finally:
        db.close()


def test_a_database_that_is_no_bag(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "x.db3") as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(db3.NotABag):
        db3.connect(tmp_path / "x.db3")
    (tmp_path / "y.db3").write_bytes(b"plain text, not SQLite " * 20)
    with pytest.raises(sqlite3.DatabaseError):
        db3.connect(tmp_path / "y.db3")
