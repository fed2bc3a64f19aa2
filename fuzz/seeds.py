"""Seed messages shared by the fuzz harness and the corpus generator.

``valid_messages()`` gives plain dicts (arrays already as protocol array maps) that every
decoder of their kind accepts; the harness mutates copies of them with the fuzzer's bytes.
``hostile_payloads()`` gives raw payloads of known attack shapes (oversized, deeply nested
and malformed messages).
Everything is deterministic, so ``make_corpus.py`` always writes the same files.
"""

from __future__ import annotations

import pickle
import struct

import msgpack
import numpy as np

from streamgmm import codec

# Model names and topics of the in-process daemon the harness drives (see fuzz_codec.py).
FITTED_MODEL = "a"
EMPTY_MODEL = "b"


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _points(n: int, d: int, dtype: str, *, seed: int, **extra: object) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "v": 1,
        "seq": seed,
        "stamp": 1700000000.0 + seed,
        "source": f"sensor-{seed}",
        "frame": "base_link",
        "points": codec.encode_array(rng.normal(size=(n, d)), dtype),
        **extra,
    }


def _update(covariance_type: str, *, k: int = 2, d: int = 2, dtype: str = "<f8",
            kind: str = "online", **extra: object) -> dict:
    rng = np.random.default_rng(k * 10 + d)
    cov = {
        "full": np.stack([np.eye(d)] * k),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
        "tied": np.eye(d),
    }[covariance_type]
    return {
        "v": 1,
        "model": FITTED_MODEL,
        "seq": 7,
        "stamp": 1700000000.5,
        "n_seen": 1234,
        "kind": kind,
        "covariance_type": covariance_type,
        "weights": codec.encode_array(np.full(k, 1.0 / k), dtype),
        "means": codec.encode_array(rng.normal(size=(k, d)), dtype),
        "covariances": codec.encode_array(cov, dtype),
        "avg_log_likelihood": -3.25,
        "last_stamp": 1700000000.25,
        **extra,
    }


def valid_messages() -> list[tuple[str, dict]]:
    """(name, message) pairs; each message is accepted by the decoder its name starts with."""
    nan_rows = _points(4, 3, "<f8", seed=3)
    arr = np.frombuffer(nan_rows["points"]["data"], dtype="<f8").reshape(4, 3).copy()
    arr[1, 2] = np.nan
    arr[3, 0] = np.inf
    nan_rows["points"] = codec.encode_array(arr, "<f8")
    return [
        ("points_f4", _points(4, 3, "<f4", seed=1)),
        ("points_f8", _points(5, 2, "<f8", seed=2)),
        ("points_f8_nonfinite_rows", nan_rows),
        ("points_f4_d1", _points(3, 1, "<f4", seed=4)),
        ("points_empty", _points(0, 2, "<f8", seed=5)),
        ("points_minimal", {"v": 1, "seq": 0, "stamp": 0,
                            "points": codec.encode_array(np.zeros((1, 2)), "<f8")}),
        ("points_extra_key", _points(2, 2, "<f8", seed=6, future={"x": [1, 2]})),
        ("update_full", _update("full")),
        ("update_diag", _update("diag", kind="refit")),
        ("update_spherical", _update("spherical", kind="snapshot", ok=True, id=3)),
        ("update_tied", _update("tied", n_reseeded=1, n_relocations=0)),
        ("update_full_f4_k3_d1", _update("full", k=3, d=1, dtype="<f4")),
        ("update_nan_loglik", {**_update("diag"), "avg_log_likelihood": float("nan"),
                               "last_stamp": float("nan")}),
        ("request_status", {"v": 1, "op": "status"}),
        ("request_status_no_v_id", {"op": "status", "id": 42}),
        ("request_snapshot_a", {"v": 1, "op": "snapshot", "model": FITTED_MODEL, "id": "q1"}),
        ("request_snapshot_b", {"v": 1, "op": "snapshot", "model": EMPTY_MODEL}),
        ("request_snapshot_no_model", {"v": 1, "op": "snapshot"}),
        ("request_refit_a", {"v": 1, "op": "refit", "model": FITTED_MODEL, "id": 1}),
        ("request_refit_b", {"v": 1, "op": "refit", "model": EMPTY_MODEL}),
        ("request_unknown_op", {"v": 1, "op": "reboot", "model": "zzz"}),
        ("reply_error", {"v": 1, **codec.error_reply("no model named 'x'")}),
        ("reply_refit_ok", {"v": 1, "ok": True, "seq": 12, "id": 1}),
        ("reply_status", {"v": 1, "ok": True, "uptime_s": 1.5,
                          "models": {FITTED_MODEL: {"n_seen": 10, "seq": 2, "fitted": True}},
                          "counters": {"messages_received": 3, "rejected": {"dim": 1}}}),
    ]


def _nest(prefix: bytes, depth: int) -> bytes:
    return prefix * depth + b"\xc0"


def hostile_payloads() -> list[tuple[str, bytes]]:
    """(name, payload) pairs of known-hostile shapes; every decoder must reject them."""
    base = _points(2, 2, "<f8", seed=9)
    valid = _pack(base)

    def with_array(**changes: object) -> bytes:
        return _pack({**base, "points": {**base["points"], **changes}})

    pickled = pickle.dumps(("harmless", 1), protocol=2)  # never loaded: payload bytes only
    return [
        ("empty", b""),
        ("never_used_byte", b"\xc1"),
        ("array32_bomb", b"\xdd\xff\xff\xff\xff"),
        ("map32_bomb", b"\xdf\xff\xff\xff\xff"),
        ("str32_bomb", b"\xdb\xff\xff\xff\xff"),
        ("bin32_bomb", b"\xc6\xff\xff\xff\xff"),
        ("ext32_bomb", b"\xc9\xff\xff\xff\xff\x01"),
        ("array32_in_points", b"\x81\xa6points\xdd\xff\xff\xff\xff"),
        ("bin32_as_data", b"\x81\xa4data\xc6\xff\xff\xff\xff"),
        ("nested_arrays_1025", _nest(b"\x91", 1025)),
        ("nested_maps_1025", _nest(b"\x81\xa1a", 1025)),
        ("map_of_100_int_keys",
         b"\xde" + struct.pack(">H", 100) + b"".join(_pack(i) + b"\xc0" for i in range(100))),
        ("bin_keys", _pack({b"v": 1, b"op": b"status"})),
        ("ext_type_5", b"\x82\xa1v\x01\xa2op\xd4\x05\x00"),
        ("timestamp_ext", b"\x82\xa1v\x01\xa5stamp\xd6\xff\x00\x00\x00\x01"),
        ("msgpack_numpy_pickle", _pack({b"nd": True, b"type": "|O", b"kind": b"O",
                                        b"shape": [1], b"data": pickled})),
        ("invalid_utf8_str", b"\x82\xa1v\x01\xa2op\xa2\xff\xfe"),
        ("trailing_data", valid + b"\xc0"),
        ("truncated", valid[:-3]),
        ("dtype_object", with_array(dtype="|O")),
        ("dtype_big_endian", with_array(dtype=">f8")),
        ("dtype_complex", with_array(dtype="<c16")),
        ("shape_negative", with_array(shape=[-1, 2])),
        ("shape_huge", with_array(shape=[2**63 - 1, 2**63 - 1])),
        ("shape_bool", with_array(shape=[True, 2])),
        ("data_size_mismatch", with_array(data=b"\x00" * 8)),
        ("data_as_str", with_array(data="AAAAAAAA")),
        ("version_2", _pack({**base, "v": 2})),
        ("version_true", _pack({**base, "v": True})),
        ("top_level_list", _pack([1, 2, 3])),
    ]
