"""Reproducer of finding "counter-overflow" (see fuzz/findings/README.md).

Four valid point messages from one source, with sequence numbers 0, 2**64-1, 0, 3, make the
daemon's ``messages_lost`` counter 2**64 (one more than msgpack's largest unsigned int); the next
``status`` request then raises ``TypeError: cannot pack int as msgpack`` in
``codec.encode_reply``, which ``Service._handle_control`` does not catch: the daemon's loop ends
and ``run_daemon`` exits 70 (internal error).

    python fuzz/findings/counter_overflow.py            # in process, fake sockets
    python fuzz/findings/counter_overflow.py --daemon   # the real daemon on ipc:// endpoints

Exit status 1 while the bug is present, 0 once it is fixed.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamgmm import codec  # noqa: E402

SEQS = (0, 2**64 - 1, 0, 3)  # lost = (2**64 - 2) + 2 = 2**64


def payloads() -> list[bytes]:
    return [codec.encode_points(np.zeros((1, 2)), seq=s, stamp=1.0, source="s") for s in SEQS]


def in_process() -> int:
    from streamgmm.daemon.config import parse_config
    from streamgmm.daemon.service import Service
    from streamgmm.daemon.transport import ControlRequest

    class Transport:
        replies: list[bytes] = []

        def reply(self, request, payload):
            self.replies.append(payload)

    config = parse_config({
        "service": {"ingest": ["inproc://i"], "publish": "inproc://p", "control": "inproc://c"},
        "model": [{"name": "a", "topic": "points/a", "dim": 2, "components": 2,
                   "publish_every_s": 60.0, "refit_every_s": 0.0}],
    })
    svc = Service(config)
    svc.transport = Transport()
    for payload in payloads():
        svc._accept([b"points/a", payload], {})
    print(f"messages_lost = {svc.counters.messages_lost} (2**64 - 1 = {2**64 - 1})")
    try:
        svc._handle_control(ControlRequest(envelope=(b"peer", b""),
                                           payload=codec.encode_request("status"), n_frames=3))
    except Exception:
        traceback.print_exc()
        return 1
    print("status answered:", codec.decode_reply(svc.transport.replies[-1])["counters"])
    return 0


def real_daemon() -> int:
    from tests.helpers.daemon import Daemon, write_config

    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(write_config(Path(tmp), [{"name": "a", "topic": "points/a", "dim": 2,
                                             "components": 2}]))
        try:
            for payload in payloads():
                d.send_raw([b"points/a", payload])
            time.sleep(1.0)
            try:
                print("status:", d.request(timeout=3, op="status")["counters"])
            except TimeoutError as exc:
                print("no status reply:", exc)
            time.sleep(0.5)
            code = d.proc.poll()
            print("daemon exit code:", code)
            return 1 if code is not None else 0
        finally:
            d.close()


if __name__ == "__main__":
    sys.exit(real_daemon() if "--daemon" in sys.argv[1:] else in_process())
