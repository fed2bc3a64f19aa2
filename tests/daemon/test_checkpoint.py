"""Tests for streamgmm.daemon.checkpoint: round trips, rotation, corruption, I/O errors, kill -9."""

from __future__ import annotations

import errno
import math
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import streamgmm.daemon.checkpoint as ckpt
from streamgmm.daemon.checkpoint import (
    CheckpointError,
    decode_state,
    encode_state,
    load_checkpoint,
    save_checkpoint,
)

DTYPES = ["<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1"]


# ------------------------------------------------------------------------------------ helpers


def assert_same(got: Any, want: Any, where: str = "state") -> None:
    """Exact equality: same types, dtypes, shapes, bytes, float bits (NaN payloads included)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype.newbyteorder("<") or got.dtype == want.dtype, where
        assert got.shape == want.shape, where
        assert got.tobytes() == np.ascontiguousarray(want, dtype=got.dtype).tobytes(), where
    elif isinstance(want, np.generic):
        assert type(got) is type(want), where
        assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, float):
        assert type(got) is float, where
        assert struct.pack("<d", got) == struct.pack("<d", want), where
    elif isinstance(want, (list, tuple)):
        assert type(got) is list and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert type(got) is dict and list(got) == list(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    else:
        assert type(got) is type(want) and got == want, where


def make_state(k: int) -> dict[str, Any]:
    """A state whose every part depends on k, so a mix of two saves is detectable."""
    rng = np.random.default_rng(k)
    return {
        "k": k,
        "big": 2**127 + k,
        "means": rng.normal(size=(8, 3)),
        "counts": np.arange(8, dtype=np.int64) * k,
        "meta": {"name": f"state-{k}", "seq": [k, k + 1], "raw": bytes([k % 256]) * 3},
    }


def corrupt_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt*"))


# ---------------------------------------------------------------------------------- round trip


def test_round_trip_exact(tmp_path: Path) -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    state: dict[str, Any] = {
        "arrays": {d: np.arange(12).astype(d).reshape(3, 4) for d in DTYPES},
        "scalar_array": np.array(3.5),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "big3d": np.random.default_rng(0).normal(size=(2, 3, 4)),
        "strided": base[:, ::2],  # non-contiguous view
        "fortran": np.asfortranarray(base),
        "nan_array": np.array([np.nan, -np.inf, np.inf, -0.0, nan_payload]),
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
        "bigints": [2**127 + 5, -(2**127) - 5, 2**64, -(2**63) - 1, 3**200],
        "floats": [math.nan, nan_payload, -0.0, math.inf, -math.inf, 5e-324, sys.float_info.max],
        "np_scalars": [np.float32(1.5), np.int64(-3), np.uint8(7), np.bool_(True), np.float64(2.0)],
        "misc": [None, True, False, "", "ünïcødé", b"", b"\x00\xff"],
        "nested": {"a": {"b": {"c": [1, {"d": np.ones(2, dtype=np.int32)}]}}},
        "tuple": (1, 2.0, "3"),
    }
    assert_same(decode_state(encode_state(state)), state)

    path = tmp_path / "m.ckpt"
    written = save_checkpoint(path, state)
    assert written == path.stat().st_size
    loaded, warnings = load_checkpoint(path)
    assert warnings == []
    assert_same(loaded, state)
    assert loaded is not None and loaded["arrays"]["<f8"].flags.writeable


def test_big_endian_array_comes_back_little_endian_with_same_values() -> None:
    arr = np.arange(5, dtype=">f8")
    got = decode_state(encode_state({"a": arr}))["a"]
    assert got.dtype == np.dtype("<f8")
    np.testing.assert_array_equal(got, arr)


def test_numpy_generator_state_round_trips() -> None:
    rng = np.random.default_rng(12345)
    rng.normal(size=10)
    state = {"rng": rng.bit_generator.state}
    restored = decode_state(encode_state(state))
    assert restored["rng"] == state["rng"]
    other = np.random.default_rng()
    other.bit_generator.state = restored["rng"]
    np.testing.assert_array_equal(other.normal(size=5), rng.normal(size=5))


@pytest.mark.parametrize(
    "bad",
    [
        {"a": np.array(["x"])},
        {"a": np.array([object()], dtype=object)},
        {"a": np.zeros(2, dtype=np.complex128)},
        {"a": np.zeros(2, dtype=[("x", "<f8")])},
        {"a": {1: "int key"}},
        {"a": {1, 2}},
        {"a": object()},
        [1, 2],
    ],
    ids=["str-array", "object-array", "complex", "structured", "int-key", "set", "object", "list"],
)
def test_unsupported_values_raise_type_error_and_write_nothing(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(TypeError):
        encode_state(bad)
    path = tmp_path / "m.ckpt"
    with pytest.raises(TypeError):
        save_checkpoint(path, bad)
    assert list(tmp_path.iterdir()) == []


def _ext(code: int, obj: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgpack.packb([1, 2]),
        msgpack.packb({1: 2}),
        msgpack.packb({"a": _ext(1, ["|O", [1], b"\x00" * 8])}),  # object dtype
        msgpack.packb({"a": _ext(1, ["<f8", [2], b"\x00" * 8])}),  # size mismatch
        msgpack.packb({"a": _ext(1, ["<f8", [-1], b""])}),  # negative dim
        msgpack.packb({"a": _ext(1, ["<f8", [2**62, 2**62], b""])}),  # absurd dims
        msgpack.packb({"a": _ext(1, ["<f8", [1]])}),  # missing part
        msgpack.packb({"a": _ext(3, ["<f8", [1], b"\x00" * 8])}),  # scalar with a shape
        msgpack.packb({"a": msgpack.ExtType(2, b"")}),
        msgpack.packb({"a": msgpack.ExtType(9, b"x")}),
        msgpack.packb({"a": 1})[:-1],  # truncated
    ],
)
def test_decode_rejects_bad_payloads(payload: bytes) -> None:
    with pytest.raises(CheckpointError):
        decode_state(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_crashes_on_garbage(blob: bytes) -> None:
    try:
        assert isinstance(decode_state(blob), dict)
    except CheckpointError:
        pass


# ----------------------------------------------------------------------------------- hypothesis

_arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES).map(np.dtype),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | _arrays
)
_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
_states = st.dictionaries(st.text(max_size=8), _values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_states)
def test_hypothesis_encode_decode_round_trip(state: dict[str, Any]) -> None:
    assert_same(decode_state(encode_state(state)), state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_states)
def test_hypothesis_file_round_trip(state: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sub", "m.ckpt")  # parent directory is created
        save_checkpoint(path, state)
        loaded, warnings = load_checkpoint(path)
        assert warnings == []
        assert_same(loaded, state)


# ------------------------------------------------------------------------------------ rotation


@pytest.mark.parametrize("generations", [1, 2, 3, 5])
def test_generations_rotate_and_keep_n_files(tmp_path: Path, generations: int) -> None:
    path = tmp_path / "m.ckpt"
    for k in range(1, 8):
        save_checkpoint(path, make_state(k), generations=generations)
        names = sorted(p.name for p in tmp_path.iterdir())
        kept = min(k, generations)
        assert names == sorted(["m.ckpt"] + [f"m.ckpt.{i}" for i in range(1, kept)])
        for i in range(kept):
            name = path if i == 0 else Path(f"{path}.{i}")
            state, warnings = load_checkpoint(name, generations=1)
            assert warnings == []
            assert_same(state, make_state(k - i))
    state, warnings = load_checkpoint(path, generations=generations)
    assert_same(state, make_state(7))


def test_missing_checkpoint_is_a_fresh_start_without_warnings(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "none.ckpt") == (None, [])
    assert load_checkpoint(tmp_path / "no" / "dir" / "none.ckpt") == (None, [])


def test_missing_current_falls_back_silently(tmp_path: Path) -> None:
    # What a kill between "path -> path.1" and "tmp -> path" leaves behind.
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, make_state(1))
    os.replace(path, f"{path}.1")
    state, warnings = load_checkpoint(path)
    assert_same(state, make_state(1))
    assert warnings == []


@pytest.mark.parametrize("generations", [0, -1, True, 1.0])
def test_bad_generations(tmp_path: Path, generations: Any) -> None:
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "m", {}, generations=generations)
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path / "m", generations=generations)


def test_leftover_tmp_removed_on_load(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, make_state(1))
    Path(f"{path}.tmp").write_bytes(b"half a checkpoint")
    state, warnings = load_checkpoint(path)
    assert_same(state, make_state(1))
    assert warnings == []
    assert not Path(f"{path}.tmp").exists()
    # Also when nothing else is there.
    Path(f"{tmp_path}/x.tmp").write_bytes(b"")
    assert load_checkpoint(tmp_path / "x") == (None, [])
    assert not (tmp_path / "x.tmp").exists()


# ---------------------------------------------------------------------------------- corruption


def _two_generations(tmp_path: Path, size: int = 64) -> tuple[Path, bytes, dict[str, Any]]:
    """path holds a new state, path.1 the old; return (path, bytes of path, old state)."""
    path = tmp_path / "m.ckpt"
    old = {"k": 1, "x": np.linspace(0, 1, size), "big": 2**127 + 5}
    new = {"k": 2, "x": np.linspace(1, 2, size), "big": 2**127 + 6}
    save_checkpoint(path, old)
    save_checkpoint(path, new)
    return path, path.read_bytes(), old


def test_truncation_at_every_offset_is_detected(tmp_path: Path) -> None:
    path, full, old = _two_generations(tmp_path, size=200)  # ~1.7 KB file
    assert 1500 < len(full) < 4096
    previous = Path(f"{path}.1").read_bytes()
    for cut in range(len(full)):
        path.write_bytes(full[:cut])
        state, warnings = load_checkpoint(path)
        assert_same(state, old)
        assert len(warnings) == 2, (cut, warnings)
        assert str(path) in warnings[0] and "corrupt" in warnings[0]
        assert "older generation" in warnings[1]
        assert not path.exists()
        (aside,) = corrupt_files(path)
        assert aside.name == "m.ckpt.corrupt" and aside.read_bytes() == full[:cut]
        aside.unlink()
    assert Path(f"{path}.1").read_bytes() == previous  # the fallback is never touched


def test_corrupt_files_are_never_overwritten(tmp_path: Path) -> None:
    path, full, old = _two_generations(tmp_path)
    contents = []
    for n in range(6):
        broken = full[: 10 + n]
        contents.append(broken)
        path.write_bytes(broken)
        state, warnings = load_checkpoint(path)
        assert_same(state, old)
        target = "m.ckpt.corrupt" if n == 0 else f"m.ckpt.corrupt.{n}"
        assert target in warnings[0]
    assert [p.name for p in corrupt_files(path)] == ["m.ckpt.corrupt"] + [
        f"m.ckpt.corrupt.{n}" for n in range(1, 6)
    ]
    for n, broken in enumerate(contents):
        name = f"{path}.corrupt" if n == 0 else f"{path}.corrupt.{n}"
        assert Path(name).read_bytes() == broken


def _flip(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_single_bit_flips_are_all_detected(tmp_path: Path) -> None:
    path, full, old = _two_generations(tmp_path, size=300)
    rng = random.Random(20260525)
    nbits = len(full) * 8
    # Every header bit, then random bits anywhere.
    bits = list(range(ckpt.HEADER_SIZE * 8)) + [rng.randrange(nbits) for _ in range(2000)]
    for bit in bits:
        path.write_bytes(_flip(full, bit))
        state, warnings = load_checkpoint(path)
        assert state is not None and state["k"] == 1, bit
        assert "corrupt" in warnings[0], bit
        Path(f"{path}.corrupt").unlink()
    assert_same(load_checkpoint(Path(f"{path}.1"), generations=1)[0], old)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"\x00" * 4096, "bad magic"),
        (b"\x00" * 10, "truncated header"),
        (b"SGMMCKPT" + b"\x00" * 100, "unsupported format version 0"),
    ],
    ids=["empty", "zeros", "short-zeros", "magic-then-zeros"],
)
def test_empty_and_zero_filled_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path, _, old = _two_generations(tmp_path)
    path.write_bytes(content)
    state, warnings = load_checkpoint(path)
    assert_same(state, old)
    assert reason in warnings[0] and str(path) in warnings[0]
    assert Path(f"{path}.corrupt").read_bytes() == content


def test_all_generations_broken_is_a_fresh_start(tmp_path: Path) -> None:
    path, _, _ = _two_generations(tmp_path)
    path.write_bytes(b"")
    Path(f"{path}.1").write_bytes(b"\x00" * 100)
    state, warnings = load_checkpoint(path)
    assert state is None
    assert len(warnings) == 2
    assert {p.name for p in corrupt_files(path)} == {"m.ckpt.corrupt"}
    assert Path(f"{path}.1.corrupt").exists()


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    path, _, old = _two_generations(tmp_path)
    payload = encode_state({"k": 99})
    header = struct.pack("<8sIQI", b"SGMMCKPT", 2, len(payload), zlib.crc32(payload))
    path.write_bytes(header + payload)
    state, warnings = load_checkpoint(path)
    assert_same(state, old)
    assert "unsupported format version 2" in warnings[0]


def test_valid_frame_with_undecodable_payload(tmp_path: Path) -> None:
    path, _, old = _two_generations(tmp_path)
    payload = msgpack.packb([1, 2, 3])  # CRC-valid, but not a map
    header = struct.pack("<8sIQI", b"SGMMCKPT", 1, len(payload), zlib.crc32(payload))
    path.write_bytes(header + payload)
    state, warnings = load_checkpoint(path)
    assert_same(state, old)
    assert "not a map" in warnings[0]


def test_trailing_garbage_is_detected(tmp_path: Path) -> None:
    path, full, old = _two_generations(tmp_path)
    path.write_bytes(full + b"\x00")
    state, warnings = load_checkpoint(path)
    assert_same(state, old)
    assert "length mismatch" in warnings[0]


def test_unreadable_entry_is_skipped_not_renamed(tmp_path: Path) -> None:
    path, _, old = _two_generations(tmp_path)
    path.unlink()
    path.mkdir()  # a directory where the file should be
    state, warnings = load_checkpoint(path)
    assert_same(state, old)
    assert "cannot read" in warnings[0]
    assert path.is_dir() and corrupt_files(path) == []


# --------------------------------------------------------------------------------- I/O failures


def test_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    path = directory / "m.ckpt"
    save_checkpoint(path, make_state(1))
    directory.chmod(0o500)
    try:
        if os.access(directory, os.W_OK):
            pytest.skip("running as a user that can write a 0o500 directory (root)")
        with pytest.raises(CheckpointError, match="Permission denied"):
            save_checkpoint(path, make_state(2))
    finally:
        directory.chmod(0o700)
    state, warnings = load_checkpoint(path)
    assert_same(state, make_state(1))
    assert warnings == []


class _FailingFile:
    """Wraps a real file; write() fails with the given errno."""

    def __init__(self, fh: Any, code: int) -> None:
        self._fh, self._code = fh, code

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])  # a partial write, then the error
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _fail_write(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def failing_open(*a: Any, **kw: Any) -> _FailingFile:
        return _FailingFile(open(*a, **kw), code)

    monkeypatch.setattr(ckpt, "open", failing_open, raising=False)


def _fail_open(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fail(*a: Any, **k: Any) -> Any:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ckpt, "open", fail, raising=False)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fail(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)


def _fail_replace_nth(n: int):
    def install(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
        real = os.replace
        calls = [0]

        def replace(src: Any, dst: Any) -> None:
            calls[0] += 1
            if calls[0] == n:
                raise OSError(code, os.strerror(code))
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)

    return install


def _fail_makedirs(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def fail(*a: Any, **k: Any) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "makedirs", fail)


@pytest.mark.parametrize(
    "inject",
    [
        _fail_write,
        _fail_open,
        _fail_fsync,
        _fail_replace_nth(1),
        _fail_replace_nth(2),
        _fail_makedirs,
    ],
    ids=["write", "open", "fsync", "rotate", "final-replace", "makedirs"],
)
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS, errno.EACCES])
def test_failing_save_keeps_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inject: Any, code: int
) -> None:
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, make_state(1))
    save_checkpoint(path, make_state(2))
    with monkeypatch.context() as m:
        inject(m, code)
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(path, make_state(3))
    assert os.strerror(code) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert not Path(f"{path}.tmp").exists()
    state, warnings = load_checkpoint(path)
    assert warnings == []
    assert state is not None and state["k"] in (1, 2)
    assert_same(state, make_state(state["k"]))
    if inject in (_fail_write, _fail_open, _fail_fsync, _fail_makedirs):
        assert_same(state, make_state(2))  # nothing was touched
    # And the next save works again.
    save_checkpoint(path, make_state(4))
    assert_same(load_checkpoint(path)[0], make_state(4))


class _Crash(BaseException):
    """Stands in for the process dying: not an OSError, so save's cleanup does not run."""


def _crash_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th call of os.fsync / os.replace / os.open (together) raise _Crash."""
    calls = [0]

    def step(real: Any) -> Any:
        def wrapped(*a: Any, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == n:
                raise _Crash
            return real(*a, **kw)

        return wrapped

    for name in ("fsync", "replace", "open"):
        monkeypatch.setattr(os, name, step(getattr(os, name)))


@pytest.mark.parametrize("generations", [1, 2, 3])
def test_injected_crash_between_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generations: int
) -> None:
    path = tmp_path / "m.ckpt"
    crash_at = 0
    while True:
        crash_at += 1
        for f in tmp_path.iterdir():
            f.unlink()
        for k in range(1, generations + 1):  # every generation present
            save_checkpoint(path, make_state(k), generations=generations)
        old = make_state(generations)
        new = make_state(100)
        crashed = False
        with monkeypatch.context() as m:
            _crash_on_call(m, crash_at)
            try:
                save_checkpoint(path, new, generations=generations)
            except _Crash:
                crashed = True
        state, warnings = load_checkpoint(path, generations=generations)
        assert warnings == [], (crash_at, warnings)
        assert state is not None, crash_at
        assert_same(state, new if state["k"] == 100 else old)
        assert not Path(f"{path}.tmp").exists()
        if not crashed:
            break
    # fsync(file), N-1 rotations, final replace, open(dir), fsync(dir)
    assert crash_at == generations + 4


# -------------------------------------------------------------------------------- kill -9 test

_CHILD = textwrap.dedent(
    """
    import importlib.util, sys, time
    import numpy as np
    # Load the module by file: `import streamgmm` would pull in scipy and the estimator, and
    # each trial's start-up time would dwarf the save it is meant to interrupt.
    spec = importlib.util.spec_from_file_location("checkpoint", {module_file!r})
    checkpoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint)
    save_checkpoint = checkpoint.save_checkpoint
    {make_state}
    path, start, gens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    deadline = time.monotonic() + 5.0  # bounded even if nobody kills it
    k = start
    while time.monotonic() < deadline:
        k += 1
        save_checkpoint(path, make_state(k), generations=gens)
        print(k, flush=True)
    """
)


def _make_state_source() -> str:
    import inspect

    return textwrap.dedent(inspect.getsource(make_state)).replace("dict[str, Any]", "dict")


def test_sigkill_during_save_leaves_old_or_new(tmp_path: Path) -> None:
    script = _CHILD.format(make_state=_make_state_source(), module_file=ckpt.__file__)
    rng = random.Random(7)
    trials, mid_run, mid_save = 40, 0, 0
    for trial in range(trials):
        directory = tmp_path / f"t{trial}"
        path = directory / "m.ckpt"
        gens = 1 + trial % 3
        save_checkpoint(path, make_state(0), generations=gens)
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(path), "0", str(gens)],
            stdout=subprocess.PIPE,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 10.0)
            assert ready and proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.06))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            done = [int(x) for x in proc.stdout.read().split()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        last_done = max(done, default=0)
        mid_run += last_done > 0
        mid_save += Path(f"{path}.tmp").exists()  # killed between open(tmp) and its rename
        state, warnings = load_checkpoint(path, generations=gens)
        assert warnings == [], (trial, warnings)
        assert state is not None, trial
        # The last completed save, or the one in flight when the kill landed; never a mix.
        assert state["k"] in (last_done, last_done + 1), (trial, state["k"], last_done)
        assert_same(state, make_state(state["k"]))
        assert not Path(f"{path}.tmp").exists()
    # The kills did land after some saves had completed, and inside saves.
    assert mid_run >= trials // 4 and mid_save >= 1, (mid_run, mid_save)
    print(f"sigkill trials: {trials}, after >= 1 save: {mid_run}, inside a save: {mid_save}")


# ------------------------------------------------------------ model state of another version


def test_a_checkpoint_of_the_earlier_state_format_is_refused_in_one_line(tmp_path, capsys):
    """A checkpoint written before incremental EM (model state format 1) stops the daemon at
    start with exit 2 and one line naming the model, the file and what to do."""
    from streamgmm.daemon.service import run_daemon
    from tests.helpers.daemon import write_config

    path = tmp_path / "old.ckpt"
    save_checkpoint(path, {"format": 1, "model": "lidar", "dim": 3, "components": 4,
                           "covariance_type": "full", "seq": 7, "estimator": None})
    config = write_config(tmp_path, [{"name": "lidar", "topic": "points/lidar", "dim": 3,
                                      "components": 4, "checkpoint": str(path)}])
    assert run_daemon(config) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "model[0].checkpoint" in err[0] and str(path) in err[0]
    assert "earlier streamgmm" in err[0] and "move the file away" in err[0]
    assert path.exists()  # never overwritten
