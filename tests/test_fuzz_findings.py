"""Regression tests for what the fuzzer found (fuzz/findings/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamgmm import codec
from streamgmm.daemon.accounting import Counters, SourceTracker

FINDINGS = Path(__file__).resolve().parent.parent / "fuzz" / "findings"
DECODERS = [codec.decode_points, codec.decode_request, codec.decode_update, codec.decode_reply]


@pytest.mark.parametrize("path", sorted(FINDINGS.glob("repr-recursion-*.msgpack")),
                         ids=lambda p: p.name)
def test_deeply_nested_values_are_rejected_not_raised(path):
    payload = path.read_bytes()
    for decode in DECODERS[:3]:
        with pytest.raises(codec.DecodeError):
            decode(payload)
    try:  # replies are only checked to be maps: a nested value may pass, but never crash
        codec.decode_reply(payload)
    except codec.DecodeError:
        pass


def test_deep_nesting_at_every_depth_up_to_msgpack_limit():
    for depth in (900, 990, 995, 1000, 1020):
        payload = b"\x81\xa1v" + b"\x91" * depth + b"\xc0"
        for decode in DECODERS:
            with pytest.raises(codec.DecodeError):
                decode(payload)


def test_huge_seq_jumps_are_restarts_and_counters_stay_encodable():
    tracker, counters = SourceTracker(), Counters()
    for seq in (0, 2**64 - 1, 0, 3, 2**64 - 1):
        lost, restarted = tracker.observe("peer", seq)
        counters.messages_lost += lost
        counters.publisher_restarts += restarted
    assert counters.messages_lost == 2  # only the gap 0 -> 3 is a loss
    counters.messages_lost = 2**70  # even a saturated counter must encode
    reply = codec.decode_reply(codec.encode_reply({"ok": True, "counters": counters.as_dict()}))
    assert reply["counters"]["messages_lost"] == 2**63 - 1
