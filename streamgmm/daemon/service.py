"""The daemon: ZeroMQ ingest -> codec -> online EM -> published mixtures.

Life cycle (``run_daemon``): load the config -> start up (bind sockets, restore checkpoints)
-> one poll loop -> shut down (publish what is pending, write checkpoints, close sockets).

The loop is the only owner of model state. Each turn it

1. drains the queued point messages (bounded per turn, and by each model's
   ``max_backlog_points``), decodes and validates each one, does the per-source sequence
   accounting, and groups the good rows by model: the daemon reads ahead of what it
   absorbs, so a burst leaves ZeroMQ's queue (which drops at its high-water mark);
2. queues each model's messages in its backlog, each thinned to a uniform subset when the
   backlog would take the model longer than its ``overload_budget_s`` to absorb
   (:mod:`streamgmm.daemon.overload`), groups them into ``partial_fit`` steps by a rule of
   the messages alone (:mod:`streamgmm.daemon.steps`: rows and stamps; one per message for
   a model that publishes after every batch), and folds the closed steps into the estimator
   for about 20 ms per model; a step's row chunks run on the ``[service] threads`` pool;
3. answers control requests (snapshot, status, refit);
4. runs the timers: publish a pending update, start a periodic refit, adopt a finished
   refit, write a checkpoint; and closes the open step of a stream that stopped without an
   end marker. The poll timeout is the time to the next deadline.

The online model's whole work runs in the loop (its chunks on the pool's threads, reduced in
a fixed order), so the model is a function of the batches, the seed and the thinning
decisions (of the batches alone while the daemon keeps up, or with ``overload_budget_s =
0``). Only the explicit batch refits run on a worker thread, over a copy of the retained
points; the loop never waits for them. A finished refit is adopted by re-scoring the
retained points under it, those absorbed meanwhile included. Signals only set a flag; the
loop notices it within 100 ms.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from streamgmm import codec
from streamgmm.daemon.accounting import (
    Counters,
    ModelIngest,
    RejectionLog,
    SourceStats,
    SourceTracker,
)
from streamgmm.daemon.checkpoint import CheckpointError, find_checkpoint, save_checkpoint
from streamgmm.daemon.config import Config, ConfigError, load_config
from streamgmm.daemon.metrics import MetricsServer
from streamgmm.daemon.model import ModelRuntime, Waiter, refit_job
from streamgmm.daemon.overload import keep_fraction, thin
from streamgmm.daemon.sample import PointSample
from streamgmm.daemon.steps import idle_close_s
from streamgmm.daemon.transport import BindError, ControlRequest, Transport
from streamgmm.parallel import ThreadPool, using

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "Refusal",
    "Service",
    "capture_signals",
    "configure_logging",
    "drop_out_of_range",
    "drop_outside_range",
    "run_daemon",
]

log = logging.getLogger("streamgmm")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_INTERNAL = 70

# Messages, and seconds, spent on ingest per loop turn before control and timers get their
# turn: under overload the control socket still answers within a few tens of milliseconds.
_DRAIN_MESSAGES = 1024
_DRAIN_SECONDS = 0.03
# Seconds of online steps per model per loop turn (at least one step) before control and
# timers get their turn, for a model that can thin; what is left waits in its backlog. About
# one step of 4,096 points (K=16 full), what a turn absorbed before the backlog existed.
_ABSORB_SECONDS = 0.02
# Messages a model's backlog holds at most, whatever their rows (a flood of one-row messages
# costs ~250 bytes each in the queue): reading pauses there, as at max_backlog_points rows.
_BACKLOG_MESSAGES = 65_536
# A step of at least this many rows runs on the step thread while the loop answers status
# (a 131,072-point sweep takes 100-300 ms, a 4,096-point step 10-20 ms), polling every 5 ms.
_SERVE_FROM_ROWS = 16_384
_SERVE_POLL_MS = 5
# What an end marker puts among a model's messages of a turn: the end of its open step.
_STREAM_END = None
# Sequence numbers reserved ahead in each checkpoint: after a SIGKILL the daemon restarts
# above anything it can have published since that checkpoint, so no seq is ever reused.
_SEQ_LEASE = 100_000


# --------------------------------------------------------------------------- the service


class Refusal(LookupError):
    """A control request the daemon refuses: an ``ok: false`` reply with ``code``.

    Parameters
    ----------
    message : str
        The reply's ``error`` (for people).
    code : str
        The reply's ``code`` (for programs), one of :data:`streamgmm.codec.ERROR_CODES`.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Service:
    """The daemon. Build it from a :class:`~streamgmm.daemon.config.Config`, then :meth:`run`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.models = [ModelRuntime(m, index=i) for i, m in enumerate(config.models)]
        for model in self.models:
            # Rows the model's own ingest rules (min_range, max_range) dropped: read by the
            # status table (MODEL_STATUS) from here.
            model.ingest = ModelIngest()
        # Publishing extensions per model (by index): the uniform sample of the points
        # absorbed since the last update (sample_points > 0), and the latest non-empty
        # `frame` of the points (published as `frame` once one came).
        self.samples: list[PointSample | None] = [
            PointSample(m.sample_points, m.dim, m.seed) if m.sample_points else None
            for m in config.models
        ]
        self.frames: list[str] = ["" for _ in config.models]
        self.counters = Counters()
        self.sources = SourceTracker()
        self.rejection_log = RejectionLog()
        self.should_exit = False
        self.should_reload = False
        self.started_at = time.monotonic()
        self.transport: Transport | None = None
        self.executor: ThreadPoolExecutor | None = None
        # [service] threads: scores the row chunks of a step, or steps several models at once.
        self.pool: ThreadPool | None = None
        # Runs a long online step while the loop answers status (_step_serving_status).
        self.stepper: ThreadPoolExecutor | None = None
        self._counters_lock = threading.Lock()
        self.metrics: MetricsServer | None = None
        # Read by the metrics thread: the latest status and when the loop last turned.
        self.last_turn = time.monotonic()
        self._status_cache: tuple[float, dict] = (0.0, {})
        self.last_drain = 0
        self.ingest_empty = True  # the last read emptied the socket's queue

    # ------------------------------------------------------------ startup / shutdown

    def startup(self) -> None:
        """Bind the sockets, then restore checkpoints (errors: ConfigError / BindError).

        Endpoints first: a second daemon started on a used port fails before it reads (or
        logs restoring) the checkpoints the first one is writing.
        """
        self._warn_nested_topics()
        self.transport = Transport(self.config.service, [m.config.topic for m in self.models])
        if self.config.service.metrics:
            host, _, port = self.config.service.metrics.rpartition(":")
            try:
                self.metrics = MetricsServer(host, int(port), self._metrics_snapshot,
                                             self.config.service.stall_after_s)
            except OSError as exc:
                raise BindError("service.metrics", self.config.service.metrics,
                                exc.strerror or str(exc)) from None
        for model in self.models:
            self._restore(model)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refit")
        self.pool = ThreadPool(self.config.service.threads)
        self.stepper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step")
        now = time.monotonic()
        for model in self.models:
            if model.config.refit_every_s > 0:
                model.next_refit = now + model.config.refit_every_s
        if self.metrics is not None:
            self.metrics.start()
            log.info("metrics at %s/metrics", self.metrics.address)
        ends = self.transport.bound_endpoints()
        log.info(
            "ready models=%s ingest=%s publish=%s control=%s threads=%d",
            ",".join(m.name for m in self.models), ends["ingest"], ends["publish"],
            ends["control"], self.pool.threads,
        )

    def _warn_nested_topics(self) -> None:
        """Topics match by prefix: a model whose topic begins another's gets its points too."""
        for outer in self.models:
            for inner in self.models:
                if (inner.config.topic != outer.config.topic
                        and inner.config.topic.startswith(outer.config.topic)):
                    log.warning(
                        "model=%s topic %r is a prefix of model=%s topic %r: topics match by "
                        "prefix, so model %r also receives every message sent to %r",
                        outer.name, outer.config.topic, inner.name, inner.config.topic,
                        outer.name, inner.config.topic,
                    )

    def _restore(self, model: ModelRuntime) -> None:
        path = model.config.checkpoint
        if not path:
            return
        state, warnings, used = find_checkpoint(
            path, generations=model.config.checkpoint_generations)
        for warning in warnings:
            log.warning("checkpoint model=%s %s", model.name, warning)
        if state is None:
            if warnings:
                log.warning("checkpoint model=%s none usable at %s: starting fresh",
                            model.name, path)
            else:
                log.info("checkpoint model=%s no checkpoint yet at %s: starting fresh",
                         model.name, path)
            return
        model.restore(state)
        log.info(
            "restored model=%s seq=%d n_seen=%d from %s", model.name, model.seq, model.n_seen,
            used,
        )

    def request_exit(self, signum: int | None = None, frame=None) -> None:
        """Signal handler: only sets a flag; the loop exits within one poll timeout."""
        self.should_exit = True

    def request_reload(self, signum: int | None = None, frame=None) -> None:
        """SIGHUP handler: re-read the allowed CURVE clients at the next loop turn."""
        self.should_reload = True

    def _metrics_snapshot(self) -> tuple[dict, float]:
        return self._status_cache[1], self.last_turn

    def shutdown(self) -> None:
        """Absorb the backlog, publish pending updates, write checkpoints, close sockets."""
        for model in self.models:
            if model.backlog_rows > 0:
                # At most max_backlog_points rows: every message read is absorbed.
                log.info("model=%s absorbing its %d queued points before stopping",
                         model.name, model.backlog_rows)
            model.close_step()
            while model.step_sizes:
                self._absorb_step(model, self.pool)
            if model.changed and model.fitted:
                self._publish(model, "online")
            for waiter in model.refit_waiters + model.queued_waiters:
                self._reply(waiter.request,
                            codec.error_reply("daemon is shutting down", "shutting_down"),
                            waiter.rid)
            model.refit_waiters.clear()
            model.queued_waiters.clear()
            if model.config.checkpoint:
                self._checkpoint(model, final=True)
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()
        if self.stepper is not None:
            self.stepper.shutdown(wait=True)
        if self.transport is not None:
            self.transport.close(linger=self.config.service.sockets.linger_ms)
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped")

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Poll loop until :meth:`request_exit`."""
        assert self.transport is not None
        while not self.should_exit:
            self.last_turn = now = time.monotonic()
            if self.metrics is not None and now - self._status_cache[0] > 0.5:
                self._status_cache = (now, self._status())
            if self.should_reload:
                self.should_reload = False
                if self.config.service.curve is None:
                    log.info("SIGHUP: no [service.curve] in the config, nothing to reload")
                else:
                    self.transport.reload_clients()
                    log.info("SIGHUP: reloaded allowed clients from %s",
                             self.config.service.curve.allowed_clients)
            ingest_ready, control_ready = self.transport.poll(self._poll_timeout_ms())
            if ingest_ready:
                self._drain_ingest()
            if not ingest_ready or self.ingest_empty:
                self._close_idle_steps()
            self._absorb_backlogs()
            if control_ready:
                self._drain_control()
            self._run_timers()

    def _poll_timeout_ms(self) -> float:
        now = time.monotonic()
        deadline = now + 0.1  # signals are noticed within 100 ms
        if any(m.step_sizes for m in self.models):
            return 0.0  # queued steps to absorb: look at the sockets, do not wait on them
        for model in self.models:
            if model.steps.open_messages:
                deadline = min(deadline, model.last_admitted
                               + idle_close_s(model.config.publish_every_s))
            if model.refit_future is not None:
                deadline = min(deadline, now + 0.005)
            if model.changed and model.fitted:
                deadline = min(deadline, model.last_publish + model.config.publish_every_s)
            deadline = min(deadline, model.next_refit)
            if model.dirty:
                deadline = min(deadline, model.next_checkpoint)
        return max(0.0, (deadline - now) * 1000.0)

    # ------------------------------------------------------------ ingest

    def _drain_ingest(self) -> None:
        """Read the queued point messages into the models' backlogs (thinned where a budget
        overflows, :meth:`_admit`).

        The daemon reads ahead of what it absorbs: every queued message (at most
        ``_DRAIN_MESSAGES`` or ``_DRAIN_SECONDS`` a turn) leaves ZeroMQ's queue, whose
        high-water mark would drop whole messages, for the backlog, which the models absorb
        for about ``_ABSORB_SECONDS`` each per turn. A burst (a recording replayed at full
        speed) is thus absorbed whole, late, up to ``max_backlog_points`` rows queued in a
        model; reading pauses there, and ZeroMQ's queue holds the rest.
        """
        batches: dict[int, list] = {}
        self.last_drain = self._read_points(batches, time.monotonic() + _DRAIN_SECONDS)
        for index, parts in batches.items():
            self._admit(self.models[index], parts)

    def _read_points(self, batches: dict[int, list], deadline: float) -> int:
        """Read and validate queued point messages into ``batches`` (model index -> its
        messages) until none is queued, ``_DRAIN_MESSAGES`` were read, ``deadline`` passed or
        a model's backlog would hold ``max_backlog_points`` rows; returns the messages read."""
        # Rows and messages queued per model, these reads included.
        rows = [m.backlog_rows for m in self.models]
        messages = [len(m.backlog) for m in self.models]
        read = 0
        self.ingest_empty = False
        while read < _DRAIN_MESSAGES and not self._backlogs_full(rows, messages):
            frames = self.transport.recv_points()
            if frames is None:
                self.ingest_empty = True  # every queued message was read
                break
            read += 1
            for index, n_rows in self._accept(frames, batches):
                rows[index] += n_rows
                messages[index] += 1
            if time.monotonic() > deadline:
                break
        return read

    def _backlogs_full(self, rows: list[int] | None = None,
                       messages: list[int] | None = None) -> bool:
        """Does a model's backlog hold ``max_backlog_points`` rows or ``_BACKLOG_MESSAGES``
        messages (reading pauses)?"""
        if rows is None or messages is None:
            rows = [m.backlog_rows for m in self.models]
            messages = [len(m.backlog) for m in self.models]
        return any(r >= m.config.max_backlog_points or n >= _BACKLOG_MESSAGES
                   for r, n, m in zip(rows, messages, self.models, strict=True))

    def _admit(self, model: ModelRuntime, parts: list[tuple[np.ndarray, float, str]]) -> None:
        """Queue one turn's messages of a model in its backlog, thinned if it overflows.

        The rule (:func:`~streamgmm.daemon.overload.keep_fraction`): when the backlog's rows,
        these included, would take longer than ``overload_budget_s`` at the model's measured
        seconds per point, each message is cut to a uniform subset of the share that fills
        what the budget has room for, which stands for all of its points.
        """
        keep = 1.0
        if model.can_thin:
            incoming = sum(len(part[0]) for part in parts if part is not _STREAM_END)
            keep = keep_fraction(incoming, model.backlog_rows,
                                 model.cost.seconds_per_point, model.config.overload_budget_s)
        thinned = 0
        for part in parts:
            if part is _STREAM_END:
                model.close_step()
                continue
            # (rows, stamp, frame[, the source's SourceStats, which counts its thinned points])
            X, stamp, frame = part[:3]
            kept = thin(X, keep, model.thin_rng) if keep < 1.0 else X
            thinned += len(X) - len(kept)
            if len(part) > 3 and part[3] is not None:
                part[3].points_thinned += len(X) - len(kept)
            model.backlog.append((kept, len(X), stamp, frame))
            model.backlog_rows += len(kept)
            model.step_sizes.extend(model.steps.add(len(kept), stamp,
                                                    thinned=len(kept) < len(X)))
        model.last_admitted = time.monotonic()
        model.points_thinned += thinned
        self.counters.points_thinned += thinned

    def _close_idle_steps(self) -> None:
        """Close the open step of each model whose stream stopped without an end marker: the
        socket's queue was read to the end (other models' streams may go on), and no message
        came for the model for :func:`idle_close_s`."""
        now = time.monotonic()
        for model in self.models:
            idle = idle_close_s(model.config.publish_every_s)
            if model.steps.open_messages and now - model.last_admitted >= idle:
                model.close_step()

    def _absorb_backlogs(self, seconds: float = _ABSORB_SECONDS) -> None:
        """Fold queued messages in: per model at least one step, then more for ``seconds``
        (what is left waits for the next turns, after control and the timers had theirs).

        Only closed steps are absorbed: how messages form steps is decided when they are
        admitted, by :mod:`streamgmm.daemon.steps` (one message for a model that publishes
        after every batch, else consecutive messages up to ``model.steps.limit`` rows within
        ``publish_every_s`` of stamps), never by how many are queued here.

        With ``[service] threads`` > 1, models that publish on a timer (``publish_every_s``
        > 0) and have points queued step side by side, one thread each: a model is touched
        by one thread only, and its steps' chunks then run in that thread (the same bits).
        """
        pool = self.pool
        timed = [m for m in self.models if m.step_sizes and m.config.publish_every_s > 0]
        rest = self.models
        if pool is not None and pool.threads > 1 and len(timed) > 1:
            pool.map(lambda model: self._absorb_for(model, seconds, None, serve=False), timed)
            rest = [m for m in self.models if m not in timed]
        for model in rest:
            self._absorb_for(model, seconds, pool)

    def _absorb_for(self, model: ModelRuntime, seconds: float, pool: ThreadPool | None,
                    serve: bool = True) -> None:
        """A model's steps from its backlog for about ``seconds`` (at least one step);
        ``pool`` scores their row chunks; ``serve``: see :meth:`_absorb`."""
        deadline = time.monotonic() + seconds
        while model.step_sizes:
            self._absorb_step(model, pool, serve)
            if time.monotonic() > deadline:
                break

    def _absorb_step(self, model: ModelRuntime, pool: ThreadPool | None = None,
                     serve: bool = True) -> None:
        step = [model.backlog.popleft() for _ in range(model.step_sizes.popleft())]
        size = sum(len(X) for X, _, _, _ in step)
        model.backlog_rows -= size
        X = step[0][0] if len(step) == 1 else np.concatenate([x for x, _, _, _ in step])
        represented = sum(n for _, n, _, _ in step)
        frame = next((f for _, _, _, f in reversed(step) if f), "")
        self._absorb(model, X, max(t for _, _, t, _ in step), frame,
                     represented if represented > len(X) else None, pool, serve)

    def _step_serving_status(self, model: ModelRuntime, X: np.ndarray, stamp: float,
                             represented: int | None) -> None:
        """Run one long step on the step thread and answer control meanwhile.

        The step is the same call as inline (the model is the same bit for bit); the loop
        waits on it, reading point messages into the backlogs meanwhile. ``status``, and
        ``snapshot`` of the stepping model, are answered at once with the state before the
        step (a consistent view: nothing of the stepping model is read while it changes); a
        snapshot of another model is answered as usual (the step touches only its own
        model); every other request waits and is handled, in order, after the step.
        """
        status = self._status()
        before = model.payload_fields("snapshot") if model.fitted else None
        seen = model.n_seen
        extensions = self._extensions(model, take_sample=False)
        waiting: list[ControlRequest] = []
        context = contextvars.copy_context()  # the thread pool of the caller's `using`
        future = self.stepper.submit(context.run, model.absorb, X, stamp, represented)
        while not future.done():
            self.last_turn = time.monotonic()  # /healthz: the loop is alive
            # Point messages keep being read into the backlogs meanwhile (the step thread
            # touches its model's estimator only), unless the daemon is stopping.
            if self.should_exit or self._backlogs_full():
                control = self.transport.poll_control(_SERVE_POLL_MS)
            else:
                ingest, control = self.transport.poll(_SERVE_POLL_MS)
                if ingest:
                    self._drain_ingest()
            if not control:
                continue
            for _ in range(64):
                request = self.transport.recv_control()
                if request is None:
                    break
                msg = _servable_request(request)
                if msg is None:
                    waiting.append(request)
                elif msg["op"] == "status":
                    self._reply(request, status, _request_id(msg))
                elif self._stepping_target(msg, model):
                    rid = _request_id(msg)
                    try:
                        self._send_snapshot(request, model, before, seen, extensions, rid)
                    except Refusal as err:
                        self._reply(request, codec.error_reply(str(err.args[0]), err.code), rid)
                else:
                    self._handle_control(request)
        try:
            future.result()
        finally:
            for request in waiting:
                self._handle_control(request)

    def _stepping_target(self, msg: dict, model: ModelRuntime) -> bool:
        """Does the ``snapshot`` request ``msg`` ask for ``model``, the one stepping?"""
        try:
            return self._find_model(msg) is model
        except LookupError:
            return False  # answered as usual: the refusal names what is wrong

    def _absorb_backlog(self, model: ModelRuntime,
                        parts: list[tuple[np.ndarray, float, str]]) -> None:
        """Admit ``parts`` and absorb the model's whole backlog, its open step closed
        (tests)."""
        self._admit(model, parts)
        model.close_step()
        while model.step_sizes:
            self._absorb_step(model, self.pool)

    def _absorb(self, model: ModelRuntime, X: np.ndarray, stamp: float,
                frame: str = "", represented: int | None = None,
                pool: ThreadPool | None = None, serve: bool = True) -> None:
        """One online step of ``model``. A step of at least ``_SERVE_FROM_ROWS`` rows (a
        whole sweep: 100-300 ms) runs on the step thread while this one answers ``status``
        (``serve``, the loop's thread only): see :meth:`_step_serving_status`."""
        try:
            with using(pool):  # the step's row chunks on [service] threads
                if serve and len(X) >= _SERVE_FROM_ROWS and self.stepper is not None:
                    self._step_serving_status(model, X, stamp, represented)
                else:
                    model.absorb(X, stamp, represented)
        except Exception:  # a numerical failure must not take the daemon down
            log.exception("update failed model=%s points=%d", model.name, len(X))
            with self._counters_lock:  # models may step side by side
                self.counters.reject("model_error")
            return
        sample = self.samples[model.index]
        if sample is not None:
            sample.add(X)
        if frame:
            self.frames[model.index] = frame
        if model.config.publish_every_s == 0 and model.fitted:
            self._publish(model, "online")

    def _accept(self, frames: list[bytes], batches: dict) -> list[tuple[int, int]]:
        """Validate one message and queue its rows for every matching model.

        The rows go to ``batches`` (model index -> messages), admitted to the models'
        backlogs once the turn's read is over (:meth:`_admit`). Returns ``(model index,
        rows)`` of each part queued.
        """
        c = self.counters
        c.messages_received += 1
        if len(frames) != 2:
            self._reject("frames", None, None, f"{len(frames)} frames, expected 2")
            return []
        topic, payload = frames
        matching = [i for i, m in enumerate(self.models) if topic.startswith(m.topic)]
        if not matching:
            self._reject("topic", topic, None, "no model subscribes to a prefix of it")
            return []
        limit = max(self.models[i].config.max_points_per_message for i in matching)
        try:
            msg = codec.decode_points(payload, max_points=limit)
        except codec.DecodeError as err:
            source = None
            if err.seq is not None:  # its seq was read: the source's sequence counts it
                source = err.source or topic.decode("utf-8", "replace")
                self._observe_seq(source, err.seq)
            self._reject(err.reason, topic, source, str(err))
            return []
        source = msg.source or topic.decode("utf-8", "replace")
        if msg.end:
            # An end marker: the publisher's stream is complete up to here (docs/protocol.md),
            # so it closes the open step of every model that reads it, after the messages
            # before it.
            c.messages_received -= 1
            c.end_markers += 1
            self._observe_seq(source, msg.seq, end=True, first_seq=msg.first_seq)
            for i in matching:
                batches.setdefault(i, []).append(_STREAM_END)
            return []
        if self.sources.is_copy(source, msg.seq, msg.stamp):
            self._reject("dup", topic, source, f"seq {msg.seq} again, with the same stamp: a "
                         "copy of the message before it (not applied twice)")
            return []
        stats = self._observe_seq(source, msg.seq, stamp=msg.stamp)
        c.rows_dropped_nonfinite += msg.rows_dropped_nonfinite
        stats.rows_dropped_nonfinite += msg.rows_dropped_nonfinite
        X = np.asarray(msg.points, dtype=np.float64)
        bound = min(self.models[i].config.max_abs_coordinate for i in matching)
        X, dropped = drop_out_of_range(X, bound)
        c.rows_dropped_range += dropped
        if len(X) == 0:
            self._reject("empty", topic, source,
                         f"no row left of {msg.rows_dropped_nonfinite + dropped} "
                         "(NaN/Inf or beyond max_abs_coordinate)")
            return []
        applied = 0
        queued: list[tuple[int, int]] = []
        reason = "dim"
        for i in matching:
            model = self.models[i]
            if X.shape[1] != model.config.dim:
                continue
            if len(X) > model.config.max_points_per_message:
                reason = "too_large"
                continue
            Xm = X
            if model.config.min_range > 0 or model.config.max_range > 0:
                Xm, below, beyond = drop_outside_range(X, model.config.min_range,
                                                       model.config.max_range)
                model.ingest.rows_below_min_range += below
                model.ingest.rows_beyond_max_range += beyond
                if len(Xm) == 0:
                    reason = "empty"
                    continue
            # Admitted after the read, into the steps of streamgmm.daemon.steps (_admit).
            batches.setdefault(i, []).append((Xm, msg.stamp, msg.frame, stats))
            queued.append((i, len(Xm)))
            applied = max(applied, len(Xm))
        if applied:
            c.messages_applied += 1
            c.points_applied += applied
            stats.messages_applied += 1
            stats.points_applied += applied
        elif reason == "dim":
            wanted = ", ".join(f"{self.models[i].name!r} has dim {self.models[i].config.dim}"
                               for i in matching)
            self._reject("dim", topic, source, f"{X.shape[1]}-D points; model {wanted}")
        elif reason == "empty":
            self._reject("empty", topic, source,
                         f"no row of {len(X)} within the model's min_range/max_range")
        else:
            self._reject(reason, topic, source,
                         f"{len(X)} points; more than max_points_per_message")
        return queued

    def _observe_seq(self, source: str, seq: int, end: bool = False,
                     first_seq: int | None = None, stamp: float = math.nan) -> SourceStats:
        """Follow ``source``'s sequence (a point message, or an end marker with the first
        seq of its run): count lost messages and restarts; returns the source's record."""
        if end:
            lost, restarted = self.sources.observe_end(source, seq, first_seq)
        else:
            lost, restarted = self.sources.observe(source, seq, stamp)
        self.counters.messages_lost += lost
        self.counters.publisher_restarts += restarted
        return self.sources.stats(source)

    def _reject(self, reason: str, topic: bytes | None, source: str | None,
                detail: str) -> None:
        """Count a rejected message; log the first per source and reason (then rarely)."""
        self.counters.reject(reason)
        if source is not None:
            stats = self.sources.stats(source)
            if stats is not None:
                stats.messages_rejected += 1
        shown_topic = "?" if topic is None else topic.decode("utf-8", "replace")
        key = source if source is not None else f"topic {shown_topic}"
        unlogged = self.rejection_log.should_log(key, reason)
        if unlogged is None:
            return
        more = (f" ({unlogged} more since the last line)" if unlogged else
                "; repeats are counted in status (counters.rejected), logged at most once a "
                "minute")
        log.warning("rejected message reason=%s source=%s topic=%s: %s%s", reason,
                    source or "?", shown_topic[:200], detail, more)

    # ------------------------------------------------------------ publishing

    def _extensions(self, model: ModelRuntime, *, take_sample: bool) -> dict:
        """The update's publishing extensions: ``frame``, and ``sample``/``sample_of``.

        ``take_sample`` hands the model's sample over (a published update) and starts the
        next one; a snapshot leaves it for the next update.
        """
        extra: dict[str, object] = {}
        if self.frames[model.index]:
            extra["frame"] = self.frames[model.index]
        sample = self.samples[model.index]
        if take_sample and sample is not None:
            taken = sample.take()
            if taken is not None:
                extra["sample"] = codec.encode_array(taken[0], "<f4")
                extra["sample_of"] = taken[1]
        return extra

    def _publish(self, model: ModelRuntime, kind: str) -> int:
        model.seq += 1
        self.transport.publish(
            model.update_topic,
            model.update_payload(kind, model.seq, **self._extensions(model, take_sample=True)),
        )
        model.changed = False
        model.ll_sum, model.ll_points = 0.0, 0
        model.last_publish = time.monotonic()
        model.dirty = True
        if model.config.checkpoint and model.seq >= model.seq_lease:
            # The lease is used up: renew it now so a crash cannot reuse a number.
            self._checkpoint(model)
        return model.seq

    # ------------------------------------------------------------ control

    def _drain_control(self) -> None:
        for _ in range(64):
            request = self.transport.recv_control()
            if request is None:
                return
            self._handle_control(request)

    def _reply(self, request: ControlRequest, reply: dict | bytes, rid=None) -> None:
        if isinstance(reply, dict):
            if rid is not None:
                reply = {**reply, "id": rid}
            payload = codec.encode_reply(reply)
        else:
            payload = reply
        self.transport.reply(request, payload)

    def _handle_control(self, request: ControlRequest) -> None:
        try:
            self._answer(request)
        except Exception as exc:  # whatever a peer sends, the daemon keeps serving
            log.exception("control request failed")
            self._reply(request, codec.error_reply(f"internal error: {type(exc).__name__}",
                                                    "internal_error"))

    def _answer(self, request: ControlRequest) -> None:
        try:
            msg = codec.decode_request(request.payload)
        except codec.DecodeError as err:
            self._reply(request, codec.error_reply(f"malformed request ({err.reason}): {err}",
                                                    "malformed_request"))
            return
        rid = _request_id(msg)
        op = msg["op"]
        handler = self.CONTROL_HANDLERS.get(op)
        try:
            if handler is None:
                raise Refusal(
                    f"unknown op {op!r}; expected one of {', '.join(self.CONTROL_HANDLERS)}",
                    "unknown_op",
                )
            handler(self, request, msg, rid)
        except LookupError as err:
            code = err.code if isinstance(err, Refusal) else "bad_request"
            self._reply(request, codec.error_reply(str(err.args[0]), code), rid)

    # ------------------------------------------------------------ control ops
    # Each handler answers (or queues the answer to) one request; a LookupError becomes an
    # ok:false reply (a Refusal carries its code; any other: bad_request). Register a new op
    # in CONTROL_HANDLERS and in codec.CONTROL_OPS.

    def _op_snapshot(self, request: ControlRequest, msg: dict, rid: object) -> None:
        model = self._find_model(msg)
        fields = model.payload_fields("snapshot") if model.fitted else None
        self._send_snapshot(request, model, fields, model.n_seen,
                            self._extensions(model, take_sample=False), rid)

    def _send_snapshot(self, request: ControlRequest, model: ModelRuntime,
                       fields: dict | None, n_seen: int, extensions: dict, rid: object) -> None:
        """Reply with a snapshot of ``fields`` (:meth:`ModelRuntime.payload_fields`, taken
        now or, during a long step, before it); ``None``: no parameters yet (a Refusal)."""
        if fields is None:
            raise Refusal(
                f"model {model.name!r} has no parameters yet "
                f"({n_seen} of {model.config.components} points needed)",
                "no_parameters",
            )
        # Labelled with the seq of the last published update (the Clone pattern).
        extra = {"ok": True} if rid is None else {"ok": True, "id": rid}
        self._reply(request, codec.encode_update(seq=model.seq, stamp=time.time(), **fields,
                                                 **extensions, **extra))

    def _op_status(self, request: ControlRequest, msg: dict, rid: object) -> None:
        self._reply(request, self._status(), rid)

    def _op_refit(self, request: ControlRequest, msg: dict, rid: object) -> None:
        model = self._find_model(msg)
        if not model.fitted:
            raise Refusal(f"model {model.name!r} has no parameters yet to refit",
                          "no_parameters")
        if model.refit_future is None:
            model.refit_waiters.append(Waiter(request, rid))
            self._start_refit(model)
        else:
            # The running refit works on an older copy of the retained points: this request
            # is answered by the next one, started as soon as the running one is adopted.
            model.queued_waiters.append(Waiter(request, rid))

    def _op_load(self, request: ControlRequest, msg: dict, rid: object) -> None:
        """Replace a model's parameters by a mixture fitted elsewhere (docs/protocol.md)."""
        model = self._find_model(msg)
        try:
            fields = codec.decode_load(msg, model.config.covariance_type)
        except codec.DecodeError as err:
            raise Refusal(f"load refused: {err}", "load_refused") from None
        if model.refit_future is not None:
            raise Refusal(f"load refused: a refit of {model.name!r} is running; retry", "busy")
        try:
            model.load(fields)
        except LookupError as err:  # the mixture does not fit the model
            raise Refusal(str(err.args[0]), "load_refused") from None
        seq = self._publish(model, "refit")
        log.info("load model=%s weight=%g seq=%d", model.name, model.loaded_weight, seq)
        self._reply(request, {"ok": True, "seq": seq}, rid)

    def _op_source(self, request: ControlRequest, msg: dict, rid: object) -> None:
        """What one publisher's messages became (docs/protocol.md, ``source``)."""
        source = msg.get("source")
        if not isinstance(source, str) or not source:
            raise Refusal("source needs 'source': the publisher id (a non-empty string)",
                          "bad_request")
        stats = self.sources.stats(source)
        body = (stats if stats is not None else SourceStats()).as_dict()
        self._reply(request, {"ok": True, "source": source, "known": stats is not None,
                              **body}, rid)

    #: op -> handler(service, request, decoded message, id to echo or None).
    CONTROL_HANDLERS: dict[str, Callable[[Service, ControlRequest, dict, object], None]] = {
        "snapshot": _op_snapshot,
        "status": _op_status,
        "refit": _op_refit,
        "load": _op_load,
        "source": _op_source,
    }

    def _find_model(self, msg: dict) -> ModelRuntime:
        name = msg.get("model")
        if name is None:
            if len(self.models) == 1:
                return self.models[0]
            raise Refusal(
                "this daemon has several models: name one with 'model' "
                f"({', '.join(m.name for m in self.models)})",
                "model_required",
            )
        for model in self.models:
            if model.name == name:
                return model
        raise Refusal(
            f"no model named {name!r}; models: {', '.join(m.name for m in self.models)}",
            "unknown_model",
        )

    def _status(self) -> dict:
        return {
            "ok": True,
            "uptime_s": time.monotonic() - self.started_at,
            "models": {m.name: m.status() for m in self.models},
            "counters": self.counters.as_dict(),
            # Point messages read in the last loop turn (at most 1,024): a turn that reads the
            # maximum means more were queued. ZeroMQ does not tell how many are queued.
            "messages_last_turn": self.last_drain,
        }

    # ------------------------------------------------------------ timers

    def _run_timers(self) -> None:
        now = time.monotonic()
        for model in self.models:
            if model.refit_future is not None and model.refit_future.done():
                self._finish_refit(model)
            if (model.changed and model.fitted
                    and now >= model.last_publish + model.config.publish_every_s):
                self._publish(model, "online")
            if now >= model.next_refit:
                model.next_refit = now + model.config.refit_every_s
                if model.fitted:
                    self._start_refit(model)
            if model.config.checkpoint and model.dirty and now >= model.next_checkpoint:
                self._checkpoint(model)
            if model.dirty and model.next_checkpoint == math.inf:
                model.next_checkpoint = now + model.config.checkpoint_every_s

    def _start_refit(self, model: ModelRuntime) -> None:
        if model.refit_future is not None:
            return  # one at a time (a periodic refit skips its turn)
        online = model.estimator.online_
        X = online.retained.points
        seed = int(online.rng.integers(0, 2**31 - 1))
        model.refit_future = self.executor.submit(
            refit_job, X, model.estimator.params_, model.config.reg_covar, seed
        )
        log.info("refit started model=%s points=%d reason=%s", model.name, len(X),
                 "request" if model.refit_waiters else "schedule")

    def _finish_refit(self, model: ModelRuntime) -> None:
        future, model.refit_future = model.refit_future, None
        waiters, model.refit_waiters = model.refit_waiters, []
        try:
            result, seconds = future.result()
            # Points that arrived during the refit are in the retained blocks: adopting
            # re-scores every block under the refit's parameters.
            model.estimator.adopt(result.params)
        except Exception as exc:
            model.refit_failures += 1
            log.error("refit failed model=%s: %s", model.name, exc)
            for waiter in waiters:
                self._reply(waiter.request,
                            codec.error_reply(f"refit failed: {exc}", "refit_failed"), waiter.rid)
            self._start_queued_refit(model)
            return
        model.refits += 1
        model.last_refit_seconds = seconds
        _release_freed_memory()
        seq = self._publish(model, "refit")
        log.info(
            "refit done model=%s points=%d seconds=%.3f refit_mean_log_likelihood=%.4f seq=%d",
            model.name, result.n_points, seconds, result.lower_bound, seq,
        )
        for waiter in waiters:
            self._reply(waiter.request, {"ok": True, "seq": seq}, waiter.rid)
        self._start_queued_refit(model)

    def _start_queued_refit(self, model: ModelRuntime) -> None:
        """Start the refit that answers requests made while the previous one ran."""
        if model.queued_waiters and model.fitted:
            model.refit_waiters, model.queued_waiters = model.queued_waiters, []
            self._start_refit(model)

    def _checkpoint(self, model: ModelRuntime, final: bool = False) -> None:
        """Write the model's state; a failure is logged and counted, ingest goes on."""
        started = time.perf_counter()
        # A clean shutdown needs no reservation; otherwise reserve seqs ahead (see above).
        lease = model.seq if final else model.seq + _SEQ_LEASE
        try:
            size = save_checkpoint(
                model.config.checkpoint, model.state(lease),
                generations=model.config.checkpoint_generations,
            )
        except (CheckpointError, OSError) as exc:
            model.checkpoint_failures += 1
            log.error("checkpoint failed model=%s path=%s: %s", model.name,
                      model.config.checkpoint, exc)
            model.next_checkpoint = time.monotonic() + model.config.checkpoint_every_s
            return
        model.seq_lease = lease
        model.checkpoints += 1
        model.dirty = False
        model.next_checkpoint = math.inf
        model.last_checkpoint_seconds = time.perf_counter() - started
        log.debug("checkpoint model=%s bytes=%d seconds=%.4f", model.name, size,
                  model.last_checkpoint_seconds)


def _request_id(msg: dict) -> int | str | None:
    """The request's ``id`` to echo (extension): an int or a string, else none."""
    rid = msg.get("id")
    return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None


def _servable_request(request: ControlRequest) -> dict | None:
    """The decoded request if it is a well-formed ``status`` or ``snapshot`` (answerable
    during a long step), else ``None``."""
    try:
        msg = codec.decode_request(request.payload)
    except codec.DecodeError:
        return None
    return msg if msg.get("op") in ("status", "snapshot") else None


def drop_out_of_range(X: np.ndarray, bound: float) -> tuple[np.ndarray, int]:
    """``X`` without the rows that have a coordinate beyond ``bound`` in magnitude.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Finite points (the codec has dropped the NaN and infinite rows).
    bound : float
        The model's ``max_abs_coordinate``.

    Returns
    -------
    X : ndarray
        The rows within range (``X`` itself when all are).
    dropped : int
        How many rows were dropped.
    """
    # Two reductions over the whole array first (~8 us per 10,000 3-D points, against
    # ~380 us for the per-row maximum, which is only computed when some row is out).
    if len(X) == 0 or (X.max() <= bound and X.min() >= -bound):
        return X, 0
    in_range = np.max(np.abs(X), axis=1) <= bound
    return X[in_range], int(len(X) - np.count_nonzero(in_range))


def drop_outside_range(X: np.ndarray, min_range: float,
                       max_range: float) -> tuple[np.ndarray, int, int]:
    """``X`` without the rows nearer than ``min_range`` or farther than ``max_range`` from
    the sensor origin.

    The range of a row is the Euclidean norm of its first three coordinates (of both for
    2-D points, of the one for 1-D): x, y, z of a point cloud in its sensor's frame.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Finite points.
    min_range, max_range : float
        The model's limits; ``0`` means no limit.

    Returns
    -------
    X : ndarray
        The rows within range (``X`` itself when all are).
    below, beyond : int
        Rows dropped for being nearer than ``min_range`` / farther than ``max_range``.
    """
    if len(X) == 0:
        return X, 0, 0
    xyz = X[:, : min(X.shape[1], 3)]
    r2 = np.einsum("ij,ij->i", xyz, xyz)
    near = r2 < min_range * min_range if min_range > 0 else np.zeros(len(X), dtype=bool)
    far = r2 > max_range * max_range if max_range > 0 else np.zeros(len(X), dtype=bool)
    below, beyond = int(np.count_nonzero(near)), int(np.count_nonzero(far & ~near))
    if not below and not beyond:
        return X, 0, 0
    return X[~(near | far)], below, beyond


def _release_freed_memory() -> None:
    """Give the refit's freed temporaries back to the OS (glibc only; a no-op elsewhere).

    glibc keeps the refit thread's freed arrays in that thread's arena once its dynamic mmap
    threshold has grown, so RSS steps up over the first refits before it levels off
    (soak benchmark: 144 -> 191 MiB). With a refit every 3 s the plateau measured 188 MiB
    without this call and 173 MiB with it.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# glibc's mallopt parameter number (malloc.h) and the size from which arrays are mmapped.
_M_MMAP_THRESHOLD = -3
_MMAP_FROM_BYTES = 1 << 20


def _fix_mmap_threshold() -> None:
    """Serve every allocation of 1 MiB or more by its own mmap, returned to the OS on free.

    glibc raises its mmap threshold to the size of the largest block freed so far (up to 32
    MiB): after the first refits freed their (points x K) temporaries, later ones came from
    the heap and stayed there, and RSS grew by a quarter over three refits before it levelled
    off (soak benchmark). A fixed threshold stops that; the online steps' arrays stay below it
    (4,096 x 16 float64 is 512 KiB) and keep the heap's speed. glibc only; a no-op elsewhere.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------- entry point


def configure_logging(level: str) -> None:
    """One line per event on stderr."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@contextlib.contextmanager
def capture_signals(service: Service) -> Iterator[None]:
    """SIGTERM and SIGINT ask ``service`` to exit, SIGHUP to reload, inside the block.

    The previous handlers come back when the block ends, so after the shutdown it wraps: a
    second SIGTERM during shutdown only sets the flag again. Signals can only be handled in
    the main thread; elsewhere (a daemon run from a thread) nothing is installed (the way
    uvicorn's ``Server.capture_signals`` does it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {
        signal.SIGTERM: service.request_exit,
        signal.SIGINT: service.request_exit,
        signal.SIGHUP: service.request_reload,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_daemon(path: str | os.PathLike, log_level: str | None = None) -> int:
    """Run the daemon of config file ``path`` in the foreground; returns the exit code.

    Exit codes: 0 after SIGTERM/SIGINT (checkpoints written), 2 for a configuration error
    (unknown key, wrong type, impossible value, endpoint that cannot be bound, checkpoint of
    another model), 70 for an internal error.
    """
    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"streamgmm: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(log_level or config.service.log_level)
    # One BLAS thread: the loop's matrix products are small (points x ~10 x K), where a
    # second BLAS thread only adds spin-waiting, and the refit worker and the ingest loop
    # already use both cores. Measured: 15x faster ingest on a loaded 2-core machine.
    from threadpoolctl import threadpool_limits

    _blas_limit = threadpool_limits(limits=1)  # noqa: F841 (kept for the process lifetime)
    _fix_mmap_threshold()
    service = Service(config)
    try:
        service.startup()
    except (ConfigError, BindError) as err:
        print(f"streamgmm: config error: {err}", file=sys.stderr)
        if service.transport is not None:
            service.transport.close(linger=0)
        return EXIT_CONFIG
    with capture_signals(service):
        try:
            service.run()
        except Exception:
            log.exception("internal error; writing checkpoints and exiting")
            service.shutdown()
            return EXIT_INTERNAL
        service.shutdown()
    return EXIT_OK
