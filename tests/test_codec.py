"""Tests of the pure wire codec: round trips, a hostile-input table, length bombs, fuzzing."""

from __future__ import annotations

import inspect
import math
import pickle
import struct
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgmm import codec
from streamgmm.codec import (
    COVARIANCE_TYPES,
    DTYPES,
    ERROR_CODES,
    PROTOCOL_VERSION,
    DecodeError,
    PointsMessage,
    covariance_shape,
    decode_array,
    decode_points,
    decode_reply,
    decode_request,
    decode_update,
    encode_array,
    encode_points,
    encode_reply,
    encode_request,
    encode_update,
    error_reply,
    update_topic,
)

RNG = np.random.default_rng(12345)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


_AUTO = object()


def arr(dtype: object = "<f8", shape: object = (2, 3), data: object = _AUTO) -> dict:
    """A raw array map, possibly invalid, for building hostile payloads."""
    if data is _AUTO:
        itemsize = 4 if dtype == "<f4" else 8
        data = bytes(itemsize * math.prod(shape))
    return {
        "dtype": dtype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data": data,
    }


def points_map(**over: object) -> dict:
    """A valid points map; keyword arguments replace keys, the value DROP removes one."""
    msg = {"v": 1, "seq": 7, "stamp": 12.5, "source": "s", "frame": "f", "points": arr()}
    msg.update(over)
    return {k: v for k, v in msg.items() if v is not DROP}


DROP = object()


def update_kwargs(covariance_type: str = "full", k: int = 3, d: int = 2) -> dict:
    rng = np.random.default_rng(k * 10 + d)
    w = rng.random(k)
    return {
        "model": "lidar",
        "seq": 5,
        "stamp": 1_700_000_000.25,
        "n_seen": 1234,
        "kind": "online",
        "covariance_type": covariance_type,
        "weights": w / w.sum(),
        "means": rng.normal(size=(k, d)),
        "covariances": rng.random(covariance_shape(covariance_type, k, d)) + 0.5,
        "avg_log_likelihood": -3.25,
        "last_stamp": 99.5,
    }


def update_map(**over: object) -> dict:
    """A valid update map as it travels (arrays encoded); DROP removes a key."""
    kw = update_kwargs()
    msg = {"v": 1, **kw}
    for key in ("weights", "means", "covariances"):
        msg[key] = encode_array(msg[key], "<f8")
    msg.update(over)
    return {k: v for k, v in msg.items() if v is not DROP}


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 5000])
def test_points_round_trip(dtype: type, n: int) -> None:
    pts = RNG.normal(size=(n, 3)).astype(dtype)
    payload = encode_points(pts, seq=42, stamp=3.5, source="lidar_front", frame="base_link")
    msg = decode_points(payload)
    assert isinstance(msg, PointsMessage)
    assert (msg.seq, msg.stamp, msg.source, msg.frame) == (42, 3.5, "lidar_front", "base_link")
    assert msg.rows_dropped_nonfinite == 0
    assert msg.points.dtype == np.dtype(dtype)
    assert msg.points.shape == (n, 3)
    np.testing.assert_array_equal(msg.points, pts)


def test_points_wire_layout() -> None:
    pts = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(encode_points(pts, seq=1, stamp=2.0))
    assert raw["v"] == PROTOCOL_VERSION
    assert raw["points"] == {"dtype": "<f4", "shape": [2, 3], "data": pts.astype("<f4").tobytes()}
    assert raw["source"] == "" and raw["frame"] == ""


def test_points_defaults_and_conversions() -> None:
    # int input travels as <f8; a Fortran-ordered / strided view is sent in C order.
    ints = np.arange(12).reshape(4, 3)
    msg = decode_points(encode_points(ints, seq=0, stamp=0))
    assert msg.points.dtype == np.float64 and msg.source == "" and msg.frame == ""
    np.testing.assert_array_equal(msg.points, ints)
    fortran = np.asfortranarray(RNG.normal(size=(5, 4)))[:, ::2]
    np.testing.assert_array_equal(
        decode_points(encode_points(fortran, seq=1, stamp=1)).points, fortran
    )
    big_endian = RNG.normal(size=(3, 2)).astype(">f8")
    np.testing.assert_array_equal(
        decode_points(encode_points(big_endian, seq=1, stamp=1)).points, big_endian
    )


def test_points_optional_keys_absent_and_extra_keys_ignored() -> None:
    msg = decode_points(pack(points_map(source=DROP, frame=DROP, future_key={"x": [1, 2]})))
    assert msg.source == "" and msg.frame == "" and msg.points.shape == (2, 3)
    assert isinstance(decode_points(pack(points_map(stamp=5))).stamp, float)


def test_encode_points_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_points(np.zeros(3), seq=1, stamp=0.0)
    with pytest.raises(ValueError):
        encode_points(np.zeros((1, 3)), seq=-1, stamp=0.0)
    with pytest.raises(ValueError):
        encode_points(np.zeros((1, 3)), seq=1, stamp=math.nan)
    with pytest.raises(TypeError):
        encode_points(np.zeros((1, 3)), seq=True, stamp=0.0)
    with pytest.raises(TypeError):
        encode_points(np.zeros((1, 3)), seq=1, stamp=0.0, source=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape", [(), (0,), (4,), (2, 3), (0, 5), (2, 3, 4), (1, 2, 1, 3)], ids=str
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_array_round_trip(shape: tuple[int, ...], dtype: str) -> None:
    a = RNG.normal(size=shape)
    enc = encode_array(a, dtype)
    assert enc["dtype"] == dtype and enc["shape"] == list(shape)
    assert len(enc["data"]) == a.size * np.dtype(dtype).itemsize
    out = decode_array(msgpack.unpackb(pack(enc)))
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, a.astype(dtype))


def test_encode_array_dtype_choice() -> None:
    assert encode_array(np.zeros(2, np.float32))["dtype"] == "<f4"
    assert encode_array(np.zeros(2, np.float16))["dtype"] == "<f8"
    assert encode_array(np.zeros(2, np.int32))["dtype"] == "<f8"
    assert encode_array([1.0, 2.0])["dtype"] == "<f8"
    assert encode_array(np.zeros(2, np.float64), "<f4")["dtype"] == "<f4"
    with pytest.raises(ValueError):
        encode_array(np.zeros(2), ">f8")
    for bad in (np.zeros(2, complex), np.array(["a"]), np.array([object()])):
        with pytest.raises(TypeError):
            encode_array(bad)


def test_decode_array_limits() -> None:
    with pytest.raises(DecodeError) as e:
        decode_array(encode_array(np.zeros((1, 1, 1, 1, 1))))
    assert e.value.reason == "shape"
    with pytest.raises(DecodeError) as e:
        decode_array(encode_array(np.zeros(11)), max_elements=10)
    assert e.value.reason == "too_large"
    with pytest.raises(DecodeError) as e:
        decode_array({"dtype": "<f8", "shape": [0, 2**63], "data": b""})
    assert e.value.reason == "too_large"
    assert decode_array(encode_array(np.zeros(10)), max_elements=10).shape == (10,)


def test_decode_array_is_read_only_view() -> None:
    out = decode_array(encode_array(np.ones(3)))
    assert not out.flags.writeable


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 2), (8, 3)])
def test_update_round_trip(covariance_type: str, k: int, d: int) -> None:
    kw = update_kwargs(covariance_type, k, d)
    payload = encode_update(**kw, n_reseeded=2, note="x")
    out = decode_update(payload)
    for key in ("model", "seq", "n_seen", "kind", "covariance_type", "stamp", "last_stamp"):
        assert out[key] == kw[key]
    assert out["avg_log_likelihood"] == kw["avg_log_likelihood"]
    assert out["v"] == 1 and out["n_reseeded"] == 2 and out["note"] == "x"
    for key in ("weights", "means", "covariances"):
        assert out[key].dtype == np.float64
        np.testing.assert_array_equal(out[key], kw[key])
    assert out["covariances"].shape == covariance_shape(covariance_type, k, d)


def test_update_nan_log_likelihood_and_numpy_scalars() -> None:
    kw = update_kwargs("diag")
    kw.update(
        avg_log_likelihood=math.nan,
        seq=np.int64(9),
        n_seen=np.uint32(3),
        stamp=np.float32(2.5),
        kind="snapshot",
    )
    out = decode_update(encode_update(**kw, n_reseeded=np.int64(4)))
    assert math.isnan(out["avg_log_likelihood"])
    assert (out["seq"], out["n_seen"], out["stamp"], out["n_reseeded"]) == (9, 3, 2.5, 4)
    assert type(out["seq"]) is int and out["kind"] == "snapshot"


def test_update_accepts_f4_arrays_on_the_wire() -> None:
    msg = update_map()
    for key in ("weights", "means", "covariances"):
        msg[key] = encode_array(decode_array(msg[key]), "<f4")
    assert decode_update(pack(msg))["means"].dtype == np.float32


def test_encode_update_rejects_bad_arguments() -> None:
    bad = [
        {"kind": "delta"},
        {"covariance_type": "banded"},
        {"means": np.zeros((2, 2))},
        {"covariances": np.zeros((3, 2))},
        {"weights": np.array([0.5, math.nan, 0.5])},
        {"seq": -1},
        {"stamp": math.inf},
    ]
    for over in bad:
        with pytest.raises(ValueError):
            encode_update(**{**update_kwargs(), **over})
    with pytest.raises(ValueError):
        encode_update(**update_kwargs(), v=2)
    with pytest.raises(TypeError):
        encode_update(**update_kwargs(), blob=np.zeros(3))


def test_covariance_shape() -> None:
    assert covariance_shape("full", 4, 3) == (4, 3, 3)
    assert covariance_shape("diag", 4, 3) == (4, 3)
    assert covariance_shape("spherical", 4, 3) == (4,)
    assert covariance_shape("tied", 4, 3) == (3, 3)
    with pytest.raises(ValueError):
        covariance_shape("banded", 4, 3)


def test_update_topic() -> None:
    assert update_topic("lidar") == b"gmm/lidar"
    assert update_topic("bäume") == b"gmm/b\xc3\xa4ume"


def test_request_round_trip() -> None:
    assert decode_request(encode_request("snapshot", model="lidar")) == {
        "v": 1,
        "op": "snapshot",
        "model": "lidar",
    }
    assert decode_request(encode_request("status")) == {"v": 1, "op": "status"}
    # Unknown ops and a missing "v" are the service's business, not the decoder's.
    assert decode_request(pack({"op": "frobnicate", "x": [1]})) == {"op": "frobnicate", "x": [1]}
    with pytest.raises(ValueError):
        encode_request("status", v=2)


def test_reply_round_trip() -> None:
    status = {
        "ok": True,
        "uptime_s": 1.5,
        "models": {f"m{i}": {"n_seen": i, "seq": i, "dim": 3, "components": 8} for i in range(100)},
        "counters": {"messages_received": np.int64(10), "rejected": {"schema": 2, "empty": 1}},
    }
    out = decode_reply(encode_reply(status))
    assert out["v"] == 1 and out["ok"] is True and len(out["models"]) == 100
    assert out["counters"]["messages_received"] == 10
    assert decode_reply(encode_reply(error_reply("unknown op 'x'", "unknown_op"))) == {
        "v": 1,
        "ok": False,
        "error": "unknown op 'x'",
        "code": "unknown_op",
    }
    assert error_reply("boom") == {"ok": False, "error": "boom", "code": "bad_request"}
    # A snapshot reply is an update payload.
    snap = encode_update(**{**update_kwargs("tied"), "kind": "snapshot"})
    assert decode_reply(snap)["kind"] == "snapshot"
    assert decode_update(snap)["covariances"].shape == (2, 2)
    with pytest.raises(TypeError):
        encode_reply({"a": np.zeros(2)})
    with pytest.raises(ValueError):
        encode_reply({"v": 2})


def test_decode_reply_rejections() -> None:
    for payload, reason in [
        (pack([1]), "schema"),
        (pack({"v": 3, "ok": True}), "version"),
        (b"\xc1", "msgpack"),
        (b"\xdf\xff\xff\xff\xff", "msgpack"),
    ]:
        with pytest.raises(DecodeError) as e:
            decode_reply(payload)
        assert e.value.reason == reason


def test_decode_error_is_value_error_and_picklable() -> None:
    err = DecodeError("schema", "bad")
    assert isinstance(err, ValueError) and err.reason == "schema" and str(err) == "bad"
    clone = pickle.loads(pickle.dumps(err))
    assert clone.reason == "schema" and str(clone) == "bad"


def test_payload_types() -> None:
    payload = encode_points(np.zeros((2, 2)), seq=1, stamp=1.0)
    assert decode_points(bytearray(payload)).points.shape == (2, 2)
    assert decode_points(memoryview(payload)).points.shape == (2, 2)
    with pytest.raises(DecodeError) as e:
        decode_points("not bytes")  # type: ignore[arg-type]
    assert e.value.reason == "msgpack"


# ---------------------------------------------------------------------------------------------
# Non-finite rows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_rows_dropped_and_counted(dtype: type) -> None:
    pts = RNG.normal(size=(100, 3)).astype(dtype)
    bad_rows = [0, 3, 10, 20, 21, 99]
    pts[0, 0] = np.nan
    pts[3, :] = np.nan
    pts[10, 2] = np.nan
    pts[20, 1] = np.inf
    pts[21, 0] = -np.inf
    pts[99, 1] = np.nan
    pts[50, 1] = np.finfo(dtype).max  # huge but finite: kept
    msg = decode_points(encode_points(pts, seq=1, stamp=1.0))
    assert msg.rows_dropped_nonfinite == len(bad_rows)
    keep = np.setdiff1d(np.arange(100), bad_rows)
    np.testing.assert_array_equal(msg.points, pts[keep])
    assert np.isfinite(msg.points).all() and msg.points.dtype == np.dtype(dtype)


def test_all_nonfinite_gives_empty_array() -> None:
    pts = np.full((7, 4), np.nan)
    pts[3] = np.inf
    msg = decode_points(encode_points(pts, seq=1, stamp=1.0))
    assert msg.points.shape == (0, 4) and msg.rows_dropped_nonfinite == 7


def test_zero_rows_gives_empty_array() -> None:
    msg = decode_points(encode_points(np.zeros((0, 3), np.float32), seq=1, stamp=1.0))
    assert msg.points.shape == (0, 3) and msg.rows_dropped_nonfinite == 0


# ---------------------------------------------------------------------------------------------
# Hostile / invalid payloads: each rejected with its exact reason
# ---------------------------------------------------------------------------------------------

_PICKLE_CANARY = Path("streamgmm-codec-canary-never-created")


class _Evil:
    """Unpickling this would create the canary file (msgpack-numpy would call pickle.loads)."""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(_PICKLE_CANARY), "w"))


_MSGPACK_NUMPY = {
    "nd": True,
    "type": "|O",
    "kind": b"O",
    "shape": [1],
    "data": pickle.dumps(np.array([_Evil()], dtype=object)),
}

_INVALID_UTF8_STR = b"\xa2\xff\xfe"

POINTS_CASES: list[tuple[str, bytes, str]] = [
    # -- msgpack level
    ("empty payload", b"", "msgpack"),
    ("truncated map", pack(points_map())[:-5], "msgpack"),
    ("trailing bytes", pack(points_map()) + b"\x00", "msgpack"),
    ("reserved byte 0xc1", b"\xc1", "msgpack"),
    ("invalid utf-8 key", b"\x81" + _INVALID_UTF8_STR + b"\x01", "msgpack"),
    ("int map keys", pack({1: 2, "v": 1}), "msgpack"),
    ("bin map key", pack({b"v": 1}), "schema"),
    ("ext type 5 top level", b"\xd4\x05\x00", "msgpack"),
    ("ext as a value", pack({"v": 1, "x": msgpack.ExtType(7, b"abc")}), "msgpack"),
    ("timestamp ext -1", b"\xd6\xff\x00\x00\x00\x01", "msgpack"),
    ("timestamp ext -1 as seq", b"\x82\xa1v\x01\xa3seq\xd6\xff\x00\x00\x00\x01", "msgpack"),
    ("zero-length ext8", b"\xc7\x00\x05", "msgpack"),
    ("long string value", pack(points_map(source="x" * 5000)), "msgpack"),
    ("long array value", pack(points_map(extra=list(range(65)))), "msgpack"),
    # -- top level
    ("top level list", pack([1, 2, 3]), "schema"),
    ("top level int", pack(1), "schema"),
    ("top level str", pack("points"), "schema"),
    ("top level nil", pack(None), "schema"),
    ("top level bin", pack(b"\x00" * 16), "schema"),
    ("msgpack-numpy payload", pack(_MSGPACK_NUMPY), "version"),
    # -- version
    ("missing v", pack(points_map(v=DROP)), "version"),
    ("v = 2", pack(points_map(v=2)), "version"),
    ("v = 0", pack(points_map(v=0)), "version"),
    ("v as str", pack(points_map(v="1")), "version"),
    ("v as bool", pack(points_map(v=True)), "version"),
    ("v as float", pack(points_map(v=1.0)), "version"),
    ("v nested garbage", pack(points_map(v=[[1]])), "version"),
    # -- scalar fields
    ("missing seq", pack(points_map(seq=DROP)), "schema"),
    ("seq as bool", pack(points_map(seq=True)), "schema"),
    ("seq negative", pack(points_map(seq=-1)), "schema"),
    ("seq as str", pack(points_map(seq="3")), "schema"),
    ("seq as float", pack(points_map(seq=1.5)), "schema"),
    ("seq nil", pack(points_map(seq=None)), "schema"),
    ("missing stamp", pack(points_map(stamp=DROP)), "schema"),
    ("stamp as str", pack(points_map(stamp="now")), "schema"),
    ("stamp NaN", pack(points_map(stamp=math.nan)), "schema"),
    ("stamp +Inf", pack(points_map(stamp=math.inf)), "schema"),
    ("stamp -Inf", pack(points_map(stamp=-math.inf)), "schema"),
    ("stamp as bool", pack(points_map(stamp=False)), "schema"),
    ("source as int", pack(points_map(source=3)), "schema"),
    ("source nil", pack(points_map(source=None)), "schema"),
    ("frame as bin", pack(points_map(frame=b"map")), "schema"),
    ("frame as map", pack(points_map(frame={"a": 1})), "schema"),
    # -- points container
    ("missing points", pack(points_map(points=DROP)), "schema"),
    ("points as list of lists", pack(points_map(points=[[1.0, 2.0]])), "schema"),
    ("points as bare bin", pack(points_map(points=bytes(48))), "schema"),
    ("points nil", pack(points_map(points=None)), "schema"),
    ("points extra key", pack(points_map(points={**arr(), "order": "C"})), "schema"),
    ("points missing data", pack(points_map(points={"dtype": "<f8", "shape": [1, 1]})), "schema"),
    (
        "points missing dtype",
        pack(points_map(points={"shape": [1, 1], "data": bytes(8)})),
        "schema",
    ),
    ("msgpack-numpy points", pack(points_map(points=_MSGPACK_NUMPY)), "schema"),
    # -- dtype
    ("dtype O", pack(points_map(points=arr("O", data=bytes(48)))), "dtype"),
    ("dtype >f8", pack(points_map(points=arr(">f8", data=bytes(48)))), "dtype"),
    ("dtype <c16", pack(points_map(points=arr("<c16", data=bytes(96)))), "dtype"),
    ("dtype |u1", pack(points_map(points=arr("|u1", data=bytes(6)))), "dtype"),
    ("dtype U8", pack(points_map(points=arr("U8", data=bytes(192)))), "dtype"),
    ("dtype f8 without <", pack(points_map(points=arr("f8", data=bytes(48)))), "dtype"),
    ("dtype <i8", pack(points_map(points=arr("<i8", data=bytes(48)))), "dtype"),
    ("dtype as bin", pack(points_map(points=arr(b"<f8", data=bytes(48)))), "dtype"),
    ("dtype as int", pack(points_map(points=arr(8, data=bytes(48)))), "dtype"),
    ("dtype nested garbage", pack(points_map(points=arr({"a": [[[]]]}, data=b""))), "dtype"),
    # -- shape
    ("shape negative", pack(points_map(points=arr(shape=[-1, 3], data=b""))), "shape"),
    ("shape 3-D", pack(points_map(points=arr(shape=(1, 2, 3)))), "shape"),
    ("shape 1-D", pack(points_map(points=arr(shape=(6,)))), "shape"),
    ("shape 0-D", pack(points_map(points=arr(shape=()))), "shape"),
    ("shape 5-D", pack(points_map(points=arr(shape=(1, 1, 1, 1, 1)))), "shape"),
    ("shape d = 0", pack(points_map(points=arr(shape=(5, 0)))), "shape"),
    ("shape float dim", pack(points_map(points=arr(shape=[2.0, 3], data=bytes(48)))), "shape"),
    ("shape bool dim", pack(points_map(points=arr(shape=[True, 3], data=bytes(24)))), "shape"),
    ("shape as str", pack(points_map(points=arr(shape="2,3", data=bytes(48)))), "shape"),
    ("shape nil", pack(points_map(points=arr(shape=None, data=bytes(48)))), "shape"),
    ("shape as map", pack(points_map(points=arr(shape={"n": 2}, data=bytes(48)))), "shape"),
    # -- limits
    ("shape huge n", pack(points_map(points=arr(shape=[2**40, 3], data=b""))), "too_large"),
    ("shape 2**64-1", pack(points_map(points=arr(shape=[2**64 - 1, 1], data=b""))), "too_large"),
    ("huge n with d = 0", pack(points_map(points=arr(shape=[2**62, 0], data=b""))), "too_large"),
    ("n > max_points", pack(points_map(points=arr(shape=[10_000_001, 1], data=b""))), "too_large"),
    ("d > max_dim", pack(points_map(points=arr(shape=(1, 1025)))), "too_large"),
    # -- data
    ("data too short", pack(points_map(points=arr(data=bytes(47)))), "size"),
    ("data too long", pack(points_map(points=arr(data=bytes(49)))), "size"),
    ("data empty", pack(points_map(points=arr(data=b""))), "size"),
    ("data f4-sized for f8", pack(points_map(points=arr("<f8", data=bytes(24)))), "size"),
    ("data as str", pack(points_map(points=arr(data="\x00" * 48))), "size"),
    ("data as list", pack(points_map(points=arr(data=[0.0] * 6))), "size"),
    ("data nil", pack(points_map(points=arr(data=None))), "size"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [pytest.param(p, r, id=name) for name, p, r in POINTS_CASES],
)
def test_points_rejected_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode_points(payload)
    assert e.value.reason == reason, str(e.value)
    assert not _PICKLE_CANARY.exists()


def test_points_case_table_is_large_and_bases_are_valid() -> None:
    assert len(POINTS_CASES) >= 40
    assert decode_points(pack(points_map())).points.shape == (2, 3)


def test_points_custom_limits() -> None:
    payload = encode_points(np.zeros((11, 3)), seq=1, stamp=1.0)
    with pytest.raises(DecodeError) as e:
        decode_points(payload, max_points=10)
    assert e.value.reason == "too_large"
    with pytest.raises(DecodeError) as e:
        decode_points(payload, max_dim=2)
    assert e.value.reason == "too_large"
    assert decode_points(payload, max_points=11, max_dim=3).points.shape == (11, 3)


UPDATE_CASES: list[tuple[str, bytes, str]] = [
    ("top level list", pack([update_map()]), "schema"),
    ("garbage", b"\xc1\xc1", "msgpack"),
    ("missing v", pack(update_map(v=DROP)), "version"),
    ("v = 2", pack(update_map(v=2)), "version"),
    ("missing model", pack(update_map(model=DROP)), "schema"),
    ("model as bin", pack(update_map(model=b"lidar")), "schema"),
    ("seq as bool", pack(update_map(seq=True)), "schema"),
    ("seq negative", pack(update_map(seq=-3)), "schema"),
    ("stamp NaN", pack(update_map(stamp=math.nan)), "schema"),
    ("n_seen as float", pack(update_map(n_seen=1.0)), "schema"),
    ("missing n_seen", pack(update_map(n_seen=DROP)), "schema"),
    ("kind unknown", pack(update_map(kind="delta")), "schema"),
    ("kind as int", pack(update_map(kind=1)), "schema"),
    ("covariance_type unknown", pack(update_map(covariance_type="banded")), "schema"),
    ("avg_log_likelihood str", pack(update_map(avg_log_likelihood="-1")), "schema"),
    ("avg_log_likelihood inf", pack(update_map(avg_log_likelihood=math.inf)), "schema"),
    ("missing last_stamp", pack(update_map(last_stamp=DROP)), "schema"),
    ("last_stamp inf", pack(update_map(last_stamp=-math.inf)), "schema"),
    ("missing weights", pack(update_map(weights=DROP)), "schema"),
    ("weights as list", pack(update_map(weights=[0.5, 0.5])), "schema"),
    ("weights dtype O", pack(update_map(weights=arr("O", (3,), bytes(24)))), "dtype"),
    ("weights 2-D", pack(update_map(weights=arr(shape=(3, 1)))), "shape"),
    ("weights empty", pack(update_map(weights=arr(shape=(0,)))), "shape"),
    ("means K mismatch", pack(update_map(means=arr(shape=(4, 2)))), "shape"),
    ("means 1-D", pack(update_map(means=arr(shape=(3,)))), "shape"),
    ("means d = 0", pack(update_map(means=arr(shape=(3, 0)))), "shape"),
    ("covariances diag for full", pack(update_map(covariances=arr(shape=(3, 2)))), "shape"),
    ("covariances d mismatch", pack(update_map(covariances=arr(shape=(3, 3, 3)))), "shape"),
    ("covariances size", pack(update_map(covariances=arr(shape=(3, 2, 2), data=b"x"))), "size"),
    ("covariances huge", pack(update_map(covariances=arr(shape=[2**40], data=b""))), "too_large"),
    (
        "means NaN",
        pack(update_map(means=encode_array(np.full((3, 2), math.nan)))),
        "nonfinite",
    ),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [pytest.param(p, r, id=name) for name, p, r in UPDATE_CASES],
)
def test_update_rejected_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode_update(payload)
    assert e.value.reason == reason, str(e.value)


def test_update_case_base_is_valid() -> None:
    out = decode_update(pack(update_map(extension={"a": [1, 2]})))
    assert out["extension"] == {"a": [1, 2]} and out["weights"].shape == (3,)


REQUEST_CASES: list[tuple[str, bytes, str]] = [
    ("top level list", pack(["status"]), "schema"),
    ("top level str", pack("status"), "schema"),
    ("missing op", pack({"v": 1}), "schema"),
    ("op as int", pack({"v": 1, "op": 3}), "schema"),
    ("op as bin", pack({"v": 1, "op": b"status"}), "schema"),
    ("op nil", pack({"v": 1, "op": None}), "schema"),
    ("model as int", pack({"v": 1, "op": "snapshot", "model": 1}), "schema"),
    ("v = 2", pack({"v": 2, "op": "status"}), "version"),
    ("v as bool", pack({"v": True, "op": "status"}), "version"),
    ("v as str", pack({"v": "1", "op": "status"}), "version"),
    ("invalid msgpack", b"\xc1", "msgpack"),
    ("int keys", pack({1: "status"}), "msgpack"),
    ("truncated", encode_request("status")[:-1], "msgpack"),
    ("ext value", pack({"op": msgpack.ExtType(1, b"x")}), "msgpack"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [pytest.param(p, r, id=name) for name, p, r in REQUEST_CASES],
)
def test_request_rejected_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode_request(payload)
    assert e.value.reason == reason, str(e.value)


def test_no_pickle_or_msgpack_numpy_in_codec() -> None:
    source = inspect.getsource(codec)
    for needle in ("import pickle", "pickle.load", "msgpack_numpy", "import marshal"):
        assert needle not in source


# ---------------------------------------------------------------------------------------------
# Length bombs: tiny payloads that claim huge sizes, and deep nesting
# ---------------------------------------------------------------------------------------------


def _int_key_map(n: int) -> bytes:
    body = b"".join(pack(i) + b"\xc0" for i in range(n))
    return b"\xde" + struct.pack(">H", n) + body


def _nest(prefix: bytes, depth: int) -> bytes:
    return prefix * depth + b"\xc0"


BOMBS = {
    "array32": b"\xdd\xff\xff\xff\xff",
    "map32": b"\xdf\xff\xff\xff\xff",
    "str32": b"\xdb\xff\xff\xff\xff",
    "bin32": b"\xc6\xff\xff\xff\xff",
    "ext32": b"\xc9\xff\xff\xff\xff\x01",
    "array32 in points": b"\x81\xa6points\xdd\xff\xff\xff\xff",
    "bin32 as data": b"\x81\xa4data\xc6\xff\xff\xff\xff",
    "array16 max": b"\xdc\xff\xff",
    "nested arrays 1025": _nest(b"\x91", 1025),
    "nested arrays 100000": _nest(b"\x91", 100_000),
    "nested maps 1025": _nest(b"\x81\xa1a", 1025),
    "nested maps 100000": _nest(b"\x81\xa1a", 100_000),
    "map of 10000 int keys": _int_key_map(10_000),
    "map of 10000 str keys": b"\xde\x27\x10"
    + b"".join(pack(f"k{i}") + b"\xc0" for i in range(10_000)),
}


@pytest.mark.parametrize("decoder", [decode_points, decode_request, decode_update, decode_reply])
@pytest.mark.parametrize("bomb", list(BOMBS), ids=list(BOMBS))
def test_length_bombs_rejected_quickly(decoder: object, bomb: str) -> None:
    payload = BOMBS[bomb]
    times = []
    for _ in range(3):  # repeats show no state leaks between calls
        t0 = time.perf_counter()
        with pytest.raises(DecodeError) as e:
            decoder(payload)  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
        assert e.value.reason == "msgpack", str(e.value)
    # A bomb that worked would take seconds and gigabytes; the fastest of three attempts
    # keeps a busy CI machine's scheduling noise out of the measurement.
    assert min(times) < 0.05, f"{bomb}: {min(times) * 1e3:.1f} ms"


# ---------------------------------------------------------------------------------------------
# Property tests: only a valid result or DecodeError ever comes out
# ---------------------------------------------------------------------------------------------

DECODERS = [decode_points, decode_request, decode_update, decode_reply]


def _check_only_decode_error(payload: bytes) -> None:
    for decoder in DECODERS:
        try:
            result = decoder(payload)
        except DecodeError as exc:
            assert isinstance(exc.reason, str) and exc.reason
            continue
        if decoder is decode_points:
            assert isinstance(result, PointsMessage)
            assert result.points.ndim == 2 and result.points.shape[1] >= 1
            assert np.isfinite(result.points).all()
            assert result.points.dtype in (np.float32, np.float64)
            assert result.rows_dropped_nonfinite >= 0 and result.seq >= 0
            assert math.isfinite(result.stamp)
        elif decoder is decode_update:
            assert result["kind"] in codec.UPDATE_KINDS
            k, d = result["means"].shape
            assert result["weights"].shape == (k,)
            assert result["covariances"].shape == covariance_shape(result["covariance_type"], k, d)
        else:
            assert isinstance(result, dict)


@settings(max_examples=8000, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(payload: bytes) -> None:
    _check_only_decode_error(payload)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=64)
    | st.sampled_from(["<f4", "<f8", ">f8", "O", "online", "full", "tied", "status", "snapshot"])
)
_keys = st.sampled_from(
    [
        "v",
        "seq",
        "stamp",
        "points",
        "source",
        "frame",
        "dtype",
        "shape",
        "data",
        "op",
        "model",
        "kind",
        "covariance_type",
        "weights",
        "means",
        "covariances",
        "n_seen",
        "avg_log_likelihood",
        "last_stamp",
        "nd",
    ]
) | st.text(max_size=8)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(_keys | st.integers(-5, 5), children, max_size=8)
    ),
    max_leaves=40,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_fuzz_msgpack_values(value: object) -> None:
    _check_only_decode_error(pack(value))


# Near-valid payloads: right keys, random (often valid) values, so validation runs deep.
_small_shapes = st.lists(st.integers(min_value=-1, max_value=4), min_size=0, max_size=5)


@st.composite
def _array_maps(draw: st.DrawFn) -> object:
    dtype = draw(st.sampled_from(["<f4", "<f8", "<f8", ">f8", "O"]))
    shape = draw(_small_shapes)
    itemsize = 4 if dtype == "<f4" else 8
    n = math.prod(shape) if all(s >= 0 for s in shape) else 0
    exact = draw(st.booleans())
    if exact:
        values = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
        data = np.asarray(values, dtype=dtype if dtype in DTYPES else "<f8").tobytes()
        data = data[: n * itemsize] if dtype in DTYPES else data
    else:
        data = draw(st.binary(max_size=64))
    obj = {"dtype": dtype, "shape": shape, "data": data}
    if draw(st.integers(0, 9)) == 0:
        obj["extra"] = 1
    return obj


_near_scalars = _scalars | _array_maps()


@st.composite
def _mutated(draw: st.DrawFn, base: dict, depth: int = 0) -> dict:
    """`base` with a few keys replaced by random values or removed, recursing into arrays."""
    msg = dict(base)
    for key in draw(st.lists(st.sampled_from([*base, "extra"]), max_size=3, unique=True)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            msg.pop(key, None)
        elif choice == 1 and depth == 0 and isinstance(base.get(key), dict):
            msg[key] = draw(_mutated(base[key], depth + 1))
        else:
            msg[key] = draw(_near_scalars)
    return msg


_VALID_POINTS = msgpack.unpackb(
    encode_points(np.array([[1.0, np.nan], [2.0, 3.0]]), seq=3, stamp=1.0, source="a")
)
_VALID_UPDATE = update_map()
_VALID_REQUEST = {"v": 1, "op": "snapshot", "model": "lidar"}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _mutated(_VALID_POINTS),
        _mutated(_VALID_UPDATE),
        _mutated(_VALID_REQUEST),
        # Keep the envelope valid and break only an array, so the array checks run.
        st.builds(
            lambda a: {**_VALID_POINTS, "points": a},
            _array_maps() | _mutated(_VALID_POINTS["points"], 1),
        ),
        st.builds(
            lambda key, a: {**_VALID_UPDATE, key: a},
            st.sampled_from(["weights", "means", "covariances"]),
            _array_maps() | _mutated(_VALID_UPDATE["covariances"], 1),
        ),
        st.dictionaries(st.sampled_from([*_VALID_POINTS, *_VALID_UPDATE]), _near_scalars),
    )
)
def test_fuzz_near_valid(msg: dict) -> None:
    _check_only_decode_error(pack(msg))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=1, max_value=5),
    st.sampled_from([np.float32, np.float64]),
    st.data(),
)
def test_property_nonfinite_rows_counted(n: int, d: int, dtype: type, data: st.DataObject) -> None:
    values = data.draw(
        st.lists(
            st.sampled_from([0.0, 1.5, -2.0, math.nan, math.inf, -math.inf]),
            min_size=n * d,
            max_size=n * d,
        )
    )
    pts = np.asarray(values, dtype=dtype).reshape(n, d)
    msg = decode_points(encode_points(pts, seq=1, stamp=0.0))
    finite = np.isfinite(pts).all(axis=1)
    assert msg.rows_dropped_nonfinite == n - int(finite.sum())
    np.testing.assert_array_equal(msg.points, pts[finite])
    assert msg.points.shape == (int(finite.sum()), d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_finite_fast_path_drops_and_counts_like_the_row_mask(dtype: type, bad) -> None:
    # Decoding takes a whole-array shortcut when every value is finite; with and without bad
    # rows the kept rows and the count must be those of the per-row mask.
    rng = np.random.default_rng(11)
    for trial in range(20):
        X = rng.normal(size=(int(rng.integers(0, 400)), int(rng.integers(1, 5)))).astype(dtype)
        if bad is not None and len(X):
            rows = rng.choice(len(X), size=int(rng.integers(1, len(X) + 1)), replace=False)
            X[rows, rng.integers(0, X.shape[1], len(rows))] = bad
        keep = np.isfinite(X).all(axis=1)
        msg = decode_points(encode_points(X, seq=trial, stamp=1.0))
        assert msg.rows_dropped_nonfinite == len(X) - int(keep.sum())
        np.testing.assert_array_equal(msg.points, X[keep])
        assert msg.points.dtype == X.dtype


# --------------------------------------------------------------------------- error codes


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_makes_a_reply_that_round_trips(code: str) -> None:
    reply = error_reply(f"why: {code}", code)
    assert reply == {"ok": False, "error": f"why: {code}", "code": code}
    assert decode_reply(encode_reply(reply))["code"] == code


def test_error_reply_refuses_a_code_not_in_the_table() -> None:
    with pytest.raises(ValueError, match="unknown error code 'nope'"):
        error_reply("boom", "nope")


def test_the_error_codes_are_documented_in_the_protocol() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    for code in ERROR_CODES:
        assert f"`{code}`" in text, code
