"""Crash-safe checkpoints of a model's streaming state.

A checkpoint file is a fixed little-endian header followed by a msgpack payload::

    offset  size  field
    0       8     magic b"SGMMCKPT"
    8       4     u32 format version (1)
    12      8     u64 payload length in bytes
    20      4     u32 CRC-32 (``zlib.crc32``) of the payload
    24      n     payload: the state as a msgpack map with string keys

Values in the state may be ``None``, ``bool``, ``int`` (any size), ``float``, ``str``,
``bytes``, lists (tuples are stored as lists), dicts with string keys, numpy arrays and numpy
scalars. Three msgpack extension types carry what msgpack has no type for:

* ext 1, an ndarray: a msgpack array ``[dtype, shape, data]`` where ``dtype`` is a
  little-endian dtype string from a whitelist of plain numeric types (``"<f8"``, ``"|u1"``,
  ...), ``shape`` a list of ints and ``data`` the C-order bytes. Decoding checks
  ``len(data) == prod(shape) * itemsize`` and never unpickles anything.
* ext 2, an int outside msgpack's 64-bit range (numpy ``Generator`` states hold 128-bit
  ints): its two's-complement little-endian bytes.
* ext 3, a numpy scalar: encoded like ext 1 with shape ``[]``, decoded back to a scalar.

Using extension types rather than tagged maps means no user dict can be mistaken for an
array, whatever its keys.

Saving writes ``<path>.tmp`` in the same directory, fsyncs it, rotates the older generations
(``path`` -> ``path.1`` -> ``path.2`` ...), atomically replaces ``path`` and fsyncs the
directory. Loading tries ``path``, then ``path.1`` ...; a damaged file is renamed aside to
``<file>.corrupt`` (never overwriting an earlier one) and the next older generation is tried.
This module only touches files: it returns warnings as strings for the caller to log.
"""

from __future__ import annotations

import errno
import math
import os
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "CheckpointError",
    "decode_state",
    "encode_state",
    "find_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

MAGIC = b"SGMMCKPT"
FORMAT_VERSION = 1
# magic, format version, payload length, CRC-32 of the payload.
_HEADER = struct.Struct("<8sIQI")
HEADER_SIZE = _HEADER.size  # 24

_EXT_NDARRAY = 1
_EXT_BIGINT = 2
_EXT_NPSCALAR = 3

# Plain numeric dtypes only, stored little-endian: no object, string, void or structured
# dtypes, so decoding can never build anything but a numeric buffer.
_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in (
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.bool_,
    )
)

_INT_MIN = -(2**63)  # msgpack's native integer range is [-2**63, 2**64 - 1]
_UINT_MAX = 2**64 - 1
_MAX_NDIM = 64


class CheckpointError(Exception):
    """A checkpoint could not be written, or a blob is not a valid checkpoint payload."""


# ----------------------------------------------------------------------------- pure encoding


def _array_parts(arr: np.ndarray) -> list[Any]:
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    if dtype.str not in _DTYPES:
        raise TypeError(f"cannot checkpoint an array of dtype {arr.dtype}")
    data = np.ascontiguousarray(arr, dtype=dtype)
    return [dtype.str, list(arr.shape), data.tobytes()]


def _to_msgpack(obj: Any, where: str) -> Any:
    """Turn a state value into objects msgpack packs natively, or ExtType."""
    # numpy scalars first: np.float64 subclasses float and would lose its dtype otherwise.
    if isinstance(obj, np.generic):
        return msgpack.ExtType(_EXT_NPSCALAR, _packb(_array_parts(np.asarray(obj))))
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(_EXT_NDARRAY, _packb(_array_parts(obj)))
    if obj is None or isinstance(obj, (bool, float, str, bytes)):
        return obj
    if isinstance(obj, int):
        if _INT_MIN <= obj <= _UINT_MAX:
            return obj
        nbytes = (obj.bit_length() + 8) // 8  # + sign bit
        return msgpack.ExtType(_EXT_BIGINT, obj.to_bytes(nbytes, "little", signed=True))
    if isinstance(obj, (list, tuple)):
        return [_to_msgpack(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"checkpoint keys must be str, got {key!r} in {where or 'state'}")
            out[key] = _to_msgpack(value, f"{where}.{key}" if where else key)
        return out
    raise TypeError(f"cannot checkpoint {type(obj).__name__} at {where or 'state'}")


def _packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _array_from_parts(blob: bytes) -> np.ndarray:
    parts = msgpack.unpackb(blob, raw=False, use_list=True)
    if not (isinstance(parts, list) and len(parts) == 3):
        raise ValueError("array record is not [dtype, shape, data]")
    dtype_str, shape, data = parts
    if not isinstance(dtype_str, str) or dtype_str not in _DTYPES:
        raise ValueError(f"array dtype {dtype_str!r} is not allowed")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
        raise ValueError("array shape is not a list of at most 64 ints")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"array shape {shape!r} is invalid")
    if not isinstance(data, bytes):
        raise ValueError("array data is not bin")
    dtype = np.dtype(dtype_str)
    if math.prod(shape) * dtype.itemsize != len(data):
        raise ValueError(f"array data has {len(data)} bytes, shape {shape} needs another size")
    # copy(): a writeable array that does not pin the whole payload buffer.
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_NDARRAY:
        return _array_from_parts(data)
    if code == _EXT_NPSCALAR:
        arr = _array_from_parts(data)
        if arr.shape != ():
            raise ValueError("numpy scalar record has a non-empty shape")
        return arr[()]
    if code == _EXT_BIGINT:
        if not data:
            raise ValueError("empty big-int record")
        return int.from_bytes(data, "little", signed=True)
    raise ValueError(f"unknown msgpack extension type {code}")


def encode_state(state: Mapping[str, Any]) -> bytes:
    """Serialise a state mapping to the checkpoint payload (msgpack, no header).

    Parameters
    ----------
    state : Mapping[str, Any]
        See the module docstring for the value types allowed.

    Returns
    -------
    bytes

    Raises
    ------
    TypeError
        If the state holds a type or array dtype that cannot be stored, or a non-str key.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"a checkpoint state must be a mapping, got {type(state).__name__}")
    return _packb(_to_msgpack(state, ""))


def decode_state(blob: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_state`.

    Parameters
    ----------
    blob : bytes
        A payload produced by :func:`encode_state`.

    Returns
    -------
    dict
        The state; arrays come back with the same dtype (little-endian), shape and bytes.

    Raises
    ------
    CheckpointError
        If ``blob`` is not a valid payload.
    """
    try:
        state = msgpack.unpackb(
            blob, raw=False, use_list=True, strict_map_key=True, ext_hook=_ext_hook
        )
    except Exception as exc:  # msgpack raises many types on garbage; all mean "bad payload"
        raise CheckpointError(f"payload does not decode: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"payload is a {type(state).__name__}, not a map")
    return state


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload)) + payload


def _unframe(blob: bytes) -> bytes:
    """Check the header and CRC of a whole file; return the payload or raise ValueError."""
    if not blob:
        raise ValueError("empty file")
    if len(blob) < HEADER_SIZE:
        raise ValueError(f"truncated header ({len(blob)} of {HEADER_SIZE} bytes)")
    magic, version, length, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError("bad magic (not a streamgmm checkpoint)")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"unsupported format version {version} (this build reads {FORMAT_VERSION})"
        )
    if len(blob) - HEADER_SIZE != length:
        raise ValueError(
            f"length mismatch (header says {length} payload bytes, file has "
            f"{len(blob) - HEADER_SIZE})"
        )
    payload = blob[HEADER_SIZE:]
    actual = zlib.crc32(payload)
    if actual != crc:
        raise ValueError(f"CRC mismatch (stored {crc:#010x}, computed {actual:#010x})")
    return payload


# ------------------------------------------------------------------------------------ files


def _generation(path: str, i: int) -> str:
    return path if i == 0 else f"{path}.{i}"


def _fsync_dir(directory: str) -> None:
    """Make renames in ``directory`` durable (a rename is atomic but not durable without it)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows cannot open directories
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain FUSE / network mounts) refuse to fsync a directory;
        # the data files themselves were fsynced, so that is not a failed checkpoint.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _check_generations(generations: int) -> None:
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"generations must be an int >= 1 (got {generations!r})")


def save_checkpoint(
    path: str | os.PathLike[str], state: Mapping[str, Any], *, generations: int = 2
) -> int:
    """Write ``state`` to ``path`` atomically, keeping older generations.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file; older generations are ``path.1``, ``path.2``, ...
    state : Mapping[str, Any]
        The state to store (see :func:`encode_state`).
    generations : int, default 2
        Files kept in all, the new one included; 1 keeps only ``path``.

    Returns
    -------
    int
        Bytes written.

    Raises
    ------
    CheckpointError
        If the filesystem refuses (read-only, disk full, I/O error). The previous checkpoint
        files are then still loadable, and ``path.tmp`` is removed when possible.
    TypeError
        If ``state`` holds something that cannot be stored (a bug in the caller).
    """
    _check_generations(generations)
    path = os.fspath(path)
    blob = _frame(encode_state(state))  # before touching any file: a TypeError changes nothing
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        # Rotate oldest first: path.{N-2} -> path.{N-1}, ..., path -> path.1. Each os.replace
        # moves one complete file atomically, so the previous checkpoint exists under exactly
        # one of `path` / `path.1` at every instant (and the loader tries both): a kill at any
        # point leaves it loadable. The new file is already complete and fsynced in `tmp`
        # before any rename, so whichever renames survive a power cut name whole files.
        for i in range(generations - 1, 0, -1):
            older = _generation(path, i - 1)
            if os.path.lexists(older):
                os.replace(older, _generation(path, i))
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        reason = exc.strerror or str(exc)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from exc
    return len(blob)


def _set_aside(name: str) -> str:
    """Rename a damaged file to the first free ``name.corrupt[.N]``; return the new name."""
    target = f"{name}.corrupt"
    n = 0
    while os.path.lexists(target):
        n += 1
        target = f"{name}.corrupt.{n}"
    os.replace(name, target)
    return target


def load_checkpoint(
    path: str | os.PathLike[str], *, generations: int = 2
) -> tuple[dict[str, Any] | None, list[str]]:
    """Load the newest intact checkpoint generation.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file given to :func:`save_checkpoint`.
    generations : int, default 2
        How many files to try: ``path``, ``path.1``, ..., ``path.{generations-1}``.

    Returns
    -------
    state : dict or None
        As :func:`find_checkpoint`, which also returns the name of the file used.
    warnings : list of str
        As :func:`find_checkpoint`.
    """
    state, warnings, _ = find_checkpoint(path, generations=generations)
    return state, warnings


def find_checkpoint(
    path: str | os.PathLike[str], *, generations: int = 2
) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """Load the newest intact checkpoint generation, and say which file it came from.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file given to :func:`save_checkpoint`.
    generations : int, default 2
        How many files to try: ``path``, ``path.1``, ..., ``path.{generations-1}``.

    Returns
    -------
    state : dict or None
        The state of the first intact file, or None when there is none (a fresh start).
    warnings : list of str
        One line per problem met: a damaged file (named, with the reason, and where it was
        renamed to), an unreadable file, a stray temp file that could not be removed. A file
        that does not exist is not a problem.
    used : str or None
        The file the state was read from (``path`` or an older generation ``path.N``), None
        with no state.
    """
    _check_generations(generations)
    path = os.fspath(path)
    warnings: list[str] = []

    # A leftover temp file is a save killed before its final rename: never a checkpoint.
    tmp = f"{path}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    except OSError as exc:
        warnings.append(f"checkpoint {tmp}: cannot remove leftover temp file: {exc.strerror}")

    rejected = False  # a newer generation existed but was unusable
    for i in range(generations):
        name = _generation(path, i)
        try:
            with open(name, "rb") as fh:
                blob = fh.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            # Not evidence of corruption (permissions, a directory): leave it where it is.
            warnings.append(f"checkpoint {name}: cannot read: {exc.strerror or exc}; skipped")
            rejected = True
            continue
        try:
            state = decode_state(_unframe(blob))
        except (ValueError, CheckpointError) as exc:
            try:
                target = _set_aside(name)
                moved = f"renamed to {target}"
            except OSError as rename_exc:
                moved = f"could not rename it aside: {rename_exc.strerror or rename_exc}"
            warnings.append(f"checkpoint {name} is corrupt ({exc}); {moved}")
            rejected = True
            continue
        # A missing newer file (a save killed between its renames) is normal, not news.
        if rejected:
            warnings.append(f"checkpoint {path}: using older generation {name}")
        return state, warnings, name
    return None, warnings, None
