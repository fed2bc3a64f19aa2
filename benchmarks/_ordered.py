"""Shared pieces of ``bench_order.py`` and ``bench_drift.py``: held-out splits, batch EM
references, scikit-learn's EM point rate, timed online passes, and a real daemon started with
``streamgmm run CONFIG`` that is fed a stream in recorded order over ipc://.

Everything here goes through the public API (``streamgmm.GaussianMixture``, the CLI, the
clients in ``streamgmm.client``), so the figures measure whatever the algorithm is when they
run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_service import Daemon as _ServiceDaemon  # noqa: E402

#: Textbook stepwise EM: no re-scoring, no moves, step (t + 2) ** -0.6.
TEXTBOOK = {"effort": 0.0, "moves": False, "step_decay": 0.6, "step_offset": 2.0}

#: Ablation switches (module constants of streamgmm.core.effort, .moves, .schedule, .blocks):
#: label -> changes.
#: MAX_PASSES = 0 turns re-scoring off; the credit it would have spent then all goes to moves.
ABLATIONS = {
    "no re-scoring (MAX_PASSES=0)": (("streamgmm.core.effort", "MAX_PASSES", 0),),
    "no births/splits (BIRTH_CYCLE=())": (("streamgmm.core.schedule", "BIRTH_CYCLE", ()),),
    "no candidates (RESTARTS=False)": (("streamgmm.core.schedule", "RESTARTS", False),),
    "no refine candidates (CANDIDATE_CYCLE=restart)": (
        ("streamgmm.core.schedule", "CANDIDATE_CYCLE", ("restart",)),),
    "no k-means restarts (CANDIDATE_CYCLE=refine)": (
        ("streamgmm.core.schedule", "CANDIDATE_CYCLE", ("refine",)),),
    "every retained row re-scored (SCORED_ROWS=inf)": (
        ("streamgmm.core.blocks", "SCORED_ROWS", float("inf")),),
    "no re-seeding (RESEED=False)": (("streamgmm.core.schedule", "RESEED", False),),
    "no novelty boost (NOVELTY_CAP=0)": (("streamgmm.core.effort", "NOVELTY_CAP", 0.0),),
    "no early boost (WARM_POINTS=0)": (("streamgmm.core.effort", "WARM_POINTS", 0),),
    "no exact merge selection (PAIR_CANDIDATES=0)": (
        ("streamgmm.core.moves", "PAIR_CANDIDATES", 0),),
    "moves kept on the mean gain (JUDGE_Z=0)": (("streamgmm.core.moves", "JUDGE_Z", 0.0),),
}


@contextlib.contextmanager
def switches(changes=()):
    """Set module constants of streamgmm for the block, and restore them afterwards.

    ``changes`` = ``((module, name, value), ...)``; library runs only (a daemon is another
    process and keeps the defaults).
    """
    import importlib

    saved = []
    try:
        for module, name, value in changes:
            mod = importlib.import_module(module)
            if not hasattr(mod, name):
                raise AttributeError(f"{module} has no switch {name}")
            saved.append((mod, name, getattr(mod, name)))
            setattr(mod, name, value)
        yield
    finally:
        for mod, name, value in reversed(saved):
            setattr(mod, name, value)


@contextlib.contextmanager
def cpu_hogs(n: int = 2, seconds: float = 120.0):
    """``n`` busy-loop ``python -c`` processes (each ends by itself after ``seconds``),
    killed by their pid when the block ends."""
    code = f"import time\nt = time.time() + {seconds}\nwhile time.time() < t:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=10)


# --------------------------------------------------------------------------- data


def split_heldout(X: np.ndarray, seed: int, fraction: float = 0.1):
    """Hold out ``fraction`` of the rows uniformly at random; the rest keep their order.

    Returns ``(train, test, held)`` where ``held`` is the boolean mask over the rows of ``X``.
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(X.shape[0], dtype=bool)
    held[rng.choice(X.shape[0], int(X.shape[0] * fraction), replace=False)] = True
    return X[~held], X[held], held


def span_split(X: np.ndarray, held: np.ndarray, c: int, window: int | None = None):
    """The streamed rows before ``c`` (the last ``window`` of them if given) and the held-out
    rows of the same span of the stream (``X`` in recorded order, ``held`` its mask)."""
    train_index = np.flatnonzero(~held)
    lo = 0 if window is None else max(0, c - window)
    first, last = train_index[lo], train_index[c - 1]
    rows = np.arange(X.shape[0])
    return X[~held][lo:c], X[held & (rows >= first) & (rows <= last)]


def span_reference(train: np.ndarray, test: np.ndarray, k: int, models=()) -> dict:
    """Batch EM reference of one span: best held-out score of 3 k-means starts
    (``batch_reference``) and one start from each of ``models`` (``add_warm_start``).

    ``kmeans_short`` = how far the k-means starts alone fall short of the best.
    """
    ref = batch_reference(train, test, k, n_init=3)
    warm = [add_warm_start(ref, train, test, m)["warm_score"] for m in models]
    best = max([ref["kmeans_score"], *warm])
    return {"score": best, "kmeans_score": ref["kmeans_score"], "warm_scores": warm,
            "kmeans_short": best - ref["kmeans_score"]}


# --------------------------------------------------------------------------- references


def batch_reference(train: np.ndarray, test: np.ndarray, k: int, n_init: int = 3,
                    random_state: int = 0) -> dict:
    """streamgmm batch EM (``fit``, full, best of ``n_init`` k-means starts) on ``train``."""
    from streamgmm import GaussianMixture

    start = time.perf_counter()
    gm = GaussianMixture(k, n_init=n_init, random_state=random_state).fit(train)
    return {"score": float(gm.score(test)), "seconds": time.perf_counter() - start,
            "n_iter": int(gm.n_iter_), "kmeans_score": float(gm.score(test)),
            "warm_score": float("nan")}


def add_warm_start(ref: dict, train: np.ndarray, test: np.ndarray, model) -> dict:
    """One more batch EM start for the reference: from a fitted model's parameters.

    Batch EM from k-means starts can stop in a poor local optimum (then an online model
    "beats" batch EM and the gap is negative, which hides a real gap). EM started from the
    online model's parameters climbs at least as high on ``train`` as that start, so the
    best of both is a reference the online model cannot beat by luck of the initialisation.
    Returns a new dict: ``score`` = the better held-out score, ``warm_score`` = this start's.
    """
    from streamgmm import GaussianMixture

    start = time.perf_counter()
    gm = GaussianMixture(model.n_components, weights_init=model.weights_,
                         means_init=model.means_, precisions_init=model.precisions_,
                         random_state=0).fit(train)
    warm = float(gm.score(test))
    return {**ref, "warm_score": warm, "score": max(ref["kmeans_score"], warm),
            "seconds": ref["seconds"] + time.perf_counter() - start}


def sklearn_point_rate(X: np.ndarray, k: int, iters: int = 4, fits: int = 2,
                       init: str = "k-means++") -> dict:
    """scikit-learn's batch EM point rate on ``X``: N x iterations per second (full, K=k).

    As in ``bench_core`` figure 1: the end of every EM iteration is time-stamped through
    scikit-learn's per-iteration hook, from one start (``max_iter=1`` fit with ``init``),
    ``tol=0``; seconds per iteration is the smallest interval over ``fits`` fits, so
    initialisation and the final E-step are excluded.
    """
    from sklearn.mixture import GaussianMixture as SkGM

    class ClockedSk(SkGM):
        def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
            self._ticks.append(time.perf_counter())
            super()._print_verbose_msg_iter_end(n_iter, diff_ll)

    start = SkGM(k, max_iter=1, init_params=init, random_state=0).fit(X)
    best = float("inf")
    for _ in range(fits):
        est = ClockedSk(k, init_params="random_from_data", max_iter=1 + iters, tol=0.0,
                        random_state=0, weights_init=start.weights_, means_init=start.means_,
                        precisions_init=start.precisions_)
        est._ticks = []
        est.fit(X)
        if len(est._ticks) >= 2:
            best = min(best, float(np.min(np.diff(est._ticks))))
    return {"n": X.shape[0], "s_per_iter": best, "rate": X.shape[0] / best}


def timed_pass(X: np.ndarray, batch: int, k: int = 16, repeat: int = 1,
               random_state: int = 0, **kwargs) -> dict:
    """``partial_fit`` over ``X`` in ``batch``-row batches; the first batch (initialisation:
    k-means++ and a short batch EM) untimed; best of ``repeat`` passes, last model kept."""
    from streamgmm import GaussianMixture

    best, gm = float("inf"), None
    for _ in range(max(1, repeat)):
        gm = GaussianMixture(k, random_state=random_state, **kwargs)
        gm.partial_fit(X[:batch])
        start = time.perf_counter()
        for s in range(batch, X.shape[0], batch):
            gm.partial_fit(X[s:s + batch])
        best = min(best, time.perf_counter() - start)
    n = X.shape[0] - batch
    return {"n": n, "seconds": best, "rate": n / best if best > 0 else float("nan"),
            "model": gm, "moves": int(gm.n_moves_), "reseeded": int(gm.n_reseeded_),
            "work_per_point": gm.work_ / max(gm.n_seen_, 1)}


def frozen(gm):
    """A parameter-only copy of a fitted estimator (scores like it, carries no online state)."""
    from streamgmm import GaussianMixture

    return GaussianMixture.from_parameters(gm.weights_, gm.means_, gm.covariances_,
                                           gm.covariance_type)


def checkpoint_run(X: np.ndarray, batch: int, checkpoints, k: int = 16, random_state: int = 0,
                   repeat: int = 1, half: int | None = None, changes=(), **kwargs) -> dict:
    """``partial_fit`` over ``X`` in ``batch``-row batches, cut at every checkpoint (streamed
    rows), with a frozen copy of the model and its ``work_`` at each checkpoint.

    The first batch (initialisation) is untimed; every other batch is timed alone. Rates:
    ``rate`` over the whole stream after the first batch and ``rate_late`` over the batches
    that start at or after ``half`` (default: the middle of the stream); each the best of
    ``repeat`` passes (the model is a function of the batches and the seed, so every pass
    fits the same model). ``changes``: ablation switches for these passes.
    """
    from streamgmm import GaussianMixture

    n = X.shape[0]
    half = n // 2 if half is None else half
    cuts = sorted({int(c) for c in checkpoints} | {n})
    best_all, best_late = float("inf"), float("inf")
    out: dict = {}
    with switches(changes):
        for p in range(max(1, repeat)):
            gm = GaussianMixture(k, random_state=random_state, **kwargs)
            gm.partial_fit(X[:batch])
            done, t_all, t_late = batch, 0.0, 0.0
            models, works = {}, {}
            for c in cuts:
                for s in range(done, c, batch):
                    chunk = X[s:min(s + batch, c)]
                    t0 = time.perf_counter()
                    gm.partial_fit(chunk)
                    dt = time.perf_counter() - t0
                    t_all += dt
                    if s >= half:
                        t_late += dt
                done = max(done, c)
                if p == 0:
                    models[c], works[c] = frozen(gm), int(gm.work_)
            best_all, best_late = min(best_all, t_all), min(best_late, t_late)
            if p == 0:
                out = {"models": models, "works": works, "model": gm}
    n_late = n - max(half, batch)
    gm = out["model"]
    online = getattr(gm, "online_", None)
    out.update({
        "n": n - batch, "seconds": best_all, "rate": (n - batch) / best_all,
        "seconds_late": best_late, "rate_late": n_late / best_late if best_late > 0 else
        float("nan"), "work_per_point": gm.work_ / max(gm.n_seen_, 1),
        "moves": int(gm.n_moves_), "reseeded": int(gm.n_reseeded_),
        "change_points": int(gm.n_change_points_),
        "restarts": int(getattr(online, "n_restarts", 0)),
        "move_trials": int(getattr(online, "n_move_trials", 0)),
        "restart_trials": int(getattr(online, "n_restart_trials", 0)),
    })
    return out


# --------------------------------------------------------------------------- studies


def quarter_checkpoints(n: int, batch: int) -> list[int]:
    """Streamed rows at 1/4, 1/2, 3/4 (rounded to whole batches) and at the end."""
    return [int(round(n * q / 4 / batch)) * batch for q in (1, 2, 3)] + [n]


def study(X: np.ndarray, k: int, batch: int, seeds, repeat: int, split_seed: int = 11,
          sk_fits: int = 1, variants: dict | None = None, window: int | None = None,
          checkpoints: list[int] | None = None, half: int | None = None,
          kwargs: dict | None = None, textbook: dict | None = None) -> dict:
    """One stream: held-out split, online runs per seed (default and textbook, or
    ``variants`` = {label: (kwargs, switches)} at seed ``seeds[0]``), a batch EM reference per
    checkpoint (best of 3 k-means starts and one start from every run's model there), and
    scikit-learn's point rate. Shared by bench_order, bench_drift and bench_ablation."""
    train, _, held = split_heldout(X, seed=split_seed)
    n = train.shape[0]
    cps = checkpoints or quarter_checkpoints(n, batch)
    kwargs = kwargs or {}
    textbook = TEXTBOOK if textbook is None else textbook
    runs: dict = {}
    from _common import one_thread

    with one_thread():
        if variants is None:
            for seed in seeds:
                runs[("default", seed)] = checkpoint_run(
                    train, batch, cps, k, seed, repeat=repeat, half=half, **kwargs)
                runs[("textbook", seed)] = checkpoint_run(
                    train, batch, cps, k, seed, repeat=repeat, half=half, **textbook)
        else:
            for label, (kw, changes) in variants.items():
                runs[(label, seeds[0])] = checkpoint_run(
                    train, batch, cps, k, seeds[0], repeat=repeat, half=half,
                    changes=changes, **kw)
        refs, tests = [], []
        for c in cps:
            tr, te = span_split(X, held, c, window)
            tests.append(te)
            refs.append(span_reference(tr, te, k, [r["models"][c] for r in runs.values()]))
        sk = sklearn_point_rate(train, k, fits=sk_fits) if sk_fits else None
    for r in runs.values():
        r["scores"] = [float(r["models"][c].score(te)) for c, te in zip(cps, tests)]
        r["gaps"] = [ref["score"] - sc for ref, sc in zip(refs, r["scores"])]
    return {"train": train, "held": held, "X": X, "checkpoints": cps, "runs": runs,
            "refs": refs, "tests": tests, "sk": sk}



# --------------------------------------------------------------------------- daemon


class CliDaemon(_ServiceDaemon):
    """``streamgmm run CONFIG`` (the CLI entry point) with ipc endpoints in ``directory``.

    The daemon process gets one BLAS/OpenMP thread (``OPENBLAS_NUM_THREADS=1``,
    ``OMP_NUM_THREADS=1``), like the library figures, and shares the machine's cores with
    the publisher (this process).
    """

    def start(self) -> CliDaemon:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OPENBLAS_NUM_THREADS="1",
                   OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgmm", "run", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()[-800:]}")
            with contextlib.suppress(TimeoutError):
                if self.req.request("status", timeout=0.5).get("ok"):
                    self.startup_s = time.perf_counter() - t0
                    return self
        raise TimeoutError(f"daemon not answering status: {self.log()[-800:]}")


class StreamFeeder:
    """Feeds one stream, in order, to a model of a running :class:`CliDaemon`.

    ``PointPublisher`` for the points (waits for the daemon's subscription first),
    ``ControlClient`` for status, snapshots and refits. ``send(X, upto)`` publishes rows up
    to ``upto`` as fast as possible or paced at ``rate`` points/s (absolute schedule on
    ``perf_counter``); ``wait_seen(n)`` waits (bounded) until the model's ``n_seen`` reaches
    ``n``.
    """

    def __init__(self, daemon: CliDaemon, model: str = "lidar", topic: str = "points/lidar",
                 batch: int = 4096, dtype: str = "float32",
                 sensor_rate: float | None = None) -> None:
        import zmq

        from streamgmm.client import ControlClient, PointPublisher

        self.daemon, self.model, self.batch, self.dtype = daemon, model, batch, np.dtype(dtype)
        # Stamps: the first row's index over sensor_rate (the sensor's points per second),
        # or the index itself (each message seconds apart: a step of its own).
        self.sensor_rate = sensor_rate or 1.0
        self.ctx = zmq.Context()
        self.pub = PointPublisher(daemon.ingest, topic, source="bench", context=self.ctx,
                                  sndhwm=100_000, linger_ms=2000)
        self.ctl = ControlClient(daemon.control, timeout=30.0, context=self.ctx)
        if not self.pub.wait_for_subscriber(10.0):
            raise TimeoutError("the daemon did not subscribe to the points within 10 s")
        time.sleep(0.1)
        self.sent_rows = 0
        self.sent_messages = 0
        self.send_seconds = 0.0
        self.max_late_s = 0.0
        self.base = self.counters()

    def counters(self) -> dict:
        return dict(self.ctl.status()["counters"])

    def n_seen(self) -> int:
        return int(self.ctl.status()["models"][self.model]["n_seen"])

    def send(self, X: np.ndarray, upto: int, rate: float | None = None) -> None:
        """Publish rows ``sent_rows .. upto`` of ``X`` in messages of ``batch`` rows."""
        start = self.sent_rows
        t0 = time.perf_counter()
        i = 0
        for s in range(start, upto, self.batch):
            if rate is not None:
                target = t0 + i * self.batch / rate
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
                else:
                    self.max_late_s = max(self.max_late_s, now - target)
            self.pub.send(X[s:min(s + self.batch, upto)].astype(self.dtype, copy=False),
                          stamp=self.stamp(s))
            self.sent_messages += 1
            i += 1
        self.send_seconds += time.perf_counter() - t0
        self.sent_rows = upto

    def stamp(self, row: int) -> float:
        """The stamp of the message that starts at ``row``."""
        return row / self.sensor_rate

    def end(self, dim: int) -> None:
        """The end-of-stream marker: the daemon closes the model's last step."""
        self.pub.send_end(dim, stamp=self.stamp(self.sent_rows))

    def wait_seen(self, n: int, timeout: float = 120.0) -> float:
        """Seconds until ``n_seen >= n`` (bounded by ``timeout`` and by a 10 s stall)."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        last, last_change = -1, t0
        while time.perf_counter() < deadline:
            seen = self.n_seen()
            if seen >= n:
                return time.perf_counter() - t0
            if seen != last:
                last, last_change = seen, time.perf_counter()
            elif time.perf_counter() - last_change > 10.0:
                break
            time.sleep(0.005)
        raise TimeoutError(f"model {self.model} saw {last:,} of {n:,} points (lost?); "
                           f"counters {self.counters()}")

    def loss(self) -> dict:
        """Messages sent by this feeder vs applied/lost by the daemon since it started."""
        c = self.counters()
        applied = int(c["messages_applied"]) - int(self.base["messages_applied"])
        lost = int(c["messages_lost"]) - int(self.base["messages_lost"])
        return {"sent": self.sent_messages, "applied": applied, "lost": lost,
                "missing": self.sent_messages - applied}

    def snapshot_score(self, test: np.ndarray, settle_s: float = 0.0) -> tuple[float, object]:
        """A snapshot scored on ``test``; ``settle_s`` first lets the daemon publish the
        update of its last points (its ``publish_every_s``), so the snapshot is that update."""
        if settle_s > 0:
            time.sleep(settle_s)
        snap = self.ctl.snapshot(self.model)
        return float(snap.to_estimator().score(test)), snap

    def refit_score(self, test: np.ndarray) -> dict:
        """``refit`` request, then a snapshot: the refit's parameters, scored on ``test``."""
        t0 = time.perf_counter()
        seq = self.ctl.refit(self.model, timeout=300.0)
        seconds = time.perf_counter() - t0
        score, snap = self.snapshot_score(test)
        return {"score": score, "seq": seq, "snapshot_seq": snap.seq, "seconds": seconds}

    def close(self) -> None:
        self.pub.close(linger_ms=2000)
        self.ctl.close()
        self.ctx.term()

    def __enter__(self) -> StreamFeeder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
