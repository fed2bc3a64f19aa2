"""Wire codec of the streamgmm protocol (version 1): bytes <-> validated Python and numpy objects.

Every payload is one MessagePack map with string keys carrying ``"v": 1``. An n-dimensional
array travels as the map ``{"dtype": "<f4" | "<f8", "shape": [int, ...], "data": bin}`` holding
the little-endian values in C order, so ``len(data) == prod(shape) * itemsize``. Three kinds of
payload use it: sensor points (publishers -> daemon), mixture updates (daemon -> subscribers, on
topic ``b"gmm/" + model``) and control requests/replies (one frame in, one frame out).

Decoders treat their input as hostile: one bounded ``msgpack.unpackb`` call per payload (no
extension types, no pickle, no msgpack-numpy), then an explicit schema check. Anything that breaks
the protocol raises :class:`DecodeError`, whose ``reason`` is the label the service counts
rejections under. This module is pure: no sockets, no logging, no clocks.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

import msgpack
import numpy as np

from streamgmm.core.params import COVARIANCE_TYPES, covariance_shape

__all__ = [
    "COVARIANCE_TYPES",
    "CONTROL_OPS",
    "DTYPES",
    "PROTOCOL_VERSION",
    "UPDATE_KINDS",
    "UPDATE_TOPIC_PREFIX",
    "DecodeError",
    "PointsMessage",
    "covariance_shape",
    "decode_array",
    "decode_load",
    "decode_points",
    "decode_reply",
    "decode_request",
    "decode_update",
    "encode_array",
    "encode_points",
    "encode_reply",
    "encode_request",
    "encode_update",
    "ERROR_CODES",
    "error_reply",
    "update_topic",
]

PROTOCOL_VERSION = 1
DTYPES = ("<f4", "<f8")
UPDATE_KINDS = ("online", "refit", "snapshot")
# The daemon answers each with a handler of its dispatch table (a test keeps the two equal).
CONTROL_OPS = ("snapshot", "status", "refit", "load", "source")
UPDATE_TOPIC_PREFIX = b"gmm/"

_ARRAY_KEYS = frozenset(("dtype", "shape", "data"))

# Bounds of the msgpack unpacker. A payload of the protocol has a handful of keys, shapes of at
# most 4 ints and short strings, so anything beyond these is an attack or a bug; the limits make
# msgpack refuse a lying length header before it allocates anything.
_MAX_STR_LEN = 4096
_MAX_CONTAINER_LEN = 64
# Replies come from the daemon, and a status reply lists every model and rejection reason, so
# they get more room (still bounded).
_REPLY_MAX_STR_LEN = 1 << 16
_REPLY_MAX_CONTAINER_LEN = 4096


class DecodeError(ValueError):
    """A payload that breaks the wire protocol.

    Parameters
    ----------
    reason : str
        Short snake_case label, used as the key of the rejection counter: ``"msgpack"`` (not
        decodable msgpack, or over a length limit), ``"schema"`` (wrong top-level type, missing
        key, wrong key type or value), ``"version"`` (``v`` is not 1), ``"dtype"``, ``"shape"``,
        ``"size"`` (array ``data`` not a binary of ``prod(shape) * itemsize`` bytes),
        ``"too_large"`` (over a size limit) or ``"nonfinite"`` (non-finite mixture parameters).
    message : str
        Human-readable detail.
    """

    #: The ``seq`` and ``source`` of a point message rejected after they were read (``None``
    #: and ``""`` otherwise): the daemon's per-source accounting still sees the message, so
    #: a rejected message is not also counted as lost.
    seq: int | None = None
    source: str = ""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, str]]:
        # The default reduce would call __init__(message) only; keep the error picklable.
        return (type(self), (self.reason, str(self)))


# ---------------------------------------------------------------------------------------------
# Private helpers
# ---------------------------------------------------------------------------------------------


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _safe_unpack(
    payload: bytes,
    *,
    max_str_len: int = _MAX_STR_LEN,
    max_container_len: int = _MAX_CONTAINER_LEN,
) -> object:
    """Decode one msgpack payload with every length bounded; any failure is a 'msgpack' error."""
    if isinstance(payload, memoryview):
        n_bytes = payload.nbytes
    elif isinstance(payload, (bytes, bytearray)):
        n_bytes = len(payload)
    else:
        raise DecodeError("msgpack", f"payload must be bytes, not {type(payload).__name__}")
    try:
        # Only this call is guarded: msgpack raises a zoo of exception types (ValueError,
        # UnicodeDecodeError, StackError, ExtraData, FormatError, TypeError...), all of them a
        # malformed payload. A fresh call per payload, never a reused Unpacker after a failure.
        return msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_str_len,
            max_bin_len=n_bytes,
            max_array_len=max_container_len,
            max_map_len=max_container_len,
            max_ext_len=0,
            ext_hook=_reject_ext,
        )
    except Exception as exc:
        raise DecodeError("msgpack", f"undecodable msgpack: {type(exc).__name__}: {exc}") from None


def _pack_default(obj: object) -> object:
    # numpy scalars (np.int64, np.float32, ...) are not int/float subclasses msgpack knows.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        raise TypeError("encode numpy arrays with encode_array() before packing")
    raise TypeError(f"cannot pack {type(obj).__name__} as msgpack")


def _pack(obj: Mapping[str, object]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_pack_default)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3  # nesting shown; deeper levels print as "..."
_REPR.maxstring = _REPR.maxother = 60


def _short(value: object, limit: int = 60) -> str:
    """A clipped repr, so that hostile values never blow up an error message.

    ``reprlib`` limits the depth: msgpack nests up to 1024 levels, past Python's recursion
    limit, and a plain ``repr()`` of such a value raises RecursionError (fuzzer finding
    ``fuzz/findings/repr-recursion-*``).
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is no sequence number.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _top_map(obj: object) -> dict:
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"payload must be a msgpack map, not {type(obj).__name__}")
    # strict_map_key still lets bin keys through; the protocol wants str keys only.
    if not all(isinstance(key, str) for key in obj):
        raise DecodeError("schema", "map keys must be strings")
    return obj


def _check_version(msg: dict, *, required: bool) -> None:
    if "v" not in msg:
        if required:
            raise DecodeError("version", "missing protocol version 'v'")
        return
    v = msg["v"]
    if not _is_int(v) or v != PROTOCOL_VERSION:
        raise DecodeError("version", f"unsupported protocol version v={_short(v)}")


def _require(msg: dict, key: str) -> object:
    if key not in msg:
        raise DecodeError("schema", f"missing required key {key!r}")
    return msg[key]


def _get_count(msg: dict, key: str) -> int:
    value = _require(msg, key)
    if not _is_int(value) or value < 0:
        raise DecodeError("schema", f"{key!r} must be a non-negative int, got {_short(value)}")
    return value


def _get_float(msg: dict, key: str, *, allow_nan: bool = False) -> float:
    value = _require(msg, key)
    if not _is_number(value):
        raise DecodeError("schema", f"{key!r} must be a number, got {type(value).__name__}")
    result = float(value)
    if not (math.isfinite(result) or (allow_nan and math.isnan(result))):
        raise DecodeError("schema", f"{key!r} must be finite, got {result!r}")
    return result


def _get_str(msg: dict, key: str, default: str | None = None) -> str:
    if key not in msg and default is not None:
        return default
    value = _require(msg, key)
    if not isinstance(value, str):
        raise DecodeError("schema", f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _array_header(
    obj: object, *, max_elements: int, max_ndim: int
) -> tuple[np.dtype, tuple[int, ...], object]:
    """Check an array map up to (not including) its data: returns (dtype, shape, data)."""
    if not isinstance(obj, dict):
        raise DecodeError("schema", f"array must be a map, not {type(obj).__name__}")
    if obj.keys() != _ARRAY_KEYS:
        raise DecodeError(
            "schema", f"array map needs exactly keys dtype/shape/data, got {_short(list(obj))}"
        )
    dtype = obj["dtype"]
    # Whitelist by string before numpy sees it: np.dtype() would happily build 'O' or 'V' types.
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DecodeError("dtype", f"dtype must be one of {DTYPES}, got {_short(dtype)}")
    shape = obj["shape"]
    if not isinstance(shape, list) or len(shape) > max_ndim:
        raise DecodeError("shape", f"shape must be a list of at most {max_ndim} ints")
    if not all(_is_int(s) and s >= 0 for s in shape):
        raise DecodeError("shape", f"shape must hold non-negative ints, got {_short(shape)}")
    # Python ints cannot overflow; bounding each dim too keeps [0, 2**63] away from numpy.
    if any(s > max_elements for s in shape) or math.prod(shape) > max_elements:
        raise DecodeError("too_large", f"shape {_short(shape)} exceeds {max_elements} elements")
    return np.dtype(dtype), tuple(shape), obj["data"]


def _array_body(dtype: np.dtype, shape: tuple[int, ...], data: object) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("size", f"array data must be binary, not {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise DecodeError(
            "size", f"array data holds {len(data)} bytes, shape {list(shape)} needs {expected}"
        )
    # Zero-copy view of the received bytes (read-only when data is bytes).
    return np.frombuffer(data, dtype=dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------


def encode_array(a: np.ndarray, dtype: str | None = None) -> dict:
    """Encode a numeric array as the protocol's array map.

    Parameters
    ----------
    a : array_like
        Real numeric (float, int or bool) values.
    dtype : {"<f4", "<f8"}, optional
        Wire dtype. By default float32 input stays ``"<f4"`` and everything else becomes
        ``"<f8"``.

    Returns
    -------
    dict
        ``{"dtype": str, "shape": list[int], "data": bytes}``, little-endian, C order.

    Raises
    ------
    ValueError
        If `dtype` is not one of :data:`DTYPES`.
    TypeError
        If `a` is not real numeric (complex, object, strings...).
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"cannot encode an array of dtype {arr.dtype} (need real numbers)")
    if dtype is None:
        dtype = "<f4" if arr.dtype == np.float32 else "<f8"
    elif dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    data = arr.astype(dtype, copy=False).tobytes(order="C")
    return {"dtype": dtype, "shape": [int(s) for s in arr.shape], "data": data}


def decode_array(obj: object, *, max_elements: int = 50_000_000, max_ndim: int = 4) -> np.ndarray:
    """Validate an array map and view its data as an ndarray.

    Parameters
    ----------
    obj : object
        A decoded msgpack value, expected ``{"dtype", "shape", "data"}`` and nothing else.
    max_elements : int, optional
        Largest accepted ``prod(shape)`` (and largest single dimension).
    max_ndim : int, optional
        Largest accepted number of dimensions.

    Returns
    -------
    numpy.ndarray
        Array of dtype ``<f4`` or ``<f8`` and the given shape, a view of ``data`` (read-only
        when ``data`` is ``bytes``).

    Raises
    ------
    DecodeError
        Reason ``"schema"`` (not a map, wrong key set), ``"dtype"``, ``"shape"`` (not a list,
        too many dims, negative or non-int dims), ``"too_large"`` or ``"size"`` (data not a
        binary of exactly ``prod(shape) * itemsize`` bytes).
    """
    dtype, shape, data = _array_header(obj, max_elements=max_elements, max_ndim=max_ndim)
    return _array_body(dtype, shape, data)


# ---------------------------------------------------------------------------------------------
# 1. Sensor points
# ---------------------------------------------------------------------------------------------


# eq=False: a generated __eq__/__hash__ would compare/hash the ndarray and fail.
@dataclass(frozen=True, eq=False)
class PointsMessage:
    """One decoded sensor-points message.

    Attributes
    ----------
    seq : int
        Per-source message counter.
    stamp : float
        Sensor time in seconds.
    points : numpy.ndarray
        Shape ``(n, d)``, float32 or float64; only the rows that were entirely finite. May have
        ``n == 0`` (the caller rejects such a message as ``"empty"``).
    rows_dropped_nonfinite : int
        Rows removed because they held NaN or Inf.
    source : str
        Publisher id (``""`` when absent).
    frame : str
        Coordinate frame (``""`` when absent).
    end : bool
        An end-of-stream marker (extension key ``end``): the publisher's last message, with
        no points, sent after everything else so the daemon knows the stream is complete.
    first_seq : int or None
        On a marker (extension key ``first_seq``): the first ``seq`` of the publisher's
        run, so the daemon can count messages lost before any of them arrived.
    """

    seq: int
    stamp: float
    points: np.ndarray
    rows_dropped_nonfinite: int
    source: str = ""
    frame: str = ""
    end: bool = False
    first_seq: int | None = None


def encode_points(
    points: np.ndarray, *, seq: int, stamp: float, source: str = "", frame: str = "",
    end: bool = False, first_seq: int | None = None,
) -> bytes:
    """Encode a sensor-points payload (protocol section 1).

    Parameters
    ----------
    points : array_like, shape (n, d)
        Points; float32 travels as ``<f4``, anything else as ``<f8``. Non-finite values are sent
        as they are (the daemon drops those rows).
    seq : int
        Non-negative per-source message counter.
    stamp : float
        Finite sensor time in seconds.
    source, frame : str, optional
        Publisher id and coordinate frame.
    end : bool, optional
        Make it an end-of-stream marker (extension): ``points`` must have no rows, ``seq``
        is one above the publisher's last message.
    first_seq : int, optional
        With ``end``: the first ``seq`` the publisher sent in this run.

    Returns
    -------
    bytes
        The msgpack payload.

    Raises
    ------
    ValueError
        If `points` is not 2-D, `seq` is negative or `stamp` not finite, or a marker has
        points.
    TypeError
        If an argument has the wrong type.
    """
    arr = np.asarray(points)
    if arr.ndim != 2:
        raise ValueError(f"points must be 2-D (n, d), got shape {arr.shape}")
    seq = _as_count("seq", seq)
    stamp = _as_finite("stamp", stamp)
    if not isinstance(source, str) or not isinstance(frame, str):
        raise TypeError("source and frame must be str")
    msg = {
        "v": PROTOCOL_VERSION,
        "seq": seq,
        "stamp": stamp,
        "source": source,
        "frame": frame,
        "points": encode_array(arr),
    }
    if end:
        if arr.shape[0] != 0:
            raise ValueError("an end marker carries no points")
        msg["end"] = True
        if first_seq is not None:
            msg["first_seq"] = _as_count("first_seq", first_seq)
    return _pack(msg)


def decode_points(
    payload: bytes, *, max_points: int = 10_000_000, max_dim: int = 1024
) -> PointsMessage:
    """Decode and validate a sensor-points payload (protocol section 1).

    Unknown keys are ignored (the protocol may grow). Rows holding NaN or Inf are dropped and
    counted; the dimension is not checked against any model here.

    Parameters
    ----------
    payload : bytes
        One msgpack frame, untrusted.
    max_points : int, optional
        Largest accepted number of rows ``n``.
    max_dim : int, optional
        Largest accepted dimension ``d``.

    Returns
    -------
    PointsMessage
        With ``points`` of shape ``(n_finite, d)``, possibly empty.

    Raises
    ------
    DecodeError
        ``"msgpack"``, ``"schema"``, ``"version"``, ``"dtype"``, ``"shape"`` (not 2-D, ``d <
        1``), ``"too_large"`` (``n > max_points`` or ``d > max_dim``) or ``"size"``.
    """
    msg = _top_map(_safe_unpack(payload))
    _check_version(msg, required=True)
    seq = _get_count(msg, "seq")
    try:
        return _points_message(msg, seq, max_points, max_dim)
    except DecodeError as err:
        err.seq = seq
        source = msg.get("source", "")
        err.source = source if isinstance(source, str) else ""
        raise


def _points_message(msg: dict, seq: int, max_points: int, max_dim: int) -> PointsMessage:
    """The rest of :func:`decode_points`, once ``v`` and ``seq`` are read."""
    stamp = _get_float(msg, "stamp")
    source = _get_str(msg, "source", "")
    frame = _get_str(msg, "frame", "")
    dtype, shape, data = _array_header(
        _require(msg, "points"), max_elements=max_points * max_dim, max_ndim=2
    )
    if len(shape) != 2:
        raise DecodeError("shape", f"points must be 2-D (n, d), got shape {list(shape)}")
    n, d = shape
    end = msg.get("end", False)
    if not isinstance(end, bool):
        raise DecodeError("schema", f"'end' must be a bool, got {type(end).__name__}")
    first_seq = _get_count(msg, "first_seq") if end and "first_seq" in msg else None
    if end and n != 0:
        raise DecodeError("schema", f"an end marker carries no points, got {n} rows")
    if d < 1:
        raise DecodeError("shape", "points need d >= 1")
    if n > max_points or d > max_dim:
        raise DecodeError(
            "too_large", f"points shape {list(shape)} exceeds ({max_points}, {max_dim})"
        )
    points = _array_body(dtype, shape, data)
    n_finite = n
    # One test of the whole array first: ~7 us per 10,000 3-D points against ~150 us for the
    # per-row mask, which is only built when some value is NaN or infinite.
    if not np.isfinite(points).all():
        finite = np.isfinite(points).all(axis=1)
        n_finite = int(np.count_nonzero(finite))
        points = points[finite]
    return PointsMessage(
        seq=seq,
        stamp=stamp,
        points=points,
        rows_dropped_nonfinite=n - n_finite,
        source=source,
        frame=frame,
        end=end,
        first_seq=first_seq,
    )


# ---------------------------------------------------------------------------------------------
# 2. Mixture updates
# ---------------------------------------------------------------------------------------------


def _as_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _as_finite(name: str, value: object, *, allow_nan: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not (math.isfinite(result) or (allow_nan and math.isnan(result))):
        raise ValueError(f"{name} must be finite, got {result}")
    return result


def _check_mixture_shapes(
    covariance_type: str, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> str | None:
    """Return a description of the first shape disagreement, or None when consistent."""
    if weights.ndim != 1 or weights.shape[0] < 1:
        return f"weights must have shape (K,), K >= 1, got {weights.shape}"
    k = weights.shape[0]
    if means.ndim != 2 or means.shape[0] != k or means.shape[1] < 1:
        return f"means must have shape ({k}, d), d >= 1, got {means.shape}"
    expected = covariance_shape(covariance_type, k, means.shape[1])
    if covariances.shape != expected:
        return f"{covariance_type} covariances must have shape {expected}, got {covariances.shape}"
    return None


# The keys of a section-2 update map; anything else in it is a protocol extension.
UPDATE_KEYS = frozenset(
    (
        "v",
        "model",
        "seq",
        "stamp",
        "n_seen",
        "kind",
        "covariance_type",
        "weights",
        "means",
        "covariances",
        "avg_log_likelihood",
        "last_stamp",
    )
)


def encode_update(
    *,
    model: str,
    seq: int,
    stamp: float,
    n_seen: int,
    kind: str,
    covariance_type: str,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    avg_log_likelihood: float,
    last_stamp: float,
    **extra: object,
) -> bytes:
    """Encode a mixture update (protocol section 2); arrays travel as ``<f8``.

    Parameters
    ----------
    model : str
        Model name.
    seq : int
        Update counter of that model.
    stamp : float
        Daemon wall-clock time of the update.
    n_seen : int
        Points absorbed since the model was created.
    kind : {"online", "refit", "snapshot"}
    covariance_type : {"full", "diag", "spherical", "tied"}
    weights, means, covariances : array_like
        Shapes ``(K,)``, ``(K, d)`` and :func:`covariance_shape` ``(covariance_type, K, d)``.
    avg_log_likelihood : float
        Predictive mean log-density of the points absorbed since the last update (NaN when
        none were).
    last_stamp : float
        Latest sensor stamp absorbed (NaN accepted when none yet).
    **extra
        Protocol extensions (e.g. ``n_reseeded=2``), added to the map as they are; must be
        msgpack-able plain values.

    Returns
    -------
    bytes
        The msgpack payload.

    Raises
    ------
    ValueError
        For an unknown kind or covariance type, inconsistent shapes, non-finite parameters or
        an extra key that shadows a protocol key.
    """
    if kind not in UPDATE_KINDS:
        raise ValueError(f"kind must be one of {UPDATE_KINDS}, got {kind!r}")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}")
    if not isinstance(model, str):
        raise TypeError("model must be str")
    clash = UPDATE_KEYS.intersection(extra)
    if clash:
        raise ValueError(f"extra keys shadow protocol keys: {sorted(clash)}")
    w, mu, cov = (np.asarray(x, dtype=np.float64) for x in (weights, means, covariances))
    problem = _check_mixture_shapes(covariance_type, w, mu, cov)
    if problem is not None:
        raise ValueError(problem)
    # Refuse to publish what every subscriber would reject.
    if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise ValueError("mixture parameters must be finite")
    msg: dict[str, object] = {
        "v": PROTOCOL_VERSION,
        "model": model,
        "seq": _as_count("seq", seq),
        "stamp": _as_finite("stamp", stamp),
        "n_seen": _as_count("n_seen", n_seen),
        "kind": kind,
        "covariance_type": covariance_type,
        "weights": encode_array(w, "<f8"),
        "means": encode_array(mu, "<f8"),
        "covariances": encode_array(cov, "<f8"),
        "avg_log_likelihood": _as_finite("avg_log_likelihood", avg_log_likelihood, allow_nan=True),
        "last_stamp": _as_finite("last_stamp", last_stamp, allow_nan=True),
    }
    msg.update(extra)
    return _pack(msg)


def decode_update(payload: bytes) -> dict:
    """Decode and validate a mixture update (protocol section 2).

    Parameters
    ----------
    payload : bytes
        One msgpack frame (also the reply to a ``snapshot`` request).

    Returns
    -------
    dict
        The map, with ``weights``, ``means`` and ``covariances`` as numpy arrays (wire dtype),
        ``stamp``, ``last_stamp`` and ``avg_log_likelihood`` as float; unknown keys (protocol
        extensions) are kept as they are.

    Raises
    ------
    DecodeError
        ``"msgpack"``, ``"schema"`` (missing key, wrong type, unknown kind or covariance type;
        non-finite numbers except NaN ``avg_log_likelihood``/``last_stamp``), ``"version"``,
        ``"dtype"``, ``"shape"`` (shapes disagree with ``K = len(weights)``,
        ``d = means.shape[1]``), ``"size"``, ``"too_large"`` or ``"nonfinite"`` (a parameter
        array holds NaN or Inf).
    """
    msg = _top_map(_safe_unpack(payload))
    _check_version(msg, required=True)
    out = dict(msg)
    out["model"] = _get_str(msg, "model")
    out["seq"] = _get_count(msg, "seq")
    out["stamp"] = _get_float(msg, "stamp")
    out["n_seen"] = _get_count(msg, "n_seen")
    kind = _get_str(msg, "kind")
    if kind not in UPDATE_KINDS:
        raise DecodeError("schema", f"kind must be one of {UPDATE_KINDS}, got {_short(kind)}")
    covariance_type = _get_str(msg, "covariance_type")
    if covariance_type not in COVARIANCE_TYPES:
        raise DecodeError(
            "schema",
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {_short(covariance_type)}",
        )
    out["avg_log_likelihood"] = _get_float(msg, "avg_log_likelihood", allow_nan=True)
    out["last_stamp"] = _get_float(msg, "last_stamp", allow_nan=True)
    arrays = [decode_array(_require(msg, key)) for key in ("weights", "means", "covariances")]
    problem = _check_mixture_shapes(covariance_type, *arrays)
    if problem is not None:
        raise DecodeError("shape", problem)
    if not all(np.isfinite(a).all() for a in arrays):
        raise DecodeError("nonfinite", "mixture parameters hold NaN or Inf")
    out["weights"], out["means"], out["covariances"] = arrays
    return out


def update_topic(model: str) -> bytes:
    """Topic frame of a model's updates: ``b"gmm/" + model`` (UTF-8).

    Parameters
    ----------
    model : str
        Model name.

    Returns
    -------
    bytes
    """
    return UPDATE_TOPIC_PREFIX + model.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# 3. Control
# ---------------------------------------------------------------------------------------------


def encode_request(op: str, **fields: object) -> bytes:
    """Encode a control request ``{"v": 1, "op": op, **fields}``.

    Parameters
    ----------
    op : str
        Operation, e.g. one of :data:`CONTROL_OPS`.
    **fields
        Further keys, e.g. ``model="lidar"``.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If `fields` holds ``v``.
    """
    if "v" in fields:
        raise ValueError("'v' is set by the codec")
    return _pack({"v": PROTOCOL_VERSION, "op": op, **fields})


def decode_request(payload: bytes) -> dict:
    """Decode and validate a control request.

    Unknown ops pass (the service answers them with ``ok: false``); ``v`` may be absent.

    Parameters
    ----------
    payload : bytes
        One msgpack frame, untrusted.

    Returns
    -------
    dict
        The request map.

    Raises
    ------
    DecodeError
        ``"msgpack"``, ``"schema"`` (not a map, ``op`` missing or not a string, ``model``
        not a string) or ``"version"`` (``v`` present and not 1).
    """
    msg = _top_map(_safe_unpack(payload))
    _check_version(msg, required=False)
    _get_str(msg, "op")
    if "model" in msg:
        _get_str(msg, "model")
    return msg


def decode_load(msg: Mapping[str, object], default_covariance_type: str = "full") -> dict:
    """Validate the mixture of a ``load`` request (an extension, see docs/protocol.md).

    Parameters
    ----------
    msg : Mapping[str, object]
        A map from :func:`decode_request` with ``op == "load"``.
    default_covariance_type : str
        The shapes are checked against this type when the request names none (the
        daemon passes its model's).

    Returns
    -------
    dict
        ``weights``, ``means``, ``covariances`` (float64 arrays), ``covariance_type`` and
        ``weight`` (a float, or None when the request leaves it out).

    Raises
    ------
    DecodeError
        ``"schema"`` (a key missing or of the wrong type, ``weight`` not a positive finite
        number), ``"dtype"``, ``"shape"``, ``"size"``, ``"too_large"`` or ``"nonfinite"``.
    """
    fields = dict(msg)
    covariance_type = default_covariance_type
    if fields.get("covariance_type") is not None:
        covariance_type = _get_str(fields, "covariance_type")
    if covariance_type not in COVARIANCE_TYPES:
        raise DecodeError("schema", f"covariance_type must be one of {COVARIANCE_TYPES}, "
                          f"got {_short(covariance_type)}")
    arrays = [decode_array(_require(fields, key)).astype(np.float64)
              for key in ("weights", "means", "covariances")]
    problem = _check_mixture_shapes(covariance_type, *arrays)
    if problem is not None:
        raise DecodeError("shape", problem)
    if not all(np.isfinite(a).all() for a in arrays):
        raise DecodeError("nonfinite", "mixture parameters hold NaN or Inf")
    weight = fields.get("weight")
    if weight is not None:
        if not _is_number(weight) or not math.isfinite(weight) or weight <= 0:
            raise DecodeError("schema", "weight must be a positive number of points, got "
                              f"{_short(weight)}")
        weight = float(weight)
    return {"weights": arrays[0], "means": arrays[1], "covariances": arrays[2],
            "covariance_type": covariance_type, "weight": weight}


def encode_reply(reply: Mapping[str, object]) -> bytes:
    """Encode a control reply, adding ``"v": 1``.

    Parameters
    ----------
    reply : Mapping[str, object]
        Plain msgpack-able values; numpy arrays must already be encoded with
        :func:`encode_array` (numpy scalars are converted).

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If `reply` carries a ``v`` other than 1.
    TypeError
        If a value cannot be packed.
    """
    if reply.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise ValueError("reply carries a foreign protocol version")
    return _pack({"v": PROTOCOL_VERSION, **reply})


def decode_reply(payload: bytes) -> dict:
    """Decode a control reply (bounded like every decoder, with room for status replies).

    Parameters
    ----------
    payload : bytes
        One msgpack frame.

    Returns
    -------
    dict
        The reply map (a snapshot reply can be validated further with :func:`decode_update`).

    Raises
    ------
    DecodeError
        ``"msgpack"``, ``"schema"`` (not a map) or ``"version"`` (``v`` present and not 1).
    """
    msg = _top_map(
        _safe_unpack(
            payload,
            max_str_len=_REPLY_MAX_STR_LEN,
            max_container_len=_REPLY_MAX_CONTAINER_LEN,
        )
    )
    _check_version(msg, required=False)
    return msg


#: The machine-readable ``code`` of an ``ok: false`` reply (docs/protocol.md, "Error codes"),
#: with what it means. Clients branch on the code; the ``error`` text is for people.
ERROR_CODES: dict[str, str] = {
    "malformed_request": "the request could not be decoded (msgpack, schema or version)",
    "unknown_op": "no such operation (an older daemon may lack an extension op)",
    "unknown_model": "no model of that name; will not change while the daemon runs",
    "model_required": "the daemon has several models: the request must name one",
    "no_parameters": "the model has not seen enough points yet; retry later",
    "busy": "a refit of the model is running; retry",
    "load_refused": "the mixture of a load request does not fit the model",
    "refit_failed": "the refit raised; the model keeps its parameters",
    "bad_request": "a field of the request is missing or invalid",
    "shutting_down": "the daemon is stopping; the request was not served",
    "internal_error": "the daemon failed on the request (see its log)",
}


def error_reply(message: str, code: str = "bad_request") -> dict:
    """The reply to a failed or malformed request.

    Parameters
    ----------
    message : str
        For people: what went wrong, in English.
    code : str
        For programs: one of :data:`ERROR_CODES` (default ``"bad_request"``).

    Returns
    -------
    dict
        ``{"ok": False, "error": message, "code": code}``.

    Raises
    ------
    ValueError
        If ``code`` is not in :data:`ERROR_CODES`.
    """
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}; expected one of {', '.join(ERROR_CODES)}")
    return {"ok": False, "error": message, "code": code}
