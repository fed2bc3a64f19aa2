"""Soak and overload of the daemon (issue 5): the real daemon, driven over the wire only.

1. Soak: one model (D=3, K=16 full, publish_every_s=0.1, refit_every_s=60, 200,000-point
   reservoir, a checkpoint every 5 s) fed a steady 100,000 points/s (100 messages/s of 1,000
   float32 points from one paced publisher process) for ``--minutes``. Figures: the daemon's
   RSS drift after warm-up (every 5 s from /proc/PID/status), the message ledger (sent =
   applied + rejected + lost), publish -> update latency (a subscriber process records every
   ``gmm/lidar`` update; a message counts as delivered by the first update whose
   ``last_stamp`` >= its stamp), refits and checkpoints with their failures.
2. Overload: a fresh daemon (same model); its capacity with back-pressure is measured first
   (as in bench_service figure 1b), then one publisher process sends 4,096-point messages at
   2x that capacity for ``--overload-seconds``. A ``status`` request every 100 ms times the
   control socket; RSS is sampled with it. After the queues drain, one more slow message per
   source turns every earlier drop into a seq gap, and the ledger must be exact.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--overload-seconds 60] [--quick]
    (--quick = 1-minute soak and 15 s of overload)

Every process runs on this machine and shares its cores. Endpoints are ipc:// in a temporary
directory; every helper process is stopped in ``finally``/``with`` blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    fmt_rate,
    fmt_seconds,
    gaussian_blobs,
    header,
    print_table,
    verdict,
)
from bench_service import (  # noqa: E402
    BATCH,
    DTYPE,
    Daemon,
    Helper,
    Requester,
    capacity_run,
    helper_server,
    proc_cpu_seconds,
    proc_memory_mib,
)

from streamgmm import codec  # noqa: E402
from streamgmm.daemon.config import SocketOptions  # noqa: E402

MODEL = {  # the [[model]] of both daemons (K=16 full, D=3 are bench_service's defaults)
    "publish_every_s": 0.1, "refit_every_s": 60.0, "window_points": 200_000,
    "retain": "reservoir", "checkpoint_every_s": 5.0,
}
SOAK_RATE = 100_000.0  # points/s
SOAK_BATCH = 1000  # points per message: 100 messages/s
RSS_PERIOD_S = 5.0  # soak sampling period
WARMUP_S = 60.0  # soak RSS reference: first sample at or after this (and after a refit)
PING_PERIOD_S = 0.1  # overload: one status request per period
GOAL_DRIFT = 0.05
GOAL_CONTROL_S = 0.1
OVERLOAD_FACTOR = 2.0
WARM_REFITS = 6  # overload warm-up: at most this many refits on request


# --------------------------------------------------------------------------- helpers


def _accounted(c: dict, base: dict | None = None) -> dict:
    """Ledger fields of ``status`` counters (minus ``base``)."""
    def get(counters: dict | None, key: str) -> int:
        if counters is None:
            return 0
        if key == "rejected":
            return sum(int(v) for v in counters.get("rejected", {}).values())
        return int(counters.get(key, 0))

    out = {k: get(c, k) - get(base, k) for k in ("messages_received", "messages_applied",
                                                  "rejected", "messages_lost",
                                                  "publisher_restarts", "points_applied",
                                                  "points_thinned")}
    out["accounted"] = out["messages_applied"] + out["rejected"] + out["messages_lost"]
    out["rejected_by_reason"] = {
        k: int(v) - int((base or {}).get("rejected", {}).get(k, 0))
        for k, v in c.get("rejected", {}).items()
        if int(v) != int((base or {}).get("rejected", {}).get(k, 0))
    }
    return out


def settle(daemon: Daemon, base: dict, target: int | None = None, quiet_s: float = 2.0,
           limit_s: float = 60.0) -> tuple[dict, float]:
    """Poll ``status`` until the ledger accounts for ``target`` messages, or nothing new
    arrives for ``quiet_s`` (bounded by ``limit_s``). Returns (status, seconds waited)."""
    start = last_change = time.perf_counter()
    status = daemon.status()
    seen = _accounted(status["counters"], base)["messages_received"]
    for _ in range(int(limit_s / 0.02) + 1):
        led = _accounted(status["counters"], base)
        if target is not None and led["accounted"] >= target:
            break
        now = time.perf_counter()
        if led["messages_received"] != seen:
            seen, last_change = led["messages_received"], now
        elif now - last_change >= quiet_s or now - start >= limit_s:
            break
        time.sleep(0.02)
        status = daemon.status()
    return status, time.perf_counter() - start


def one_message(publishers: list[Helper], batch: int) -> list[dict]:
    """One message from each ``paced``/``stamped`` publisher (a leg of ``batch`` points/s for
    1 s), sent together."""
    return legs(publishers, float(batch), 1.0)


def legs(publishers: list[Helper], rate: float, duration: float) -> list[dict]:
    """The same paced leg on every publisher at once (each at ``rate``); their results."""
    for pub in publishers:
        pub.proc.stdin.write(f"{rate!r} {duration!r}\n".encode())
        pub.proc.stdin.flush()
    return [pub.result(duration + 60.0) for pub in publishers]


def percentiles(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {k: float("nan") for k in ("p50", "p90", "p99", "p999", "max")}
    return {"p50": float(np.percentile(x, 50)), "p90": float(np.percentile(x, 90)),
            "p99": float(np.percentile(x, 99)), "p999": float(np.percentile(x, 99.9)),
            "max": float(x.max())}


def daemon_log_lines(daemon: Daemon, limit: int = 12) -> list[str]:
    """WARNING/ERROR lines of a daemon's log (its level is 'warning'): the first ``limit``."""
    lines = [ln for ln in daemon.log().splitlines() if " WARNING " in ln or " ERROR " in ln
             or "Traceback" in ln]
    out = [f"daemon log {daemon.log_path.name}: {len(lines)} WARNING/ERROR line(s)"]
    out += ["  " + ln[:200] for ln in lines[:limit]]
    if len(lines) > limit:
        out.append(f"  ... {len(lines) - limit} more")
    return out


class Sampler:
    """A thread that calls ``sample()`` every ``period`` s until stopped (bounded count)."""

    def __init__(self, period: float, sample, max_samples: int) -> None:
        self.period, self.sample, self.max_samples = period, sample, max_samples
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            for _ in range(self.max_samples):
                self.sample()
                # The next tick of the schedule t0 + k * period; ticks missed (a slow
                # sample) are skipped, not caught up in a burst.
                late = time.perf_counter() - t0
                delay = (late // self.period + 1) * self.period - late
                if self.stop_event.wait(delay):
                    return
        except BaseException as exc:  # re-raised by __exit__
            self.error = exc

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(15.0)
        if self.error is not None and exc[0] is None:
            raise RuntimeError(f"sampler failed: {self.error!r}") from self.error


# --------------------------------------------------------------------------- soak


def soak(tmp: Path, minutes: float) -> None:
    duration = 60.0 * minutes
    log = tmp / "soak-helpers.log"
    pub_rec, upd_rec = tmp / "soak-pub.npz", tmp / "soak-upd.npz"
    samples: list[dict] = []
    with Daemon(tmp, "soak", checkpoint=str(tmp / "soak.ckpt"), **MODEL) as daemon, \
            contextlib.ExitStack() as stack:
        rss_start = proc_memory_mib(daemon.pid)["VmRSS"]
        sub = stack.enter_context(helper_server(
            "updsub", "--endpoint", daemon.publish, "--record", str(upd_rec),
            "--max-seconds", str(duration + 600.0), log=log))
        pub = stack.enter_context(Helper(
            "stamped", "--endpoint", daemon.ingest, "--batch", str(SOAK_BATCH), "--dtype",
            DTYPE, "--source", "soak", "--record", str(pub_rec), log=log, stdin=True))
        if pub.line(30.0) != "READY":
            raise RuntimeError(f"stamped publisher not ready: {log.read_text()[-500:]}")
        # A first message that must arrive: every later drop is then a seq gap.
        probe = one_message([pub], SOAK_BATCH)[0]
        settle(daemon, {}, target=probe["sent_messages"], limit_s=10.0)
        monitor = Requester(daemon.ctx, daemon.control)
        t0 = time.perf_counter()
        cpu0 = proc_cpu_seconds(daemon.pid)

        def sample() -> None:
            t_req = time.perf_counter()
            try:
                st = monitor.request("status", timeout=5.0)
            except TimeoutError:
                st = None
            t_rep = time.perf_counter()
            mem = proc_memory_mib(daemon.pid)
            m = st["models"]["lidar"] if st else {}
            samples.append({"t": t_req - t0, "rss": mem["VmRSS"], "hwm": mem["VmHWM"],
                            "refit_running": bool(m.get("refit_running", True)),
                            "status_s": t_rep - t_req if st else float("inf"),
                            "n_seen": m.get("n_seen", -1), "refits": m.get("refits", -1),
                            "checkpoints": m.get("checkpoints", -1),
                            "queue": st.get("messages_last_turn", -1) if st else -1,
                            "lost": st["counters"]["messages_lost"] if st else -1})

        try:
            with Sampler(RSS_PERIOD_S, sample, int(duration / RSS_PERIOD_S) + 10):
                main = legs([pub], SOAK_RATE, duration)[0]
        finally:
            monitor.drop()
        t_main = time.perf_counter() - t0
        cpu = (proc_cpu_seconds(daemon.pid) - cpu0) / t_main
        status, drain_s = settle(daemon, {}, target=probe["sent_messages"]
                                 + main["sent_messages"], limit_s=30.0)
        final = one_message([pub], SOAK_BATCH)[0]
        sent = probe["sent_messages"] + main["sent_messages"] + final["sent_messages"]
        status, _ = settle(daemon, {}, target=sent, limit_s=10.0)
        rss_end = proc_memory_mib(daemon.pid)
        time.sleep(3 * MODEL["publish_every_s"])  # the update of the last message
        pub.stop()  # EOF: it writes its record and exits
        sub.terminate()
        sub_result = sub.result(30.0)
        log_lines = daemon_log_lines(daemon)
    soak_report(duration, samples, status, sent, main, probe, rss_start, rss_end, cpu, drain_s,
                pub_rec, upd_rec, sub_result, log_lines)


def _latencies(pub_rec: Path, upd_rec: Path, first: int, count: int) -> dict:
    """publish -> first update with last_stamp >= stamp, for messages seq first..first+count-1."""
    p, u = np.load(pub_rec), np.load(upd_rec)
    keep = (p["seq"] >= first) & (p["seq"] < first + count)
    stamp, sent_at = p["stamp"][keep], p["sent_at"][keep]
    order = np.argsort(u["received_at"], kind="stable")
    got, last = u["received_at"][order], u["last_stamp"][order]
    kind, seq = u["kind"][order], u["seq"][order]
    covered = np.maximum.accumulate(np.where(np.isfinite(last), last, -np.inf)) \
        if len(last) else last
    j = np.searchsorted(covered, stamp, side="left")
    matched = j < len(covered)
    lat = got[j[matched]] - sent_at[matched]
    online_gaps = np.diff(got[kind == 0]) if np.sum(kind == 0) > 1 else np.array([])
    worst = int(np.argmax(lat)) if len(lat) else -1
    refit_times = got[kind == 1]
    near = float("nan")
    if worst >= 0 and len(refit_times):
        near = float(np.min(np.abs(refit_times - (sent_at[matched][worst] + lat[worst]))))
    return {
        "lat": lat, "matched": int(matched.sum()), "count": int(keep.sum()),
        "updates": len(got), "online": int(np.sum(kind == 0)), "refit": int(np.sum(kind == 1)),
        "seq_gaps": int(np.sum(np.diff(seq) - 1)) if len(seq) > 1 else 0,
        "interval": percentiles(online_gaps),
        "worst_at": float(sent_at[matched][worst] - sent_at[0]) if worst >= 0 else float("nan"),
        "worst_from_refit": near,
    }


def soak_report(duration: float, samples: list[dict], status: dict, sent: int, main: dict,
                probe: dict, rss_start: float, rss_end: dict, cpu: float, drain_s: float,
                pub_rec: Path, upd_rec: Path, sub_result: dict, log_lines: list[str]) -> None:
    model = status["models"]["lidar"]
    led = _accounted(status["counters"])
    unaccounted = sent - led["accounted"]
    warmup_s = min(WARMUP_S, duration / 4)
    # RSS references are taken between refits: a refit's arrays (~15-30 MiB, freed when it
    # ends) are transient, not drift.
    ok = [s for s in samples if np.isfinite(s["rss"]) and not s["refit_running"]]
    at60 = next((s for s in ok if s["t"] >= warmup_s), ok[-1] if ok else None)
    # Warm-up ends at 60 s, or later if the first refit (its worker's memory) is not done yet.
    warm = next((s for s in ok if s["t"] >= warmup_s and s["refits"] >= 1), at60)
    end = ok[-1] if ok else None
    after_warm = [s["rss"] for s in samples if s["t"] >= warm["t"]]
    half = next((s for s in ok if s["t"] >= duration / 2), end)
    lat = _latencies(pub_rec, upd_rec, probe["sent_messages"], main["sent_messages"])
    q = percentiles(lat["lat"])

    # Table A: RSS and state over time (one row per minute, or per 15 s when short).
    step = 60.0 if duration >= 300 else 15.0
    rows, next_t = [], 0.0
    for s in samples:
        if s["t"] + 1e-6 >= next_t or s is end or s is warm:
            rows.append([f"{s['t']:.0f} s" + (" R" if s["refit_running"] else ""),
                         f"{s['rss']:.1f} MiB", f"{s['hwm']:.1f} MiB",
                         f"{(s['rss'] / warm['rss'] - 1) * 100:+.2f}%" if warm else "-",
                         f"{s['n_seen']:,}", s["refits"], s["checkpoints"], s["queue"],
                         s["lost"], fmt_seconds(s["status_s"])])
            next_t = (s["t"] // step + 1) * step
    print_table(
        f"Soak A. Daemon over time: {fmt_rate(SOAK_RATE)} in {SOAK_BATCH:,}-point float32 "
        f"messages for {duration / 60:g} min (D=3, K=16 full, reservoir 200,000)",
        ["t", "VmRSS", "VmHWM", "vs warm-up", "n_seen", "refits", "ckpts", "queue", "lost",
         "status"],
        rows,
        [f"Sampled every {RSS_PERIOD_S:g} s from /proc/PID/status and 'status' (queue = "
         "messages drained in the daemon's last loop turn); t from the first soak message;",
         "R = a refit was running at the sample (its arrays are in VmRSS then).",
         f"Daemon RSS right after start (no points): {rss_start:.1f} MiB."],
    )

    drift = (end["rss"] - warm["rss"]) / warm["rss"] if warm and end else float("nan")
    drift60 = (end["rss"] - at60["rss"]) / at60["rss"] if at60 and end else float("nan")
    exp_refits = int(duration // MODEL["refit_every_s"])
    exp_ckpts = int(duration // MODEL["checkpoint_every_s"])
    status_lat = np.array([s["status_s"] for s in samples])
    rows = [
        ["offered rate (publisher, achieved)", fmt_rate(main["rate"]),
         f"{fmt_rate(SOAK_RATE)} +- 2%", verdict(abs(main["rate"] / SOAK_RATE - 1) <= 0.02)],
        ["  publisher: max lateness vs schedule", fmt_seconds(main["max_late_s"]), "-",
         verdict(None)],
        [f"RSS at warm-up (t={warm['t']:.0f} s{', after refit 1' if warm['refits'] else ''})",
         f"{warm['rss']:.1f} MiB", "-", verdict(None)],
        [f"RSS at the end (t={end['t']:.0f} s)", f"{end['rss']:.1f} MiB", "-", verdict(None)],
        ["  RSS max after warm-up / VmHWM at the end",
         f"{max(after_warm):.1f} / {rss_end['VmHWM']:.1f} MiB", "-", verdict(None)],
        ["  RSS after the final drain" + (" (a refit running)" if model["refit_running"]
                                           else ""),
         f"{rss_end['VmRSS']:.1f} MiB", "-", verdict(None)],
        ["RSS drift (end - warm-up) / warm-up", f"{100 * drift:+.2f}%",
         f"< {100 * GOAL_DRIFT:.0f}%", verdict(drift < GOAL_DRIFT)],
        [f"  drift from t={at60['t']:.0f} s", f"{100 * drift60:+.2f}%", "-", verdict(None)],
        [f"  drift over the second half (t={half['t']:.0f} s -> end)",
         f"{100 * (end['rss'] - half['rss']) / half['rss']:+.2f}%", "-", verdict(None)],
        ["messages sent (publisher)", f"{sent:,}", "-", verdict(None)],
        ["  applied + rejected + lost", f"{led['messages_applied']:,} + {led['rejected']:,} + "
         f"{led['messages_lost']:,}", "-", verdict(None)],
        ["unaccounted (sent - applied - rejected - lost)", f"{unaccounted:,}", "0",
         verdict(unaccounted == 0)],
        ["messages lost (seq gaps)", f"{led['messages_lost']:,}", "0 at this rate",
         verdict(led["messages_lost"] == 0)],
        ["update latency p50 / p90", f"{fmt_seconds(q['p50'])} / {fmt_seconds(q['p90'])}",
         "~0.05 s (by design)", verdict(None)],
        ["update latency p99 / p99.9", f"{fmt_seconds(q['p99'])} / {fmt_seconds(q['p999'])}",
         "reported", verdict(None)],
        ["update latency max", fmt_seconds(q["max"]), "reported", verdict(None)],
        ["  messages matched to an update", f"{lat['matched']:,} / {lat['count']:,}",
         "all", verdict(lat["matched"] == lat["count"])],
        ["refits done", f"{model['refits']}", f">= {max(0, exp_refits - 1)}",
         verdict(model["refits"] >= max(0, exp_refits - 1))],
        ["refit failures", f"{model['refit_failures']}", "0",
         verdict(model["refit_failures"] == 0)],
        ["  last refit (worker time)", fmt_seconds(float(model["last_refit_s"])), "-",
         verdict(None)],
        ["checkpoints written", f"{model['checkpoints']}", f">= {int(0.9 * exp_ckpts)}",
         verdict(model["checkpoints"] >= int(0.9 * exp_ckpts))],
        ["checkpoint failures", f"{model['checkpoint_failures']}", "0",
         verdict(model["checkpoint_failures"] == 0)],
        ["  last checkpoint (write time)", fmt_seconds(float(model["last_checkpoint_s"])),
         "-", verdict(None)],
        ["status reply (5 s samples) max", fmt_seconds(float(status_lat.max()))
         if len(status_lat) else "-", "-", verdict(None)],
    ]
    print_table(
        f"Soak B. Summary after {duration / 60:g} min at {fmt_rate(SOAK_RATE)}",
        ["measure", "measured", "goal", "verdict"],
        rows,
        [
            f"Ledger from 'status' after the queues drained ({fmt_seconds(drain_s)}) and one "
            "more message (so a dropped tail would show as a gap);",
            f"sent includes that message and the first one (sent before timing starts). "
            f"messages_received={led['messages_received']:,}, "
            f"publisher_restarts={led['publisher_restarts']}, rejected by reason: "
            f"{led['rejected_by_reason'] or 'none'}.",
            "Update latency: the publisher records time.time() just after each send; the "
            "subscriber process records time.time() at each update;",
            "a message's latency = receipt of the first update whose last_stamp >= its stamp "
            "- its send time (one clock: same machine).",
            f"With publish_every_s={MODEL['publish_every_s']:g} the daemon publishes at most "
            "one online update per 0.1 s, so a message waits for the next update:",
            "~uniform in [0, 0.1 s] plus ingest and transport, i.e. p50 ~50 ms and p99 ~100 ms "
            "by design, not a queue. Update intervals:",
            f"p50 {fmt_seconds(lat['interval']['p50'])}, p99 "
            f"{fmt_seconds(lat['interval']['p99'])}, max {fmt_seconds(lat['interval']['max'])}"
            f"; {lat['updates']:,} updates received ({lat['online']:,} online, "
            f"{lat['refit']} refit), seq gaps {lat['seq_gaps']}.",
            f"Worst latency: message sent at t={lat['worst_at']:.1f} s; nearest refit update "
            f"{lat['worst_from_refit']:.2f} s from its delivery."
            if np.isfinite(lat["worst_at"]) else "",
            f"Warm-up: the first sample at or after {warmup_s:g} s at which refit 1 has "
            "finished; warm-up and end are samples taken while no refit ran.",
            f"Daemon CPU over the soak: {100 * cpu:.0f}% of one core (all threads). "
            f"Subscriber: {sub_result}.",
            *log_lines,
        ],
    )


# --------------------------------------------------------------------------- overload


def overload(tmp: Path, seconds: float, capacity_s: float, n_publishers: int,
             factor: float = OVERLOAD_FACTOR) -> None:
    log = tmp / "over-helpers.log"
    rcvhwm = SocketOptions().rcvhwm
    X = gaussian_blobs(BATCH, 3).astype(DTYPE)
    msg_bytes = len(codec.encode_points(X, seq=0, stamp=0.0, source="over0"))
    # (t, seconds or inf, messages_last_turn, refits done, refit running) per status request
    pings: list[tuple[float, float, int, int, bool]] = []
    rss: list[tuple[float, float, int]] = []  # (t, VmRSS, refits started: done + running)
    with Daemon(tmp, "over", checkpoint=str(tmp / "over.ckpt"), **MODEL) as daemon:
        # A first, shorter run warms the daemon (initial fit, reservoir filling): the
        # measured run then sees the steady state the overload will meet.
        cap_warm = capacity_run(daemon.ingest, daemon.control, min(3.0, capacity_s), "warm",
                                log)
        cap = capacity_run(daemon.ingest, daemon.control, capacity_s, "cap", log)
        # Warm-up: refits on request until RSS stops growing (at most WARM_REFITS): the
        # memory a refit leaves in the allocator (see the soak) is then in the reference.
        warm_rss = [proc_memory_mib(daemon.pid)["VmRSS"]]
        for _ in range(WARM_REFITS):
            refit = daemon.req.request("refit", timeout=120.0, model="lidar")
            time.sleep(0.5)
            warm_rss.append(proc_memory_mib(daemon.pid)["VmRSS"])
            if len(warm_rss) >= 3 and warm_rss[-1] - warm_rss[-2] < 1.0:
                break
        mem_before = proc_memory_mib(daemon.pid)
        before = daemon.status()
        base = before["counters"]
        m0 = before["models"]["lidar"]
        refits0 = int(m0["refits"]) + int(m0["refit_failures"]) + int(bool(m0["refit_running"]))
        target = factor * cap["rate"]
        with contextlib.ExitStack() as stack:
            pubs = [stack.enter_context(helper_server(
                "paced", "--endpoint", daemon.ingest, "--batch", str(BATCH), "--dtype", DTYPE,
                "--source", f"over{i}", "--seed", str(i), log=log))
                for i in range(n_publishers)]
            probe = one_message(pubs, BATCH)
            settle(daemon, base, target=sum(r["sent_messages"] for r in probe), limit_s=10.0)
            pinger = Requester(daemon.ctx, daemon.control)
            t0 = time.perf_counter()
            cpu0 = proc_cpu_seconds(daemon.pid)

            def ping() -> None:
                t = time.perf_counter()
                started = -1
                try:
                    st = pinger.request("status", timeout=2.0)
                    m = st["models"]["lidar"]
                    done = int(m["refits"]) + int(m["refit_failures"])
                    pings.append((t - t0, time.perf_counter() - t,
                                  int(st.get("messages_last_turn", -1)), done,
                                  bool(m["refit_running"])))
                    started = done + int(bool(m["refit_running"]))
                except TimeoutError:
                    pings.append((t - t0, float("inf"), -1, -1, False))
                rss.append((t - t0, proc_memory_mib(daemon.pid)["VmRSS"], started))

            try:
                with Sampler(PING_PERIOD_S, ping,
                             int((seconds + 120.0) / PING_PERIOD_S)) as sampler:
                    main = legs(pubs, target / n_publishers, seconds)
                    t_sent = time.perf_counter() - t0
                    cpu = (proc_cpu_seconds(daemon.pid) - cpu0) / t_sent
                    mid = daemon.status()["counters"]
                    _, drain_s = settle(daemon, base, quiet_s=2.0, limit_s=60.0)
                    sampler.stop_event.set()
            finally:
                pinger.drop()
            final = one_message(pubs, BATCH)
            sent_each = [a["sent_messages"] + b["sent_messages"] + c["sent_messages"]
                         for a, b, c in zip(probe, main, final)]
            status, _ = settle(daemon, base, target=sum(sent_each), limit_s=10.0)
        mem_after = proc_memory_mib(daemon.pid)
        log_lines = daemon_log_lines(daemon)
    overload_report(seconds, capacity_s, factor, cap_warm, cap, refit, warm_rss, refits0, main,
                    sent_each, status, base, mid, pings, rss, t_sent, drain_s, cpu, mem_before,
                    mem_after, rcvhwm, msg_bytes, log_lines)


def overload_report(seconds, capacity_s, factor, cap_warm, cap, refit, warm_rss, refits0, main,
                    sent_each, status, base, mid, pings, rss, t_sent, drain_s, cpu, mem_before,
                    mem_after, rcvhwm, msg_bytes, log_lines) -> None:
    led = _accounted(status["counters"], base)
    sent = sum(sent_each)
    unaccounted = sent - led["accounted"]
    achieved = sum(r["rate"] for r in main)
    during = np.array([p[1] for p in pings if p[0] <= t_sent])
    after = np.array([p[1] for p in pings if p[0] > t_sent])
    # Where the slow replies fell: while a refit ran, or in the reply that first saw a
    # refit finished (its result is adopted and re-applied in the loop).
    slow_at = []
    for i, (t, sec, _, done, running) in enumerate(pings):
        if sec > GOAL_CONTROL_S:
            prev = pings[i - 1] if i else None
            what = ("refit running" if running or (prev and prev[4]) else "no refit")
            if prev and done > prev[3] >= 0:
                what += ", refit adopted"
            slow_at.append(f"t={t:.1f} s {fmt_seconds(sec)} ({what})")
    qd = percentiles(during[np.isfinite(during)])
    slow = int(np.sum(during > GOAL_CONTROL_S))
    timeouts = int(np.sum(~np.isfinite(during)))
    depth = [p[2] for p in pings if p[0] <= t_sent and p[2] >= 0]
    window = [(t, r, n) for t, r, n in rss if t <= t_sent + drain_s]
    peak = max((r for _, r, _ in window), default=float("nan"))
    quiet = [r for _, r, n in window if n == refits0]  # before any refit started
    peak_quiet = max(quiet, default=float("nan"))
    bound = rcvhwm * msg_bytes / 2**20
    # A refit holds a copy of the retained points (the reservoir) while it runs.
    pending = MODEL["window_points"] * 3 * 8 / 2**20
    growth = peak - mem_before["VmRSS"]
    growth_quiet = peak_quiet - mem_before["VmRSS"]
    third = [r for t, r, _ in rss if t <= t_sent / 3]
    last = [r for t, r, _ in rss if 2 * t_sent / 3 <= t <= t_sent]
    refit_at = next((t for t, _, n in rss if n > refits0), None)
    model = status["models"]["lidar"]
    mid_led = _accounted(mid, base)
    absorbed = BATCH * mid_led["messages_applied"] / t_sent
    pub_cpu = ", ".join(f"{100 * r['cpu_s'] / r['elapsed_s']:.0f}%" for r in main)
    rows = [
        ["capacity with back-pressure", fmt_rate(cap["rate"]),
         f"{cap['rate'] / BATCH:,.0f} msgs/s", "-", verdict(None)],
        [f"offered load ({len(main)} publisher{'s' if len(main) > 1 else ''}, achieved)",
         fmt_rate(achieved), f"{achieved / cap['rate']:.2f}x capacity",
         f">= {0.95 * factor:.2f}x", verdict(achieved >= 0.95 * factor * cap["rate"])],
        ["applied while the publishers ran", fmt_rate(absorbed),
         f"{absorbed / cap['rate']:.2f}x capacity; offered {achieved / absorbed:.2f}x this",
         "-", verdict(None)],
        ["control: status round trip p50 / p99",
         f"{fmt_seconds(qd['p50'])} / {fmt_seconds(qd['p99'])}", f"{len(during):,} requests",
         f"< {fmt_seconds(GOAL_CONTROL_S)}", verdict(qd["p99"] < GOAL_CONTROL_S)],
        ["control: max", fmt_seconds(qd["max"]) if not timeouts else "timeout",
         f"{slow} > {fmt_seconds(GOAL_CONTROL_S)}, {timeouts} timeouts (2 s)",
         f"all < {fmt_seconds(GOAL_CONTROL_S)}", verdict(slow == 0)],
        ["  during the drain: max",
         fmt_seconds(float(after.max())) if len(after) else "-",
         f"{int(np.sum(after > GOAL_CONTROL_S))} > {fmt_seconds(GOAL_CONTROL_S)}", "-",
         verdict(None)],
        [f"RSS before (after capacity runs + {len(warm_rss) - 1} refits)",
         f"{mem_before['VmRSS']:.1f} MiB",
         "after each refit: " + " ".join(f"{r:.0f}" for r in warm_rss[1:]), "-",
         verdict(None)],
        ["RSS peak before any refit in the overload", f"{peak_quiet:.1f} MiB",
         f"{growth_quiet:+.1f} MiB", f"growth <= RCVHWM x msg = {bound:.1f} MiB",
         verdict(growth_quiet <= bound)],
        ["RSS peak during overload + drain", f"{peak:.1f} MiB",
         f"{growth:+.1f} MiB (VmHWM {mem_after['VmHWM']:.1f})",
         f"growth <= {bound:.1f} + re-apply {pending:.1f} MiB", verdict(growth <= bound + pending)],
        ["  RSS max, first / last third", f"{max(third):.1f} / {max(last):.1f} MiB"
         if third and last else "-",
         "refit started at " + (f"t={refit_at:.1f} s" if refit_at is not None else "-"), "-",
         verdict(None)],
        ["messages sent", f"{sent:,}", " + ".join(f"{s:,}" for s in sent_each), "-",
         verdict(None)],
        ["  applied + rejected + lost", f"{led['accounted']:,}",
         f"{led['messages_applied']:,} + {led['rejected']:,} + {led['messages_lost']:,}", "-",
         verdict(None)],
        ["unaccounted (sent - applied - rejected - lost)", f"{unaccounted:,}", "-", "0",
         verdict(unaccounted == 0)],
        ["lost share", f"{100 * led['messages_lost'] / sent:.1f}%" if sent else "-",
         f"1 - applied/offered rate = {100 * (1 - absorbed / achieved):.1f}%", "-",
         verdict(None)],
        # Thinning under overload (overload_budget_s) keeps messages and skips rows.
        ["thinned share of applied points",
         f"{100 * led['points_thinned'] / led['points_applied']:.1f}%"
         if led["points_applied"] else "-",
         f"{led['points_thinned']:,} of {led['points_applied']:,}", "-", verdict(None)],
    ]
    print_table(
        f"Overload. {factor:g}x capacity for {seconds:g} s: {BATCH:,}-point float32 "
        f"messages ({msg_bytes / 1024:.1f} KiB), same model as the soak",
        ["measure", "measured", "detail", "goal", "verdict"],
        rows,
        [
            f"Capacity: a publisher that never runs > 128 messages ahead of messages_applied, "
            f"{capacity_s:g} s (bench_service figure 1b), after a {cap_warm['send_s']:.0f} s "
            f"warm-up run ({fmt_rate(cap_warm['rate'])}). Last refit on request: {refit}.",
            f"Control: one 'status' REQ every {PING_PERIOD_S * 1e3:.0f} ms from this process "
            "(round trip, perf_counter), from the first overload message to the end of the "
            "drain;",
            f"the verdicts use the {len(during):,} sent while the publishers ran. Daemon "
            f"messages_last_turn (messages read per loop turn) median "
            f"{int(np.median(depth)) if depth else -1}, max {max(depth) if depth else -1}.",
            f"Drain after the last send: {fmt_seconds(drain_s)} (until nothing new for 2 s). "
            f"Then one more message per source, so that every drop is a seq gap.",
            f"Ledger = 'status' counters minus those before the overload; with "
            f"{len(sent_each)} source(s) "
            + ("the per-source ledger is this one." if len(sent_each) == 1 else
               "the counters are daemon-wide: the sum over the sources is checked."),
            f"messages_received={led['messages_received']:,}, "
            f"publisher_restarts={led['publisher_restarts']}, rejected by reason: "
            f"{led['rejected_by_reason'] or 'none'}.",
            f"Memory bound: the daemon's SUB queue holds <= RCVHWM={rcvhwm:,} messages of "
            f"{msg_bytes:,} B; the rest waits in the publishers' SNDHWM queues and the kernel",
            "(not in the daemon's RSS). A refit that runs under overload also holds a copy of "
            f"the {MODEL['window_points']:,} retained points (float64);",
            f"the refit timer (refit_every_s={MODEL['refit_every_s']:g}) can fire during the "
            "overload ('refit started at'). RSS sampled with each status request;",
            f"t from the first overload send (last send at t={t_sent:.1f} s).",
            "Replies over " + fmt_seconds(GOAL_CONTROL_S) + ": "
            + ("; ".join(slow_at[:8]) + (" ..." if len(slow_at) > 8 else "")
               if slow_at else "none") + ".",
            f"Daemon CPU during the overload: {100 * cpu:.0f}% of one core (all threads); "
            f"publisher CPU {pub_cpu}, max lateness "
            f"{max(r['max_late_s'] for r in main) * 1e3:.1f} ms.",
            f"Refits in this daemon: {model['refits']} (failures {model['refit_failures']}), "
            f"checkpoints {model['checkpoints']} (failures {model['checkpoint_failures']}).",
            *log_lines,
        ],
    )


# --------------------------------------------------------------------------- main


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="streamgmm soak and overload (issue 5)")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length")
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument("--overload-publishers", type=int, default=1, choices=(1, 2, 3, 4))
    parser.add_argument("--overload-factor", type=float, default=OVERLOAD_FACTOR,
                        help="offered load / measured capacity")
    parser.add_argument("--quick", action="store_true",
                        help="1-minute soak and 15 s of overload")
    parser.add_argument("--skip", choices=("soak", "overload"), help="run only the other one")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy the daemon and helper logs to DIR at the end")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.overload_seconds, args.capacity_seconds = 1.0, 15.0, 4.0
    mode = "quick (--quick)" if args.quick else "full"
    print(header(f"streamgmm soak and overload ({mode}: soak {args.minutes:g} min, overload "
                 f"{args.overload_seconds:g} s)"))
    print(f"daemon: run_daemon(CONFIG) subprocess; {os.cpu_count()} cores shared by every "
          "process (publisher, daemon, subscriber, this one)", flush=True)
    with tempfile.TemporaryDirectory(prefix="sgsoak-") as tmp:
        try:
            for name, run in (("soak", lambda: soak(Path(tmp), args.minutes)),
                              ("overload", lambda: overload(
                                  Path(tmp), args.overload_seconds, args.capacity_seconds,
                                  args.overload_publishers, args.overload_factor))):
                if args.skip == name:
                    continue
                start = time.perf_counter()
                run()
                print(f"({name}: {time.perf_counter() - start:.1f} s; load average "
                      f"{_load()})", flush=True)
        finally:
            if args.keep_logs:
                dest = Path(args.keep_logs)
                dest.mkdir(parents=True, exist_ok=True)
                for path in Path(tmp).glob("*.log"):
                    shutil.copy(path, dest / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
