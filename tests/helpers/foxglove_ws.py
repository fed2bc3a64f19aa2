"""A Foxglove WebSocket client and MCAP decoding written for the tests, from the specs alone.

Nothing here uses streamgmm or foxglove-sdk: the client speaks the Foxglove WebSocket protocol
itself (``websockets``; JSON ``serverInfo``/``advertise``/``subscribe``, binary
``messageData`` frames: opcode 0x01, subscription id u32 LE, timestamp u64 LE, payload) and
decodes the payloads with the protobuf schema the server advertises (``protobuf``), the way
Foxglove does. MCAP files are read with ``mcap``'s reader and decoded the same way.
"""

from __future__ import annotations

import json
import struct
import time
from base64 import b64decode
from pathlib import Path
from typing import Any

# foxglove-sdk >= 0.2x accepts only the renamed subprotocol; the protocol is the same.
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]
OP_MESSAGE_DATA = 0x01


def protobuf_class(schema_name: str, file_descriptor_set: bytes) -> Any:
    """The message class of ``schema_name`` built from a serialized FileDescriptorSet."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = list(descriptor_pb2.FileDescriptorSet.FromString(file_descriptor_set).file)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    while files:  # add each file after its dependencies, whatever the set's order
        ready = [f for f in files if set(f.dependency) <= added]
        if not ready:
            raise ValueError(f"unresolved protobuf dependencies: {[f.name for f in files]}")
        for f in ready:
            pool.Add(f)
            added.add(f.name)
            files.remove(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


class FoxgloveClient:
    """A minimal Foxglove WebSocket client (synchronous, every wait bounded).

    Parameters
    ----------
    url : str
        ``ws://127.0.0.1:PORT``.
    timeout : float
        Seconds to wait for the connection.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        from websockets.sync.client import connect

        # No proxy from the environment, no compression: a plain loopback connection.
        self._connection = connect(url, subprotocols=SUBPROTOCOLS, open_timeout=timeout,
                                   compression=None, proxy=None)
        self.ws = self._connection.__enter__()
        self.server_info: dict | None = None
        self.channels: dict[int, dict] = {}  # channel id -> advertised channel
        self.classes: dict[int, Any] = {}  # channel id -> protobuf class
        self.subscriptions: dict[int, int] = {}  # subscription id -> channel id
        self.received: list[tuple[int, int, bytes]] = []  # (subscription, timestamp, payload)

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    def _read_one(self, timeout: float) -> bool:
        """Read one frame (False when none came within ``timeout``)."""
        try:
            frame = self.ws.recv(timeout=max(timeout, 0.0))
        except TimeoutError:
            return False
        if isinstance(frame, str):
            msg = json.loads(frame)
            if msg["op"] == "serverInfo":
                self.server_info = msg
            elif msg["op"] == "advertise":
                for channel in msg["channels"]:
                    self.channels[channel["id"]] = channel
            elif msg["op"] == "unadvertise":
                for cid in msg["channelIds"]:
                    self.channels.pop(cid, None)
        elif frame and frame[0] == OP_MESSAGE_DATA:
            sub, stamp = struct.unpack_from("<IQ", frame, 1)
            self.received.append((sub, stamp, bytes(frame[13:])))
        return True

    def wait_channel(self, topic: str, timeout: float = 20.0) -> dict:
        """The advertised channel of ``topic`` (reads frames until it is advertised)."""
        deadline = time.monotonic() + timeout
        while True:
            for channel in self.channels.values():
                if channel["topic"] == topic:
                    return channel
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no channel {topic!r} advertised; have "
                                   f"{[c['topic'] for c in self.channels.values()]}")
            self._read_one(min(left, 0.5))

    def subscribe(self, channel: dict, subscription_id: int) -> None:
        """Subscribe to a channel; its schema gives the decoder of its messages."""
        if channel["encoding"] != "protobuf":
            raise ValueError(f"expected a protobuf channel, got {channel['encoding']!r}")
        self.classes[channel["id"]] = protobuf_class(channel["schemaName"],
                                                     b64decode(channel["schema"]))
        self.subscriptions[subscription_id] = channel["id"]
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": subscription_id, "channelId": channel["id"]}]}))

    def wait_messages(self, subscription_id: int, count: int,
                      timeout: float = 20.0) -> list[tuple[int, Any]]:
        """At least ``count`` decoded messages of a subscription: (timestamp ns, message)."""
        deadline = time.monotonic() + timeout
        while True:
            mine = [(stamp, payload) for sub, stamp, payload in self.received
                    if sub == subscription_id]
            if len(mine) >= count:
                cls = self.classes[self.subscriptions[subscription_id]]
                return [(stamp, cls.FromString(payload)) for stamp, payload in mine]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(mine)} of {count} messages within {timeout} s")
            self._read_one(min(left, 0.5))

    def drain(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read_one(deadline - time.monotonic())

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def read_mcap(path: Path) -> list[tuple[str, str, int, Any]]:
    """Every message of an MCAP file: (topic, schema name, log time ns, decoded protobuf)."""
    from mcap.reader import make_reader

    classes: dict[int, Any] = {}
    out = []
    with open(path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
            assert schema.encoding == "protobuf" and channel.message_encoding == "protobuf"
            if schema.id not in classes:
                classes[schema.id] = protobuf_class(schema.name, schema.data)
            out.append((channel.topic, schema.name, message.log_time,
                        classes[schema.id].FromString(message.data)))
    return out
