"""Prometheus text exposition and a health check, served over HTTP on a side thread.

The service loop publishes a fresh status snapshot (a plain dict) after every turn; this
module only reads the latest one. Because it runs on its own thread, it keeps answering
when the loop is stuck, which is exactly when ``/healthz`` must say 503.

- ``GET /metrics``: counters and gauges in the Prometheus text format.
- ``GET /healthz``: ``200 ok`` while the loop turned within ``stall_after_s``, else ``503``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streamgmm.daemon.accounting import Counters
from streamgmm.daemon.model import MODEL_STATUS

__all__ = [
    "MetricsServer",
    "render",
]

# Both tables come from where the values are made: the counters' fields and the per-model
# status keys, so a new counter or status metric cannot be left out here.
_COUNTERS = {
    f.name: f.metadata["help"] for f in dataclasses.fields(Counters) if f.name != "rejected"
}
_MODEL_GAUGES = {key: (e.metric, e.help) for key, e in MODEL_STATUS.items() if e.metric}


def _value(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    return repr(v) if not v.is_integer() else str(int(v))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(status: dict, healthy: bool) -> str:
    """Prometheus text format of a ``status`` reply."""
    out = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, object]]) -> None:
        out.append(f"# HELP streamgmm_{name} {help_text}")
        out.append(f"# TYPE streamgmm_{name} {kind}")
        out.extend(f"streamgmm_{name}{labels} {_value(v)}" for labels, v in samples)

    counters = status.get("counters", {})
    for key, help_text in _COUNTERS.items():
        metric(f"{key}_total", "counter", help_text, [("", counters.get(key, 0))])
    rejected = counters.get("rejected", {})
    metric("messages_rejected_total", "counter", "Point messages rejected, by reason.",
           [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(rejected.items())])
    if "messages_last_turn" in status:
        metric("ingest_batch_messages", "gauge", "Messages handled in the last loop turn.",
               [("", status["messages_last_turn"])])
    models = status.get("models", {})
    for key, (kind, help_text) in _MODEL_GAUGES.items():
        samples = [(f'{{model="{_label(name)}"}}', m.get(key, 0)) for name, m in models.items()]
        metric(f"model_{key}" + ("_total" if kind == "counter" else ""), kind, help_text, samples)
    metric("uptime_seconds", "gauge", "Seconds since the daemon started.",
           [("", status.get("uptime_s", 0.0))])
    metric("healthy", "gauge", "1 while the service loop keeps turning.", [("", int(healthy))])
    return "\n".join(out) + "\n"


class MetricsServer:
    """HTTP server for ``/metrics`` and ``/healthz`` on a daemon thread.

    Parameters
    ----------
    host, port : str, int
        Where to listen; keep it on localhost unless a scraper elsewhere needs it.
    snapshot : callable
        Returns ``(status_dict, monotonic time of the loop's last turn)``.
    stall_after_s : float
        ``/healthz`` turns unhealthy when the loop has not turned for this long.
    """

    def __init__(self, host: str, port: int, snapshot: Callable[[], tuple[dict, float]],
                 stall_after_s: float = 3.0) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                status, last_turn = owner.snapshot()
                healthy = time.monotonic() - last_turn < owner.stall_after_s
                if self.path.startswith("/metrics"):
                    body, code, ctype = render(status, healthy).encode(), 200, (
                        "text/plain; version=0.0.4")
                elif self.path.startswith("/healthz"):
                    body = b"ok\n" if healthy else b"stalled\n"
                    code, ctype = (200 if healthy else 503), "text/plain"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not events worth a log line
                pass

        self.snapshot = snapshot
        self.stall_after_s = stall_after_s
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics",
                                       daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
