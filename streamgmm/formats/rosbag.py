"""Measurement messages from ROS bags, without a ROS installation.

- ``.mcap`` files: ``mcap`` with ``mcap-ros2-support`` (ROS 2 messages, CDR) and
  ``mcap-ros1-support`` (ROS 1 messages in MCAP, as ``rosbag2`` and Foxglove's converters
  write them). They decode with the message definitions stored in the file, so any ROS
  distribution's bag reads without a type store, and a bare ``.mcap`` needs no
  ``metadata.yaml``. A file cut short or damaged part-way is read by mcap's stream reader up
  to the damage: every complete message before it is yielded, then
  :class:`~streamgmm.formats.DamagedFileError` says how many and where.
- ``.db3`` (rosbag2 SQLite), rosbag2 directories and ROS 1 ``.bag``: ``rosbags``, a pure-Python
  reader of both bag generations (it is the only maintained one that needs no ROS). A
  message that fails part-way ends the bag the same way; what rosbags cannot open at all
  (a ROS 1 bag cut before its index, a SQLite file whose header is gone) is refused.
- A rosbag2 bag without its ``metadata.yaml`` (rosbag2 writes it when the recorder closes
  the bag) and a ``.db3`` cut short are read from their storage files: ``.mcap`` as above,
  ``.db3`` through :mod:`streamgmm.formats.db3` (Python's ``sqlite3``).

The message types read are those of :mod:`streamgmm.formats.messages`: ``PointCloud2``,
``Imu`` and ``LaserScan``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from streamgmm.formats import db3
from streamgmm.formats._errors import DamagedFileError, FormatError, brief, require
from streamgmm.formats.columns import position, select
from streamgmm.formats.filters import RowFilter, filter_rows
from streamgmm.formats.messages import MESSAGE_TYPES, MessageType, message_type

__all__ = ["CLOUD_TYPES", "Cloud", "iter_mcap", "iter_rosbag2_storage", "iter_rosbags",
           "storage_files", "to_cloud"]

# Schema names of PointCloud2 in ROS 2 and in ROS 1.
CLOUD_TYPES = ("sensor_msgs/msg/PointCloud2", "sensor_msgs/PointCloud2")
_READ = "sensor_msgs/PointCloud2, sensor_msgs/Imu or sensor_msgs/LaserScan"


class Cloud(NamedTuple):
    """One point cloud of a file or a bag message.

    Attributes
    ----------
    points : numpy.ndarray of shape (n, d)
        The selected fields, rows with NaN/Inf removed.
    stamp : float or None
        Sensor time (header stamp) in seconds; None for files without one.
    frame : str
        Coordinate frame (``header.frame_id``); ``""`` when unknown.
    dropped : int
        Rows removed for NaN/Inf.
    time : float or None
        When the bag recorded the message (seconds), for pacing; None for plain files.
    zeros : int
        Rows removed for being exactly zero in x, y, z (a LiDAR's no-return points).
    out_of_range : int
        Rows removed for lying outside the range limits (the reader's, and a LaserScan's
        own ``range_min``/``range_max``).
    fields : tuple of str
        The names of the columns of ``points`` (empty for a table without names).
    skipped : tuple of str
        Columns left out by default because their name says time or a counter.
    one_row : bool
        One row per message (IMU samples): a publisher may group several into one message.
    """

    points: np.ndarray
    stamp: float | None
    frame: str
    dropped: int
    time: float | None
    zeros: int = 0
    out_of_range: int = 0
    fields: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    one_row: bool = False


def _header(msg: Any) -> tuple[float | None, str]:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None, ""
    sec = getattr(stamp, "sec", getattr(stamp, "secs", 0))
    nsec = getattr(stamp, "nanosec", getattr(stamp, "nsec", getattr(stamp, "nsecs", 0)))
    value = float(sec) + float(nsec) * 1e-9
    return (value if value > 0 else None), str(getattr(header, "frame_id", "") or "")


def to_cloud(path: Path, mtype: MessageType, msg: Any, fields: Sequence[str] | None,
             rule: RowFilter, log_time_ns: int) -> Cloud:
    """One decoded message as a :class:`Cloud`: fields selected, rows filtered and counted.

    Raises
    ------
    FormatError
        If the message lacks a selected field or its layout is inconsistent.
    """
    names = tuple(fields) if fields is not None else mtype.default_fields
    try:
        columns, outside = mtype.columns(msg, names)
        points = select(path, columns, names)
        filtered = filter_rows(points, position(columns), rule, outside=outside)
    except FormatError:
        raise
    except ValueError as exc:
        short = mtype.name.split("/")[-1]
        raise FormatError(f"{path}: bad {short} message: {exc}") from None
    stamp, frame = _header(msg)
    recorded = log_time_ns * 1e-9
    # A driver that leaves the header stamp at 0 still gets a sensible time: the recording's.
    return Cloud(filtered.points, recorded if stamp is None else stamp, frame,
                 filtered.nonfinite, recorded, filtered.zeros, filtered.out_of_range,
                 names, (), mtype.one_row)


def _pick_topic(path: Path, topics: dict[str, str], topic: str | None) -> str:
    readable = sorted(t for t, kind in topics.items() if kind in MESSAGE_TYPES)
    clouds = [t for t in readable if topics[t] in CLOUD_TYPES]
    if topic is None:
        if len(clouds) == 1:
            return clouds[0]
        if not clouds and len(readable) == 1:
            return readable[0]
        if not readable:
            listed = ", ".join(f"{t} ({k})" for t, k in sorted(topics.items())) or "none"
            raise FormatError(f"{path}: no topic of {_READ} in the bag (its topics: "
                              f"{listed})")
        choice = clouds if clouds else readable
        raise FormatError(f"{path}: several topics to read; choose one with --ros-topic: "
                          f"{', '.join(f'{t} ({topics[t]})' for t in choice)}")
    if topic not in topics:
        listed = ", ".join(f"{t} ({topics[t]})" for t in readable) or "none"
        raise FormatError(f"{path}: no topic {topic!r} (readable topics: {listed})")
    if topics[topic] not in MESSAGE_TYPES:
        raise FormatError(f"{path}: topic {topic!r} carries {topics[topic]}, not {_READ}")
    return topic


# The first bytes of a zstd frame. rosbag2's per-message compression (``ros2 bag record
# --compression-mode message``) stores each message's serialized bytes as one zstd frame; the
# MCAP channel still says "cdr", and only rosbag2's metadata.yaml (or its "rosbag2" metadata
# record, written last, so gone from a file cut short) says that the bytes are compressed. A
# CDR message never starts so: its encapsulation header starts with a 0 byte.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _unzstd(data: bytes) -> bytes:
    """A message's CDR bytes: ``data`` itself, or decompressed when it is a zstd frame."""
    if bytes(data[:4]) != _ZSTD_MAGIC:
        return data
    import zstandard  # a dependency of mcap (its chunk compression)

    # A stream decompressor: rosbag2's frames need not record their decompressed size.
    return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(data))


class _MessageCompression:
    """A decoder factory that decompresses rosbag2's per-message zstd frames of CDR channels
    before the wrapped factory decodes them."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def decoder_for(self, message_encoding: str, schema: Any) -> Any:
        decode = self.factory.decoder_for(message_encoding, schema)
        if decode is None or message_encoding != "cdr":
            return decode
        return lambda data: decode(_unzstd(data))


def _mcap_decoders() -> list:
    """The decoder factories of the ROS 2 and ROS 1 support packages."""
    ros2 = require("mcap_ros2.decoder", "reading .mcap bags", "mcap-ros2-support", "ros")
    factories = [_MessageCompression(ros2.DecoderFactory())]
    try:
        import mcap_ros1.decoder as ros1
    except ImportError:
        pass  # only ROS 1 messages need it: said when one is met (see _decoder)
    else:
        factories.append(ros1.DecoderFactory())
    return factories


def _decoder(path: Path, factories: list, channel: Any, schema: Any) -> Any:
    for factory in factories:
        decoder = factory.decoder_for(channel.message_encoding, schema)
        if decoder is not None:
            return decoder
    if channel.message_encoding == "ros1":
        require("mcap_ros1.decoder", "reading ROS 1 messages in .mcap bags",
                "mcap-ros1-support", "ros")
    raise FormatError(f"{path}: topic {channel.topic!r}: no decoder for message encoding "
                      f"{channel.message_encoding!r} (streamgmm reads ros1 and cdr)")


def iter_mcap(path: Path, topic: str | None, fields: Sequence[str] | None,
              rule: RowFilter | None = None) -> Iterator[Cloud]:
    """Messages of one topic of an MCAP file (ROS 2 or ROS 1 encoded), as clouds.

    An intact file is read through its index, in log-time order. A file without a summary
    (cut short, or written without one) is read record by record in file order up to the
    first damage.

    Raises
    ------
    DamagedFileError
        After the last complete message before the damage (a FormatError).
    FormatError
        If the file is not MCAP, the topic is missing or not readable, or a message does
        not decode.
    MissingExtraError
        If ``mcap``/``mcap-ros2-support`` (or, for ROS 1 messages, ``mcap-ros1-support``)
        are not installed.
    """
    require("mcap.reader", "reading .mcap bags", "mcap", "ros")
    factories = _mcap_decoders()
    rule = rule or RowFilter()
    from mcap.reader import make_reader

    with path.open("rb") as fh:
        try:
            reader = make_reader(fh, decoder_factories=factories)
            summary = reader.get_summary()
        except Exception:  # no summary to read: the stream reader below finds out why
            summary = None
        if summary is not None and summary.channels:
            schemas = summary.schemas
            topics = _topic_types(schemas, summary.channels)
            chosen = _pick_topic(path, topics, topic)
            mtype = message_type(topics[chosen])
            for ch in summary.channels.values():
                if ch.topic == chosen:
                    _decoder(path, factories, ch, schemas.get(ch.schema_id))
            yield from _until_damage(path, chosen, (
                to_cloud(path, mtype, msg, fields, rule, message.log_time)
                for _schema, _channel, message, msg in reader.iter_decoded_messages(
                    topics=[chosen], log_time_order=True)))
            return
    yield from _iter_mcap_stream(path, topic, fields, rule, factories)


def _topic_types(schemas: dict, channels: dict) -> dict[str, str]:
    """Topic -> schema name (message type) of MCAP channels; ``""`` without a schema."""
    return {ch.topic: (schemas[ch.schema_id].name if ch.schema_id in schemas else "")
            for ch in channels.values()}


def _scan_mcap(path: Path) -> tuple[dict, dict, BaseException | None]:
    """Schemas and channels met before the end or the first damage, and that damage."""
    from mcap.records import Channel, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    with path.open("rb") as fh:
        try:
            for record in StreamReader(fh, record_size_limit=path.stat().st_size).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
        except Exception as exc:  # the damage: reported by the second pass
            return schemas, channels, exc
    return schemas, channels, None


def _iter_mcap_stream(path: Path, topic: str | None, fields: Sequence[str] | None,
                      rule: RowFilter, factories: list) -> Iterator[Cloud]:
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    size = path.stat().st_size
    schemas, channels, damage = _scan_mcap(path)
    if not channels:
        from mcap.exceptions import InvalidMagic

        if damage is None or isinstance(damage, InvalidMagic) or size < 16:
            why = f" ({brief(damage)})" if damage is not None else " (no channels)"
            raise FormatError(f"{path}: not a readable MCAP bag{why}")
        raise DamagedFileError(
            f"{path}: damaged before its first complete channel record ({brief(damage)}); "
            "no message can be read", messages_read=0, where="before the first message")
    topics = _topic_types(schemas, channels)
    chosen = _pick_topic(path, topics, topic)
    mtype = message_type(topics[chosen])
    decoders = {cid: _decoder(path, factories, ch, schemas.get(ch.schema_id))
                for cid, ch in channels.items() if ch.topic == chosen}
    count = good = 0
    error: BaseException | None = None
    with path.open("rb") as fh:
        try:
            for record in StreamReader(fh, record_size_limit=size).records:
                if isinstance(record, Message) and record.channel_id in decoders:
                    msg = decoders[record.channel_id](record.data)
                    cloud = to_cloud(path, mtype, msg, fields, rule, record.log_time)
                    good = fh.tell()
                    count += 1
                    yield cloud
                else:
                    good = fh.tell()
        except (FormatError, OSError):
            raise
        except Exception as exc:
            error = exc
    if error is None:
        return  # complete, only written without a summary
    where = f"after byte {good} of {size}"
    import struct

    from mcap.exceptions import EndOfFile

    why = ("cut short: it ends inside a record" if isinstance(error, (struct.error, EndOfFile))
           else brief(error))
    raise DamagedFileError(
        f"{path}: damaged {where} ({why}); read {count} messages of {chosen} before it",
        messages_read=count, where=where)


def iter_rosbags(path: Path, topic: str | None, fields: Sequence[str] | None,
                 rule: RowFilter | None = None) -> Iterator[Cloud]:
    """Messages of one topic of a ROS 1 ``.bag`` or a rosbag2 (``.db3``/directory).

    A ``.db3`` file is read through its directory, which must hold the bag's
    ``metadata.yaml``.

    Raises
    ------
    DamagedFileError
        After the last complete message when reading fails part-way (a FormatError).
    FormatError
        If the bag cannot be read, the topic is missing or not readable, or a message
        does not decode.
    MissingExtraError
        If ``rosbags`` is not installed.
    """
    require("rosbags.highlevel", "reading .db3/.bag bags", "rosbags", "ros")
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    rule = rule or RowFilter()
    bag = path
    if path.suffix.lower() == ".db3":
        bag = path.parent
        if not (bag / "metadata.yaml").is_file():
            yield from iter_rosbag2_storage(path, topic, fields, rule)
            return
    try:
        # The type store only serves rosbag2 files that lack embedded message definitions.
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except OSError:
        raise
    except Exception as exc:  # rosbags' reader errors, or struct errors on a damaged bag
        mcaps = _mcap_files(bag) if path.is_dir() else None
        if mcaps is None and "malformed" in str(exc) and any(
                f.suffix.lower() == ".db3" for f in storage_files(bag)):
            # rosbags opens a .db3 whole; SQLite reads a file cut short up to the cut.
            yield from iter_rosbag2_storage(bag, topic, fields, rule)
            return
        if mcaps is None:
            raise FormatError(_not_readable(path, exc)) from None
        # rosbags opens an MCAP through its summary at the end, which a cut removes; the
        # .mcap reader recovers what comes before the cut, as for the file given alone.
        files, topics = mcaps
        yield from _iter_mcap_files(files, _pick_topic(path, topics, topic), fields, rule)
        return
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        chosen = _pick_topic(path, topics, topic)
        mtype = message_type(topics[chosen])
        connections = [c for c in reader.connections if c.topic == chosen]
        yield from _until_damage(path, chosen, (
            to_cloud(path, mtype, reader.deserialize(raw, connection.msgtype), fields, rule,
                     timestamp)
            for connection, timestamp, raw in reader.messages(connections=connections)))
    except (FormatError, OSError):
        raise
    except Exception as exc:  # rosbags' errors on a bag it opened
        raise FormatError(_not_readable(path, exc)) from None
    finally:
        reader.close()


def storage_files(bag: Path) -> list[Path]:
    """The storage files of a rosbag2 directory (``.mcap`` or ``.db3``) in recorded order:
    rosbag2 numbers the files of a split bag ``NAME_0``, ``NAME_1``, ... (empty when it has
    none)."""
    def order(file: Path) -> tuple[int, str]:
        number = file.stem.rpartition("_")[2]
        return (int(number) if number.isdigit() else -1, file.name)

    return sorted((f for f in bag.iterdir()
                   if f.suffix.lower() in (".mcap", ".db3") and f.is_file()), key=order)


def iter_rosbag2_storage(path: Path, topic: str | None, fields: Sequence[str] | None,
                         rule: RowFilter | None = None) -> Iterator[Cloud]:
    """Messages of one topic of a rosbag2 bag read from its storage files alone, without
    ``metadata.yaml``: a directory whose recorder was stopped before it closed the bag
    (rosbag2 writes ``metadata.yaml`` last), or a ``.db3`` file given alone.

    The ``.mcap`` files are read as :func:`iter_mcap` reads one; a ``.db3`` file's topics
    and messages are read from its SQLite tables and decoded with the ROS 2 Humble type store
    (how rosbags reads a bag that does not embed its message definitions), in the order
    they were recorded. A split bag's files are read in their numbered order.

    Raises
    ------
    DamagedFileError
        After the last complete message before a damaged file or page.
    FormatError
        If there is no storage file, the directory mixes ``.mcap`` and ``.db3`` files, or a
        file cannot be read, as for the readers of each storage.
    MissingExtraError
        If the readers of the storage are not installed.
    """
    rule = rule or RowFilter()
    files = storage_files(path) if path.is_dir() else [path]
    kinds = {f.suffix.lower() for f in files}
    if not files:
        raise FormatError(f"{path}: a directory without metadata.yaml and without .mcap or "
                          ".db3 files: not a rosbag2 bag")
    if len(kinds) > 1:
        raise FormatError(f"{path}: without metadata.yaml, and it holds both .mcap and .db3 "
                          "files: which of them are the bag is not known")
    if kinds == {".mcap"}:
        require("mcap.reader", "reading .mcap bags", "mcap", "ros")
        chosen = _pick_topic(path, _mcap_topics(files[0]), topic)
        yield from _iter_mcap_files(files, chosen, fields, rule)
        return
    require("rosbags.typesys", "reading .db3 bags", "rosbags", "ros")
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with contextlib.ExitStack() as stack:
        topics: dict[str, str] = {}
        databases = []
        for file in files:
            try:
                db = stack.enter_context(contextlib.closing(db3.connect(file)))
                topics.update(db3.topics(db))
            except sqlite3.DatabaseError as exc:
                raise FormatError(_not_readable(file, exc)) from None
            except db3.NotABag:
                raise FormatError(f"{file}: not a rosbag2 SQLite bag (no topics and "
                                  "messages tables)") from None
            databases.append(db)
        chosen = _pick_topic(path, topics, topic)
        mtype = message_type(topics[chosen])
        yield from _until_damage(path, chosen, (
            to_cloud(path, mtype, typestore.deserialize_cdr(_unzstd(raw), topics[chosen]),
                     fields, rule, timestamp)
            for db in databases for timestamp, raw in db3.messages(db, chosen)))


def _mcap_topics(path: Path) -> dict[str, str]:
    """Topic -> schema name of an MCAP file, from its summary or, without one (cut short),
    from the channels met before the end or the damage."""
    from mcap.reader import make_reader

    summary = None
    with path.open("rb") as fh:
        try:
            summary = make_reader(fh).get_summary()
        except Exception:  # no summary: the stream scan below reads what is there
            summary = None
    if summary is not None and summary.channels:
        schemas, channels = summary.schemas, summary.channels
    else:
        schemas, channels, _damage = _scan_mcap(path)
    return _topic_types(schemas, channels)


def _not_readable(path: Path, exc: BaseException) -> str:
    """Why rosbags refuses a bag, with what the user can do about it."""
    text = brief(exc)
    hint = ""
    if "index" in text.lower() and path.suffix.lower() == ".bag":
        hint = ("; a ROS 1 bag keeps its index at the end, so one cut short cannot be "
                "read without it: 'rosbag reindex' (ROS 1) rebuilds it")
    elif "malformed" in text.lower() or "not a database" in text.lower():
        hint = "; SQLite cannot open what is left of it (cut short or corrupt)"
    return f"{path}: not a readable ROS bag ({text}){hint}"


def _mcap_files(bag: Path) -> tuple[list[Path], dict[str, str]] | None:
    """The .mcap files of a rosbag2 directory with MCAP storage, in recorded order, and its
    topics (name -> type) from its metadata.yaml; None when the bag has another storage,
    compresses whole files, or its metadata.yaml is not rosbag2's."""
    from ruamel.yaml import YAML  # a dependency of rosbags

    try:
        info = YAML(typ="safe").load((bag / "metadata.yaml").read_text())
        info = info["rosbag2_bagfile_information"]
        files = [bag / Path(str(name)).name for name in info["relative_file_paths"]]
        topics = {str(t["topic_metadata"]["name"]): str(t["topic_metadata"]["type"])
                  for t in info["topics_with_message_count"]}
        storage = str(info.get("storage_identifier"))
        compression = str(info.get("compression_mode") or "").lower()
    except Exception:  # not what rosbag2 writes: rosbags' own error is the better one
        return None
    if (storage != "mcap" or compression == "file" or not files
            or any(f.suffix.lower() != ".mcap" or not f.is_file() for f in files)):
        return None
    return files, topics


def _iter_mcap_files(files: list[Path], topic: str, fields: Sequence[str] | None,
                     rule: RowFilter) -> Iterator[Cloud]:
    """The clouds of a rosbag2 directory's .mcap files read one after another by
    :func:`iter_mcap` (a damaged file ends the bag, counting the messages of the files
    before it)."""
    read = 0
    for file in files:
        try:
            for cloud in iter_mcap(file, topic, fields, rule):
                read += 1
                yield cloud
        except DamagedFileError as exc:
            if read == exc.messages_read:
                raise
            raise DamagedFileError(
                f"{exc} (and {read - exc.messages_read} in the files before it)",
                messages_read=read, where=f"{file.name}: {exc.where}") from None


def _until_damage(path: str, topic: str, clouds: Iterator) -> Iterator:
    """The clouds of ``clouds`` until the file's damage, which ends them with one
    :class:`DamagedFileError` saying how many were read (the readers raise their own errors,
    struct/EOF errors or decoder errors on damage; ours and OS errors pass through)."""
    count = 0
    try:
        for cloud in clouds:
            count += 1
            yield cloud
    except (FormatError, OSError):
        raise
    except Exception as exc:
        raise DamagedFileError(
            f"{path}: damaged after {count} messages of {topic} ({brief(exc)})",
            messages_read=count, where=f"after message {count}",
        ) from None
