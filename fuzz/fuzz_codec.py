#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris / libFuzzer) of the wire codec and the daemon's handlers.

Usage (any libFuzzer flag works; the first corpus directory receives new inputs)::

    python fuzz/fuzz_codec.py fuzz/work/corpus fuzz/corpus/codec -atheris_runs=1000000
    python fuzz/fuzz_codec.py fuzz/findings/*.msgpack      # replay saved inputs once each

Each input goes through three stages:

1. raw: the bytes go to ``decode_points`` (default and small limits), ``decode_request``,
   ``decode_update`` and ``decode_reply``;
2. near-valid: a ``FuzzedDataProvider`` over the same bytes picks one of the valid seed messages
   of ``seeds.py``, mutates it (drop/replace/add keys, bad versions, numbers, strings, array
   dtype/shape/data edits, consistent re-shapes, crossover between seeds, deep nesting, ext
   types, invalid UTF-8) and packs it with a small msgpack writer of its own (which also
   writes non-canonical widths and float32), optionally corrupting the bytes; the result goes
   to every decoder, so the validation past the msgpack layer gets coverage;
3. daemon: the raw payload, and then a short session (1 to 8 steps) of near-valid payloads, are
   handed to ``Service._handle_control`` (as a control request) and ``Service._accept`` (as a
   point message on a model's topic) of an in-process daemon with two models, one fitted, one
   not, and fake sockets. Its counters and per-source sequence trackers are reset before the
   raw payload and before the session, so every crash file replays on its own.

Stages 1 and 2 decode the same bytes: libFuzzer's mutations act on raw msgpack (the seeds are
valid messages) and on the mutation choices at once.

Only a valid result or ``codec.DecodeError`` may come out of a decoder, and every result must
satisfy the documented invariants (finite points of shape (n, d >= 1), consistent mixture
shapes...). The daemon handlers must not raise, must answer every request except an accepted
refit with exactly one reply that ``decode_reply`` accepts (and ``decode_update`` too for a
successful snapshot), and must keep ``received == applied + sum(rejected)``. Anything else is an
uncaught exception, i.e. a finding (libFuzzer writes the input to ``crash-<sha1>``).

``STREAMGMM_FUZZ_KNOWN=<id>[,<id>...]`` tolerates triaged findings (see ``KNOWN`` below) so a
run can go on looking for new ones; hits are counted on stderr (at powers of two). Never set
it in CI.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import atheris

# Heavy dependencies are imported first, uninstrumented: only streamgmm's code is instrumented.
import msgpack  # noqa: F401
import numpy as np
import zmq  # noqa: F401

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parent))

with atheris.instrument_imports(include=["streamgmm"]):
    from streamgmm import codec
    from streamgmm.daemon.accounting import Counters, SourceTracker
    from streamgmm.daemon.config import parse_config
    from streamgmm.daemon.service import Service
    from streamgmm.daemon.transport import ControlRequest

from seeds import EMPTY_MODEL, FITTED_MODEL, valid_messages  # noqa: E402

DecodeError = codec.DecodeError

# ---------------------------------------------------------------------------------------------
# Past findings (both fixed), tolerated only when named in STREAMGMM_FUZZ_KNOWN.
# ---------------------------------------------------------------------------------------------


def _raised_in(exc: BaseException, function: str, filename_end: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == function and code.co_filename.endswith(filename_end):
            return True
        tb = tb.tb_next
    return False


KNOWN = {
    # fuzz/findings/repr-recursion-*: repr() of a ~1000-deep nested value in codec._short.
    "repr-recursion": lambda exc: isinstance(exc, RecursionError)
    and _raised_in(exc, "_short", os.path.join("streamgmm", "codec.py")),
    # fuzz/findings/counter-overflow-*: messages_lost grows past 2**64 - 1 (sequence jumps on
    # the ingest socket), then encode_reply cannot pack the status reply.
    "counter-overflow": lambda exc: isinstance(exc, TypeError)
    and "cannot pack int" in str(exc)
    and _raised_in(exc, "_pack_default", os.path.join("streamgmm", "codec.py")),
}
_TOLERATED = [k for k in os.environ.get("STREAMGMM_FUZZ_KNOWN", "").split(",") if k]
for _k in _TOLERATED:
    if _k not in KNOWN:
        raise SystemExit(f"STREAMGMM_FUZZ_KNOWN: unknown id {_k!r}; known: {sorted(KNOWN)}")
_known_hits = dict.fromkeys(_TOLERATED, 0)


def _tolerated(exc: BaseException) -> bool:
    for k in _TOLERATED:
        if KNOWN[k](exc):
            _known_hits[k] += 1
            n = _known_hits[k]
            if n & (n - 1) == 0:  # 1, 2, 4, 8...: libFuzzer ends with exit(), not atexit
                print(f"#known finding {k!r} tolerated {n} times", file=sys.stderr, flush=True)
            return True
    return False


class Finding(AssertionError):
    """A decoder or handler broke its contract."""


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise Finding(what)


# ---------------------------------------------------------------------------------------------
# Stage 1: decoders and their result invariants
# ---------------------------------------------------------------------------------------------


def _check_points(msg: codec.PointsMessage, max_points: int, max_dim: int) -> None:
    _expect(isinstance(msg, codec.PointsMessage), f"decode_points returned {type(msg)}")
    p = msg.points
    _expect(isinstance(p, np.ndarray) and p.ndim == 2, f"points shape {getattr(p, 'shape', p)}")
    _expect(1 <= p.shape[1] <= max_dim and p.shape[0] <= max_points, f"points shape {p.shape}")
    _expect(p.dtype in (np.float32, np.float64), f"points dtype {p.dtype}")
    _expect(bool(np.isfinite(p).all()), "non-finite value in decoded points")
    _expect(type(msg.seq) is int and msg.seq >= 0, f"seq {msg.seq!r}")
    _expect(type(msg.stamp) is float and math.isfinite(msg.stamp), f"stamp {msg.stamp!r}")
    _expect(type(msg.rows_dropped_nonfinite) is int and msg.rows_dropped_nonfinite >= 0,
            f"rows_dropped_nonfinite {msg.rows_dropped_nonfinite!r}")
    _expect(isinstance(msg.source, str) and isinstance(msg.frame, str), "source/frame not str")


def _check_update(msg: dict) -> None:
    _expect(isinstance(msg, dict), f"decode_update returned {type(msg)}")
    _expect(msg.get("v") == 1 and msg["v"] is not True, f"v {msg.get('v')!r}")
    _expect(isinstance(msg["model"], str), "model not str")
    _expect(msg["kind"] in codec.UPDATE_KINDS, f"kind {msg['kind']!r}")
    for key in ("seq", "n_seen"):
        _expect(type(msg[key]) is int and msg[key] >= 0, f"{key} {msg[key]!r}")
    _expect(type(msg["stamp"]) is float and math.isfinite(msg["stamp"]), "stamp")
    for key in ("avg_log_likelihood", "last_stamp"):
        v = msg[key]
        _expect(type(v) is float and (math.isfinite(v) or math.isnan(v)), f"{key} {v!r}")
    w, mu, cov = msg["weights"], msg["means"], msg["covariances"]
    _expect(all(isinstance(a, np.ndarray) for a in (w, mu, cov)), "parameters not arrays")
    _expect(mu.ndim == 2 and mu.shape[1] >= 1, f"means shape {mu.shape}")
    k, d = mu.shape
    _expect(w.shape == (k,) and k >= 1, f"weights shape {w.shape}")
    _expect(cov.shape == codec.covariance_shape(msg["covariance_type"], k, d),
            f"covariances shape {cov.shape}")
    _expect(all(a.dtype in (np.float32, np.float64) for a in (w, mu, cov)), "param dtype")
    _expect(all(bool(np.isfinite(a).all()) for a in (w, mu, cov)), "non-finite parameters")


def _check_request(msg: dict) -> None:
    _expect(isinstance(msg, dict) and all(isinstance(key, str) for key in msg), "request map")
    _expect(isinstance(msg["op"], str), "op not str")
    _expect("model" not in msg or isinstance(msg["model"], str), "model not str")
    _expect("v" not in msg or (msg["v"] == 1 and type(msg["v"]) is int), "request v")


def _check_reply(msg: dict) -> None:
    _expect(isinstance(msg, dict) and all(isinstance(key, str) for key in msg), "reply map")
    _expect("v" not in msg or (msg["v"] == 1 and type(msg["v"]) is int), "reply v")


def _decode_error(exc: DecodeError) -> None:
    _expect(isinstance(exc.reason, str) and bool(exc.reason), f"bad reason {exc.reason!r}")


def _run_decoders(payload: bytes) -> None:
    for max_points, max_dim in ((10_000_000, 1024), (8, 4)):
        try:
            msg = codec.decode_points(payload, max_points=max_points, max_dim=max_dim)
        except DecodeError as exc:
            _decode_error(exc)
        else:
            _check_points(msg, max_points, max_dim)
    for decoder, check in ((codec.decode_update, _check_update),
                           (codec.decode_request, _check_request),
                           (codec.decode_reply, _check_reply)):
        try:
            result = decoder(payload)
        except DecodeError as exc:
            _decode_error(exc)
        else:
            check(result)


# ---------------------------------------------------------------------------------------------
# Stage 2: near-valid messages built with FuzzedDataProvider
# ---------------------------------------------------------------------------------------------


class Raw:
    """Bytes spliced as they are into the msgpack output (deep nesting, ext, bad UTF-8)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


SEEDS = [msg for _, msg in valid_messages()]
SEED_KEYS = sorted({key for msg in SEEDS for key in msg})
ARRAY_KEYS = ("points", "weights", "means", "covariances")
INTERESTING_INTS = [0, 1, -1, 2, 3, 4, 7, 8, 9, 63, 64, 65, 127, 128, 255, 256, 1024, 1025,
                    4096, 65535, 65536, 2**31 - 1, 2**31, 2**32, 10_000_000, 10_000_001,
                    50_000_000, 50_000_001, 10_240_000_000, 2**53 + 1, 2**63 - 1, 2**63,
                    2**64 - 1, -(2**31), -(2**63)]
INTERESTING_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, math.nan, math.inf, -math.inf, 1e308,
                      -1e308, 5e-324, 2.0**63, 2.0**64, 1e16, 3.4028235e38]
INTERESTING_STRS = ["", "v", "op", "model", "status", "snapshot", "refit", "online",
                    *codec.COVARIANCE_TYPES, *codec.DTYPES, ">f8", ">f4", "<f2", "|O", "O",
                    "<c16", "<i8", "<u1", "|V8", "<U8", "f8", "float64", "d", "|b1", "<M8[s]",
                    FITTED_MODEL, EMPTY_MODEL, "a" * 4096, "a" * 4097, "\u00e9\U0001f600",
                    "\x00", *SEED_KEYS]
SEQ_JUMPS = [0, 1, 2, 3, 1000, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
DTYPE_CHOICES = ["<f4", "<f8", ">f8", ">f4", "<f2", "|O", "<c16", "<i8", "|V8", "<U2", "f8",
                 "<f4 ", "<F8", "<f16"]
SPECIAL_F8 = [struct.pack("<d", x) for x in (math.nan, math.inf, -math.inf, 0.0, 1e308, -1e308,
                                             5e-324, 1.0)]
SPECIAL_F4 = [struct.pack("<f", x) for x in (math.nan, math.inf, -math.inf, 0.0, 3.4e38, 1.0)]
SPECIAL_F8.append(b"\xff\xff\xff\xff\xff\xff\xff\xff")  # a NaN with payload and sign set
SPECIAL_F4.append(b"\x01\x00\x80\x7f")  # signalling NaN


def _pick(fdp: atheris.FuzzedDataProvider, seq):
    return seq[fdp.ConsumeIntInRange(0, len(seq) - 1)]


def _copy(obj):
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def _deep(fdp: atheris.FuzzedDataProvider) -> Raw:
    depth = fdp.ConsumeIntInRange(0, 1100)
    prefix = _pick(fdp, [b"\x91", b"\x81\xa1a", b"\xdc\x00\x01", b"\x92\xc0"])
    return Raw(prefix * depth + b"\xc0")


def _gen_value(fdp: atheris.FuzzedDataProvider, depth: int):
    kind = fdp.ConsumeIntInRange(0, 15 if depth > 0 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-40, 300)
    if kind == 3:
        return _pick(fdp, INTERESTING_INTS)
    if kind == 4:
        return fdp.ConsumeInt(8)
    if kind == 5:
        return fdp.ConsumeFloat()
    if kind == 6:
        return _pick(fdp, INTERESTING_FLOATS)
    if kind == 7:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 24))
    if kind == 8:
        return _pick(fdp, INTERESTING_STRS)
    if kind == 9:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    if kind == 10:
        return [_gen_value(fdp, depth - 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 11:
        return {_gen_key(fdp): _gen_value(fdp, depth - 1)
                for _ in range(fdp.ConsumeIntInRange(0, 4))}
    if kind == 12:
        return _gen_array(fdp)
    if kind == 13:
        return _deep(fdp)
    if kind == 14:
        code = fdp.ConsumeIntInRange(-128, 127)
        return Raw(b"\xc7" + bytes([fdp.ConsumeIntInRange(0, 16)]) + struct.pack("b", code)
                   + fdp.ConsumeBytes(16))
    # 15: a str header over bytes that are not (necessarily) UTF-8
    blob = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    return Raw(bytes([0xA0 | len(blob)]) + blob)


def _gen_key(fdp: atheris.FuzzedDataProvider):
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind <= 2:
        return _pick(fdp, INTERESTING_STRS if kind else SEED_KEYS)
    if kind == 3:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12))
    if kind == 4:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))  # bin key: msgpack allows it
    return _pick(fdp, [0, 1, -1, None, True, 1.5])  # refused by strict_map_key


def _array_data(fdp: atheris.FuzzedDataProvider, dtype: str, n_items: int) -> bytes:
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0 or dtype not in codec.DTYPES:
        size = 4 if dtype in ("<f4", ">f4") else 8
        return fdp.ConsumeBytes(n_items * size).ljust(n_items * size, b"\x00")
    special = SPECIAL_F4 if dtype == "<f4" else SPECIAL_F8
    if mode == 1:
        ones = special[-2] if dtype == "<f8" else struct.pack("<f", 1.0)
        data = bytearray(ones * n_items)
        size = len(ones)
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            if n_items:
                i = fdp.ConsumeIntInRange(0, n_items - 1)
                data[i * size:(i + 1) * size] = _pick(fdp, special)
        return bytes(data)
    return b"".join(_pick(fdp, special) for _ in range(n_items))


def _gen_array(fdp: atheris.FuzzedDataProvider) -> dict:
    dtype = _pick(fdp, DTYPE_CHOICES[:4]) if fdp.ConsumeBool() else _pick(fdp, DTYPE_CHOICES)
    shape = [fdp.ConsumeIntInRange(0, 5) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {"dtype": dtype, "shape": shape, "data": _array_data(fdp, dtype, math.prod(shape))}


def _mutate_array(fdp: atheris.FuzzedDataProvider, arr: dict) -> object:
    op = fdp.ConsumeIntInRange(0, 11)
    if op == 0:
        arr["dtype"] = _pick(fdp, DTYPE_CHOICES)
    elif op == 1:
        arr["dtype"] = _gen_value(fdp, 1)
    elif op == 2 and isinstance(arr.get("shape"), list) and arr["shape"]:
        arr["shape"][fdp.ConsumeIntInRange(0, len(arr["shape"]) - 1)] = (
            _pick(fdp, INTERESTING_INTS) if fdp.ConsumeBool() else _gen_value(fdp, 1))
    elif op == 3 and isinstance(arr.get("shape"), list):
        if arr["shape"] and fdp.ConsumeBool():
            arr["shape"].pop()
        else:
            arr["shape"].append(fdp.ConsumeIntInRange(0, 3))
    elif op == 4:
        arr["shape"] = _gen_value(fdp, 2)
    elif op == 5 and isinstance(arr.get("data"), bytes):
        cut = fdp.ConsumeIntInRange(0, len(arr["data"]))
        arr["data"] = arr["data"][:cut] if fdp.ConsumeBool() else arr["data"] + bytes(cut % 9)
    elif op == 6:
        arr["data"] = _gen_value(fdp, 1)
    elif op == 7 and isinstance(arr.get("data"), bytes) and arr.get("dtype") in codec.DTYPES:
        n = len(arr["data"]) // (4 if arr["dtype"] == "<f4" else 8)
        arr["data"] = _array_data(fdp, arr["dtype"], n)
    elif op == 8:
        arr[_gen_key(fdp)] = _gen_value(fdp, 1)
    elif op == 9 and arr:
        del arr[_pick(fdp, list(arr))]
    elif op == 10:
        return _gen_array(fdp)
    else:  # change dtype but keep the byte count consistent with the shape
        dtype = _pick(fdp, list(codec.DTYPES))
        shape = arr.get("shape")
        if (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)
                and math.prod(shape) <= 4096):
            arr["dtype"] = dtype
            arr["data"] = _array_data(fdp, dtype, math.prod(shape))
    return arr


def _reshape_mixture(fdp: atheris.FuzzedDataProvider, msg: dict) -> None:
    """Re-draw K, d and the covariance type with self-consistent (or off-by-one) arrays."""
    k, d = fdp.ConsumeIntInRange(0, 4), fdp.ConsumeIntInRange(0, 4)
    ctype = _pick(fdp, list(codec.COVARIANCE_TYPES))
    dtype = _pick(fdp, list(codec.DTYPES))
    shapes = {"weights": [k], "means": [k, d],
              "covariances": list(codec.covariance_shape(ctype, k, d))}
    if fdp.ConsumeBool():  # knock one dimension off by one
        key = _pick(fdp, list(shapes))
        if shapes[key]:
            i = fdp.ConsumeIntInRange(0, len(shapes[key]) - 1)
            shapes[key][i] = max(0, shapes[key][i] + _pick(fdp, [-1, 1]))
    msg["covariance_type"] = ctype
    for key, shape in shapes.items():
        msg[key] = {"dtype": dtype, "shape": shape,
                    "data": _array_data(fdp, dtype, math.prod(shape))}


def _mutate(fdp: atheris.FuzzedDataProvider, msg: dict) -> object:
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        if not fdp.remaining_bytes():
            break
        op = fdp.ConsumeIntInRange(0, 10)
        keys = list(msg)
        if op == 0 and keys:
            del msg[_pick(fdp, keys)]
        elif op == 1 and keys:
            msg[_pick(fdp, keys)] = _gen_value(fdp, 3)
        elif op == 2:
            msg[_gen_key(fdp)] = _gen_value(fdp, 2)
        elif op == 3:
            present = [key for key in ARRAY_KEYS if isinstance(msg.get(key), dict)]
            if present:
                key = _pick(fdp, present)
                msg[key] = _mutate_array(fdp, msg[key])
        elif op == 4 and keys:
            msg[_pick(fdp, keys)] = (_pick(fdp, INTERESTING_INTS) if fdp.ConsumeBool()
                                     else _pick(fdp, INTERESTING_FLOATS))
        elif op == 5 and keys:
            msg[_pick(fdp, keys)] = _pick(fdp, INTERESTING_STRS)
        elif op == 6:
            msg["v"] = _pick(fdp, [1, 0, 2, True, 1.0, "1", None, -1, 2**64 - 1, b"\x01"])
        elif op == 7:
            other = _pick(fdp, SEEDS)
            key = _pick(fdp, list(other))
            msg[key] = _copy(other[key])
        elif op == 8:
            _reshape_mixture(fdp, msg)
        elif op == 9:  # a publisher's sequence: gaps, restarts, wrap-around, one of 2 sources
            msg["seq"] = _pick(fdp, SEQ_JUMPS)
            msg["source"] = _pick(fdp, ["s", "t"])
        else:
            return _gen_value(fdp, 3) if fdp.ConsumeBool() else [msg]  # not a map at all
    return msg


# A small msgpack writer: canonical or widest headers, float64 or float32, Raw splices.


def _header(n: int, fix: int | None, fix_max: int, codes: tuple[int, int, int], wide: bool,
            no8: bool = False) -> bytes:
    if not wide and fix is not None and n <= fix_max:
        return bytes([fix | n])
    if not wide and n < 256 and not no8:
        return bytes([codes[0], n])
    if not wide and n < 65536:
        return bytes([codes[1]]) + struct.pack(">H", n)
    return bytes([codes[2]]) + struct.pack(">I", n)


def _write(obj, out: bytearray, wide: bool, f32: bool) -> None:
    if isinstance(obj, Raw):
        out += obj.data
    elif obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        if not wide and 0 <= obj < 128:
            out.append(obj)
        elif not wide and -32 <= obj < 0:
            out += struct.pack("b", obj)
        elif obj >= 0:
            out += b"\xcf" + struct.pack(">Q", obj & (2**64 - 1))
        else:
            out += b"\xd3" + struct.pack(">q", max(obj, -(2**63)))
    elif isinstance(obj, float):
        if f32:
            try:
                out += b"\xca" + struct.pack(">f", obj)
                return
            except OverflowError:
                pass
        out += b"\xcb" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")  # lone surrogates: invalid UTF-8 on purpose
        out += _header(len(data), 0xA0, 31, (0xD9, 0xDA, 0xDB), wide) + data
    elif isinstance(obj, (bytes, bytearray)):
        out += _header(len(obj), None, 0, (0xC4, 0xC5, 0xC6), wide) + obj
    elif isinstance(obj, list):
        out += _header(len(obj), 0x90, 15, (0, 0xDC, 0xDD), wide, no8=True)
        for item in obj:
            _write(item, out, wide, f32)
    elif isinstance(obj, dict):
        out += _header(len(obj), 0x80, 15, (0, 0xDE, 0xDF), wide, no8=True)
        for key, value in obj.items():
            _write(key, out, wide, f32)
            _write(value, out, wide, f32)
    else:
        raise TypeError(f"harness bug: cannot write {type(obj).__name__}")


def _near_valid(fdp: atheris.FuzzedDataProvider) -> tuple[object, bytes]:
    """(the mutated message, its bytes, possibly corrupted)."""
    msg = _mutate(fdp, _copy(_pick(fdp, SEEDS)))
    out = bytearray()
    _write(msg, out, wide=fdp.ConsumeIntInRange(0, 7) == 0, f32=fdp.ConsumeIntInRange(0, 3) == 0)
    corrupt = fdp.ConsumeIntInRange(0, 11)
    if corrupt == 0 and out:
        del out[fdp.ConsumeIntInRange(0, len(out) - 1):]
    elif corrupt == 1 and out:
        out[fdp.ConsumeIntInRange(0, len(out) - 1)] = fdp.ConsumeIntInRange(0, 255)
    elif corrupt == 2:
        out += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8)) or b"\xc0"
    return msg, bytes(out)


# ---------------------------------------------------------------------------------------------
# Stage 3: the daemon's control and ingest handlers, in process, with fake sockets
# ---------------------------------------------------------------------------------------------


class _FakeTransport:
    def __init__(self) -> None:
        self.replies: list[bytes] = []
        self.published: list[tuple[bytes, bytes]] = []

    def reply(self, request: ControlRequest, payload: bytes) -> None:
        self.replies.append(payload)

    def publish(self, topic: bytes, payload: bytes) -> None:
        self.published.append((topic, payload))


class _Future:
    def done(self) -> bool:
        return False


class _FakeExecutor:
    """Refits are accepted but never run (their numerics are not what is fuzzed here)."""

    def submit(self, *args, **kwargs) -> _Future:
        return _Future()


def _make_service() -> Service:
    common = {"dim": 2, "components": 2, "publish_every_s": 60.0, "refit_every_s": 0.0,
              "window_points": 64, "max_points_per_message": 1000}
    config = parse_config({
        "service": {"ingest": ["inproc://fuzz-ingest"], "publish": "inproc://fuzz-publish",
                    "control": "inproc://fuzz-control"},
        "model": [{"name": FITTED_MODEL, "topic": "points/a", **common},
                  {"name": EMPTY_MODEL, "topic": "points/b", **common, "covariance_type": "diag"}],
    })
    svc = Service(config)
    svc.transport = _FakeTransport()
    svc.executor = _FakeExecutor()
    rng = np.random.default_rng(0)
    svc.models[0].absorb(rng.normal(size=(50, 2)), 1.0)
    if not svc.models[0].fitted or svc.models[1].fitted:
        raise SystemExit("harness setup: model a should be fitted and model b not")
    return svc


SERVICE = _make_service()
TOPICS = [b"points/a", b"points/b", b"points/ab", b"points/c", b""]


def _reset_service() -> None:
    """Every input starts from the same daemon state, so a crash file replays on its own."""
    SERVICE.counters = Counters()
    SERVICE.sources = SourceTracker()
    SERVICE.transport.replies.clear()
    SERVICE.transport.published.clear()


def _control(payload: bytes) -> None:
    transport: _FakeTransport = SERVICE.transport
    transport.replies.clear()
    waiting_before = sum(len(m.refit_waiters) for m in SERVICE.models)
    SERVICE._handle_control(ControlRequest(envelope=(b"peer", b""), payload=payload, n_frames=3))
    waiting = sum(len(m.refit_waiters) for m in SERVICE.models) - waiting_before
    _expect(len(transport.replies) + waiting == 1,
            f"{len(transport.replies)} replies and {waiting} queued refit waiters for one request")
    for reply in transport.replies:
        _expect(isinstance(reply, bytes), f"reply is {type(reply).__name__}")
        try:
            decoded = codec.decode_reply(reply)
        except DecodeError as exc:
            raise Finding(f"daemon reply rejected by decode_reply: {exc.reason}: {exc}") from None
        _expect(isinstance(decoded.get("ok"), bool), "reply without a boolean 'ok'")
        if decoded["ok"] and decoded.get("kind") == "snapshot":
            try:
                _check_update(codec.decode_update(reply))
            except DecodeError as exc:
                raise Finding(f"snapshot reply rejected by decode_update: {exc}") from None
    for model in SERVICE.models:  # refits are never run: forget them
        model.refit_waiters.clear()
        model.refit_future = None
        model.pending, model.pending_points = [], 0


def _ingest(topic: bytes, payload: bytes) -> None:
    c = SERVICE.counters
    received, applied = c.messages_received, c.messages_applied
    rejected = sum(c.rejected.values())
    batches: dict = {}
    SERVICE._accept([topic, payload], batches)
    _expect(c.messages_received == received + 1, "messages_received not incremented")
    delta = (c.messages_applied - applied) + (sum(c.rejected.values()) - rejected)
    _expect(delta == 1, f"message counted {delta} times in applied + rejected")
    for index, parts in batches.items():
        dim = SERVICE.models[index].config.dim
        for X, stamp in parts:
            _expect(X.ndim == 2 and X.shape[1] == dim and len(X) >= 1, f"batch {X.shape}")
            _expect(bool(np.isfinite(X).all()) and math.isfinite(stamp), "non-finite batch")


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _guarded(step, *args) -> bool:
    """Run one step; False when a tolerated known finding cut it short."""
    try:
        step(*args)
    except Finding:
        raise
    except Exception as exc:
        if not _tolerated(exc):
            raise
        return False
    return True


MAX_STEPS = 8
STATUS_REQUEST = codec.encode_request("status")


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    # Stage 1 + 3 on the raw bytes: decoders, then the same bytes as a control request and as
    # a point message, each against a fresh daemon state.
    _guarded(_run_decoders, data)
    _reset_service()
    _guarded(_control, data)
    _guarded(_ingest, TOPICS[len(data) % 2], data)
    # Stage 2 + 3: the same bytes read as choices build a short session: new near-valid
    # messages, the last map re-sent with another sequence number, status polls. Each payload
    # is decoded, then sent to the daemon as a point message or a control request; the daemon
    # state carries over between the steps of one input (sequence gaps, counters).
    _reset_service()
    fdp = atheris.FuzzedDataProvider(data)
    last: dict | None = None
    for _ in range(fdp.ConsumeIntInRange(1, MAX_STEPS)):
        step = fdp.ConsumeIntInRange(0, 4)
        if step == 3 and last is not None:  # the same publisher, a later (or earlier) message
            last = {**last, "seq": _pick(fdp, SEQ_JUMPS)}
            out = bytearray()
            _write(last, out, wide=False, f32=False)
            _guarded(_run_decoders, bytes(out)) and _guarded(_ingest, TOPICS[0], bytes(out))
            continue
        if step == 4:
            _guarded(_control, STATUS_REQUEST)
            continue
        msg, payload = _near_valid(fdp)
        if isinstance(msg, dict):
            last = msg
        if not _guarded(_run_decoders, payload):
            continue
        route = fdp.ConsumeIntInRange(0, 3)
        if route < 2:
            _guarded(_ingest, TOPICS[route], payload)
        elif route == 2:
            _guarded(_control, payload)
        else:
            _guarded(_ingest, _pick(fdp, TOPICS), payload)
        if not fdp.remaining_bytes():
            break


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
