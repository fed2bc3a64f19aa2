"""Write the seed corpus of the codec fuzzer to fuzz/corpus/codec/ (deterministic).

Usage: python fuzz/make_corpus.py [OUT_DIR]

One file per seed: ``valid-<name>.msgpack`` (each accepted by its decoder: points f4/f8,
updates of all four covariance types, control requests and replies) and
``hostile-<name>.msgpack`` (length bombs, deep nesting, ext types, pickle-style payload, bad
dtype/shape/size...; each rejected by ``decode_points``). Files that no longer belong to the
corpus are removed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seeds import hostile_payloads, valid_messages  # noqa: E402

from streamgmm import codec  # noqa: E402

_DECODERS = {
    "points": codec.decode_points,
    "update": codec.decode_update,
    "request": codec.decode_request,
    "reply": codec.decode_reply,
}


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "corpus" / "codec"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for name, msg in valid_messages():
        payload = msgpack.packb(msg, use_bin_type=True)
        _DECODERS[name.split("_", 1)[0]](payload)  # a seed that does not decode is a bug here
        files[f"valid-{name}.msgpack"] = payload
    for name, payload in hostile_payloads():
        try:  # some are fine control replies, but none is a sensor-points message
            codec.decode_points(payload)
        except codec.DecodeError:
            pass
        else:
            raise SystemExit(f"hostile seed {name!r} was accepted by decode_points")
        files[f"hostile-{name}.msgpack"] = payload
    for stale in out.glob("*.msgpack"):
        if stale.name not in files:
            stale.unlink()
    for name, payload in files.items():
        (out / name).write_bytes(payload)
    total = sum(len(p) for p in files.values())
    print(f"wrote {len(files)} seed files ({total} bytes) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
