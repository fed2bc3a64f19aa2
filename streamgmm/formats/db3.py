"""rosbag2's SQLite storage (``.db3``) read with Python's ``sqlite3``, for the bags ``rosbags``
cannot open: a ``.db3`` without its ``metadata.yaml`` and one cut short.

A ``.db3`` holds a ``topics`` table (id, name, type, serialization_format, ...) and a
``messages`` table (id, topic_id, timestamp, data) of serialized messages; decoding them is the
caller's (:func:`streamgmm.formats.rosbag.iter_rosbag2_storage`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NotABag", "connect", "messages", "topics"]


class NotABag(Exception):
    """A SQLite file without rosbag2's ``topics`` and ``messages`` tables."""


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ``.db3`` file that has read its schema.

    Raises
    ------
    sqlite3.DatabaseError
        If SQLite cannot open the file (not a database, its header or schema pages gone).
    NotABag
        If it has no ``topics`` and ``messages`` tables.
    """
    uri = path.resolve().as_uri()
    try:
        db = _connect(f"{uri}?mode=ro")
    except sqlite3.OperationalError:
        # A write-ahead log beside the file needs a shared-memory file that a read-only
        # connection cannot create: read the database file as it is.
        db = _connect(f"{uri}?immutable=1")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if not {"topics", "messages"} <= tables:
        db.close()
        raise NotABag(str(path))
    return db


def _connect(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True)
    try:
        # SQLite refuses a file shorter than its header says ("malformed") unless the schema
        # is writable; then it reads the pages that are there, and the messages up to the cut.
        # Nothing is written: the connection is read-only.
        db.execute("PRAGMA writable_schema = ON")
        db.execute("SELECT name FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def topics(db: sqlite3.Connection) -> dict[str, str]:
    """Topic name -> message type of the CDR topics of the ``topics`` table.

    Raises
    ------
    sqlite3.DatabaseError
        If the table cannot be read.
    """
    rows = db.execute("SELECT name, type, serialization_format FROM topics").fetchall()
    return {str(name): str(kind) for name, kind, encoding in rows if encoding == "cdr"}


def messages(db: sqlite3.Connection, topic: str) -> Iterator[tuple[int, bytes]]:
    """(timestamp in ns, serialized bytes) of one topic's messages in the order they were
    recorded (their row ids; rosbag2 stamps them on arrival). A file cut short ends with
    SQLite's "malformed" error at the first row past the cut."""
    yield from db.execute(
        "SELECT timestamp, data FROM messages WHERE topic_id IN "
        "(SELECT id FROM topics WHERE name = ?) ORDER BY id", (topic,))
