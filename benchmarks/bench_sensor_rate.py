"""Sensor rate on a robot's computer (issue 18): precision and threads, in the library.

Figures
  1. float32 input against float64 input: fit and partial_fit seconds and the held-out
     log-likelihood of the two models (N=1,000,000, D=3, K=16, every covariance type)
  2. why float32 input is scored in float64: the log-density error and time of one 4,096-point
     chunk scored three ways on a LiDAR scene (metres, planes a few cm thick)
  3. threads: an E-step pass, fit, partial_fit in 4,096-point messages and in whole sweeps
     (131,072 points) on 1 and 2 threads, the same model checked bit for bit, and the speedup
     on 8 and 16 cores that the measured parallel share implies (Amdahl)
  4. whole sweeps as online steps: a static room seen by 10 full 360-degree sweeps of 131,072
     points (OS1-64) and of 262,144 (OS1-128), one sweep per partial_fit, one thread: the
     time of each step (what a sweep waits for its update) against the 100 ms period of a
     10 Hz sensor, the work per point and the gap to batch EM (goal: within one period)
  5. why figure 3's E-step pass gains nothing from a second thread: each numpy call of one
     4,096-row chunk alone, on one thread and on two (the GIL is held between calls)

    .venv/bin/python benchmarks/bench_sensor_rate.py [--quick] [--figures 1,3]

Figures 1, 2 and 4 run on one BLAS thread; figure 3 compares one thread (BLAS held to one) with
``streamgmm.threads(2)`` (two workers, one BLAS thread each). The LiDAR data is
``synthetic.lidar_scene`` (a room with walls, boxes and poles, 20-40 m across).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    best_of,
    figures_cli,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    load_line,
    one_thread,
    print_table,
    verdict,
)

import streamgmm  # noqa: E402
from streamgmm import GaussianMixture  # noqa: E402
from streamgmm.synthetic import lidar_scene  # noqa: E402

K = 16
BATCH = 4096
SWEEP = 131_072  # points of one OS1-64 sweep
GOAL_FIT_F32 = 2.0
GOAL_PARTIAL_F32 = 1.6
GOAL_LL_F32 = 1e-4
GOAL_THREADS = 1.6

SIZES = {
    False: {"n": 1_000_000, "fit_iter": 10, "stream_n": 400_000, "repeat": 2,
            "thread_n": 1_048_576, "sweeps": (SWEEP, 2 * SWEEP), "n_sweeps": 10,
            "sweep_seeds": (0, 1, 2), "op_reps": 2000},
    True: {"n": 200_000, "fit_iter": 5, "stream_n": 100_000, "repeat": 1,
           "thread_n": 262_144, "sweeps": (SWEEP,), "n_sweeps": 4, "sweep_seeds": (0,),
           "op_reps": 300},
}


def _scene(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A LiDAR scene in sweep order and a held-out scene of the same room."""
    return lidar_scene(n, seed=seed), lidar_scene(max(20_000, n // 10), seed=seed + 100)


# --------------------------------------------------------------------------- figure 1


def figure_1(sizes: dict) -> None:
    X, test = _scene(sizes["n"])
    shuffled = X[np.random.default_rng(0).permutation(len(X))]
    stream = X[: sizes["stream_n"]]
    rows = []
    fit_ratios, partial_ratios, ll_diffs = [], [], []
    for ctype in ("full", "diag", "tied", "spherical"):
        def fit(data, ctype=ctype):
            return GaussianMixture(K, covariance_type=ctype, random_state=0, tol=0.0,
                                   max_iter=sizes["fit_iter"]).fit(data)

        def partial(data, ctype=ctype):
            gm = GaussianMixture(K, covariance_type=ctype, random_state=0)
            for start in range(0, len(data), BATCH):
                gm.partial_fit(data[start : start + BATCH])
            return gm

        with one_thread():
            t64, m64 = best_of(lambda: fit(shuffled), sizes["repeat"])
            t32, m32 = best_of(lambda: fit(shuffled.astype(np.float32)), sizes["repeat"])
            p64, o64 = best_of(lambda: partial(stream), 1)
            p32, o32 = best_of(lambda: partial(stream.astype(np.float32)), 1)
        d_fit = m32.score(test) - m64.score(test)
        d_online = o32.score(test) - o64.score(test)
        fit_ratios.append(t64 / t32)
        partial_ratios.append(p64 / p32)
        ll_diffs += [abs(d_fit), abs(d_online)]
        rows.append([ctype, f"{t64:.2f} s", fmt_ratio(t64 / t32), f"{d_fit:+.1e}",
                     f"{len(stream) / p64 / 1e6:.2f} M/s", fmt_ratio(p64 / p32),
                     f"{d_online:+.1e}"])
    print_table(
        f"Figure 1a. float32 input against float64 input: fit ({sizes['n']:,} points, "
        f"{sizes['fit_iter']} EM iterations, shuffled) and partial_fit ({sizes['stream_n']:,} "
        f"points in {BATCH:,}-point batches, sweep order), K={K}",
        ["covariance", "fit f64", "f32 speed", "f32 - f64 LL", "partial_fit f64",
         "f32 speed", "f32 - f64 LL"],
        rows,
        ["speed = float64 seconds / float32 seconds (same call, same start). LL = held-out "
         "mean log-likelihood (nats/point) of the float32-input model minus the float64 one;",
         "both scored on the same float64 held-out scene. float32 input is converted to "
         "float64 and scored in float64 (figure 2 says why)."],
    )
    worst_fit, worst_partial = min(fit_ratios), min(partial_ratios)
    print_table(
        "Figure 1b. float32 input: summary",
        ["measure", "value", "goal", "verdict"],
        [["fit speed, float32 / float64 input (worst type)", fmt_ratio(worst_fit),
          f">= {GOAL_FIT_F32:g}x", verdict(worst_fit >= GOAL_FIT_F32)],
         ["partial_fit speed (worst type)", fmt_ratio(worst_partial),
          f">= {GOAL_PARTIAL_F32:g}x", verdict(worst_partial >= GOAL_PARTIAL_F32)],
         ["held-out LL difference (worst)", f"{max(ll_diffs):.1e}", f"<= {GOAL_LL_F32:g}",
          verdict(max(ll_diffs) <= GOAL_LL_F32)]],
    )


# --------------------------------------------------------------------------- figure 2


def _chunk_scorers(params, shift: np.ndarray, X64: np.ndarray):
    """The log-densities of one chunk, three ways: float64 expanded form (what streamgmm
    does), the same in float32, and float32 centred per component (whitened)."""
    from streamgmm.core.gaussian import _fill_design_columns
    from streamgmm.core.scoring import make_scorer

    scorer = make_scorer(params, shift)
    X32 = X64.astype(np.float32)
    n, d = X64.shape
    k = params.n_components
    n_cols = scorer.W.shape[0]
    FT64, FT32 = np.empty((n_cols, n)), np.empty((n_cols, n), np.float32)
    W32 = scorer.WT.astype(np.float32)
    U = params.precisions_cholesky
    ucat = np.ascontiguousarray(np.concatenate(list(U), axis=1).T).astype(np.float32)
    offsets = np.concatenate([(params.means[j] - shift) @ U[j] for j in range(k)])
    offsets = offsets.astype(np.float32)[:, None]
    const = (np.log(params.weights) + np.log(np.diagonal(U, axis1=1, axis2=2)).sum(1)
             - 0.5 * d * math.log(2 * math.pi)).astype(np.float32)[:, None]
    shift32 = shift.astype(np.float32)
    xs, y, s = np.empty((d, n), np.float32), np.empty((d * k, n), np.float32), np.empty(
        (k, n), np.float32)

    def expanded64():
        return scorer.weighted_log_prob(X64, _fill_design_columns(FT64, X64, shift, "full"))

    def expanded32():
        return W32 @ _fill_design_columns(FT32, X32, shift32, "full")

    def whitened32():
        np.subtract(X32.T, shift32[:, None], out=xs)
        np.matmul(ucat, xs, out=y)
        np.subtract(y, offsets, out=y)
        np.square(y, out=y)
        y3 = y.reshape(k, d, n)
        np.add(y3[:, 0], y3[:, 1], out=s)
        np.add(s, y3[:, 2], out=s)
        np.multiply(s, -0.5, out=s)
        np.add(s, const, out=s)
        return s

    return {"float64, expanded (streamgmm)": expanded64, "float32, expanded": expanded32,
            "float32, centred per component": whitened32}


def figure_2(sizes: dict) -> None:
    X, _ = _scene(200_000)
    with one_thread():
        model = GaussianMixture(K, random_state=0, max_iter=30).fit(X)
    params = model._params
    chunk = X[np.random.default_rng(1).choice(len(X), BATCH, replace=False)]
    # Exact: each component directly, (x - mu_k) U_k, in float64 on the float32 values.
    exact_points = chunk.astype(np.float32).astype(np.float64)
    U = params.precisions_cholesky
    exact = np.stack([
        -0.5 * (3 * math.log(2 * math.pi)
                + np.sum(((exact_points - params.means[j]) @ U[j]) ** 2, axis=1))
        + np.log(np.diag(U[j])).sum() + math.log(params.weights[j]) for j in range(K)])
    relevant = exact > exact.max(axis=0) - 10.0  # within 10 nats of the point's best
    shift = params.weights @ params.means
    rows = []
    base = None
    for name, fn in _chunk_scorers(params, shift, exact_points).items():
        with one_thread():
            seconds, _ = best_of(fn, 200)
        err = fn().astype(np.float64) - exact
        base = base or seconds
        rows.append([name, f"{seconds * 1e6:.0f} us", fmt_ratio(base / seconds),
                     f"{np.abs(err[relevant]).mean():.1e}", f"{np.abs(err[relevant]).max():.1e}",
                     f"{err[relevant].mean():+.1e}"])
    print_table(
        f"Figure 2. One {BATCH:,}-point chunk of a LiDAR scene scored against K={K} full "
        "components, three ways",
        ["arithmetic", "time", "speed", "mean |error|", "max |error|", "bias"],
        rows,
        ["error = log pi_k N(x | k) minus the exact value (each component directly, float64), "
         "in nats, over the pairs (point, component)",
         "within 10 nats of the point's best component (the ones that carry responsibility). "
         "The expanded form is one GEMM",
         "of the features [1, z, zz'] (z = x - model mean); in float32 it cancels terms of "
         "|z|^2/sigma^2 ~ 1e6 on planes 2 cm thick 30 m away.",
         "Centred per component it is exact enough but slower than the float64 GEMM, so "
         "float32 input is scored in float64."],
    )


# --------------------------------------------------------------------------- figure 3


def _timed(threads: int, fn, repeat: int):
    if threads == 1:
        with one_thread():
            return best_of(fn, repeat)
    with streamgmm.threads(threads):
        return best_of(fn, repeat)


def figure_3(sizes: dict) -> None:
    from streamgmm.core.em import moments_pass
    from streamgmm.core.scoring import make_scorer
    from streamgmm.parallel import available_cores, current_pool

    X, _ = _scene(sizes["thread_n"])
    shuffled = X[np.random.default_rng(0).permutation(len(X))]
    with one_thread():
        params = GaussianMixture(K, random_state=0, max_iter=10).fit(shuffled[:100_000])._params
    scorer = make_scorer(params)

    def e_pass():
        return moments_pass(shuffled, scorer, pool=current_pool())

    start = dict(weights_init=params.weights, means_init=params.means,
                 precisions_init=params.precisions)

    def fit():  # from a given start: the EM iterations, not a k-means over every point
        return GaussianMixture(K, random_state=0, tol=0.0, max_iter=5, **start).fit(shuffled)

    def stream(batch):
        def run():
            gm = GaussianMixture(K, random_state=0)
            for start in range(0, len(X), batch):
                gm.partial_fit(X[start : start + batch])
            return gm
        return run

    cases = [("E-step pass (moments of every point)", e_pass, 3),
             ("fit, 5 EM iterations from a given start", fit, 1),
             (f"partial_fit, {BATCH:,}-point messages", stream(BATCH), 1),
             (f"partial_fit, whole sweeps of {SWEEP:,}", stream(SWEEP), 1)]
    rows = []
    speedups = []
    for name, fn, repeat in cases:
        t1, a = _timed(1, fn, repeat)
        t2, b = _timed(2, fn, repeat)
        if isinstance(a, tuple):
            same = np.array_equal(a[0], b[0]) and a[1] == b[1]
        else:
            same = all(np.array_equal(getattr(a, f), getattr(b, f))
                       for f in ("weights_", "means_", "covariances_"))
        speedup = t1 / t2
        speedups.append(speedup)
        # Amdahl: the parallel share p that a 2-thread speedup S2 implies, and what it gives
        # on more cores (an upper bound: memory bandwidth and the GIL are shared).
        p = min(1.0, max(0.0, 2.0 * (1.0 - 1.0 / speedup)))
        rows.append([name, fmt_rate(len(X) / t1), fmt_rate(len(X) / t2), fmt_ratio(speedup),
                     "yes" if same else "NO", f"{p:.2f}", fmt_ratio(1 / ((1 - p) + p / 8)),
                     fmt_ratio(1 / ((1 - p) + p / 16))])
    print_table(
        f"Figure 3. Threads in the library: {len(X):,} LiDAR points (K={K} full), 1 thread "
        "against streamgmm.threads(2)",
        ["workload", "1 thread", "2 threads", "speedup", "same model", "parallel share",
         "8 cores", "16 cores"],
        rows,
        ["rates = points (per pass) / best wall time. same model = the 1- and 2-thread "
         "results equal bit for bit. parallel share p from",
         "S2 = 1 / ((1 - p) + p / 2); 8 and 16 cores = Amdahl's 1 / ((1 - p) + p / n) from "
         f"that p (an upper bound). Cores usable here: {available_cores()}; load average "
         f"{load_line()}.",
         "The online steps' serial share is the moves (births, merges, restarts on samples of "
         "1,024 points): numpy calls too short to release the GIL for long."],
    )
    sweep_speedup = speedups[-1]
    print_table(
        "Figure 3b. Threads: summary",
        ["measure", "value", "goal", "verdict"],
        [["whole-sweep partial_fit, 2 threads / 1 thread", fmt_ratio(sweep_speedup),
          f">= {GOAL_THREADS:g}x (daemon, bench_service figure 5)",
          verdict(sweep_speedup >= GOAL_THREADS)]],
    )


def figure_4(sizes: dict) -> None:
    from streamgmm.core import schedule

    period = 0.1  # seconds between sweeps at 10 Hz
    test = lidar_scene(50_000, seed=100)
    rows, medians = [], []
    for points in sizes["sweeps"]:
        # Full sweeps of the same room (each seed a new sampling of it), in sweep order.
        sweeps = [lidar_scene(points, seed=s) for s in range(sizes["n_sweeps"])]
        with one_thread():
            every = np.vstack(sweeps)
            ref = GaussianMixture(K, n_init=3, random_state=0).fit(every[::4]).score(test)
            for seed in sizes["sweep_seeds"]:
                gm = GaussianMixture(K, random_state=seed)
                steps = []
                for X in sweeps:
                    t0 = time.perf_counter()
                    gm.partial_fit(X)
                    steps.append(time.perf_counter() - t0)
                later = np.array(steps[1:])  # the first sweep initialises the model
                medians.append(float(np.median(later)))
                rows.append([f"{points:,}", f"{seed}", fmt_seconds(steps[0]),
                             fmt_seconds(float(np.median(later))),
                             fmt_seconds(float(np.percentile(later, 90))),
                             fmt_seconds(float(later.max())),
                             f"{gm.work_ / gm.n_seen_:.2f}",
                             f"{ref - gm.score(test):+.4f}",
                             verdict(float(np.median(later)) <= period)])
    print_table(
        f"Figure 4. Whole sweeps as online steps: {sizes['n_sweeps']} full sweeps of a static "
        f"room, one per partial_fit, K={K} full, one thread",
        ["points/sweep", "seed", "first step", "step p50", "step p90", "step max", "work/pt",
         "gap", f"p50 <= {period * 1000:.0f} ms"],
        rows,
        ["step = the partial_fit of one sweep (the wait for its update, before transport); "
         "p50/p90/max over the sweeps after the first (which",
         "initialises the model). gap = held-out LL of streamgmm fit (n_init=3) on every "
         "4th point of all the sweeps - the online model's, on a",
         "held-out sweep (lidar_scene seed 100; negative = online better). A step runs at "
         f"most {schedule.MAX_MOVES_PER_STEP} rounds of moves; these sweeps, each covering "
         "the whole room,",
         "rarely need them: 131,072-point sectors of one sweep per message (new ground every "
         "time) cost about 2x more per step (docs/performance.md)."],
    )


def _two_thread_speedup(make, reps: int) -> tuple[float, float]:
    """(seconds per call on one thread, speedup of two threads each making ``reps`` calls)."""
    import threading

    def run():
        call = make()
        for _ in range(reps):
            call()

    one = two = math.inf
    for _ in range(3):
        start = time.perf_counter()
        run()
        one = min(one, time.perf_counter() - start)
        workers = [threading.Thread(target=run) for _ in range(2)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        two = min(two, time.perf_counter() - start)
    return one / reps, 2.0 * one / two


def figure_5(sizes: dict) -> None:
    from streamgmm.core.em import moments_pass
    from streamgmm.core.gaussian import _fill_design_columns, design_columns
    from streamgmm.core.scoring import make_scorer

    X, _ = _scene(BATCH)
    with one_thread():
        params = GaussianMixture(K, random_state=0, max_iter=10).fit(X)._params
    scorer = make_scorer(params)
    FT0 = design_columns(X, scorer.shift, "full")
    LT0 = scorer.WT_peaked @ FT0
    rng = np.random.default_rng(0)

    def design():
        FT = np.empty_like(FT0)
        return lambda: _fill_design_columns(FT, X, scorer.shift, "full")

    def scores():
        out = np.empty_like(LT0)
        return lambda: np.matmul(scorer.WT_peaked, FT0, out=out)

    def risk():
        out = np.empty(BATCH)
        return lambda: np.einsum("ij,ij->j", FT0[1:4], FT0[1:4], out=out)

    def clamp():
        L = LT0.copy()
        return lambda: np.maximum(L, -700.0, out=L)

    def exponential():
        L, out = np.maximum(LT0, -700.0), np.empty_like(LT0)
        return lambda: np.exp(L, out=out)

    def column_sums():
        E, out = np.exp(np.maximum(LT0, -700.0)), np.empty(BATCH)
        return lambda: np.sum(E, axis=0, out=out)

    def far_points():
        total = rng.uniform(1e-3, 1.0, BATCH)
        return lambda: np.flatnonzero(total < 1e-260)

    def normalise():
        E, inverse = np.exp(np.maximum(LT0, -700.0)), rng.uniform(0.5, 1.0, BATCH)
        return lambda: np.multiply(E, inverse, out=E)

    def logarithm():
        total, out = rng.uniform(0.5, 1.0, BATCH), np.empty(BATCH)
        return lambda: np.log(total, out=out)

    def moments():
        R = np.exp(np.maximum(LT0, -700.0))
        return lambda: R @ FT0.T

    def moments_dot():
        R = np.exp(np.maximum(LT0, -700.0))
        return lambda: np.dot(R, FT0.T)

    def scores_dot():
        out = np.empty_like(LT0)
        return lambda: np.dot(scorer.WT_peaked, FT0, out=out)

    def whole_chunk():
        return lambda: moments_pass(X, scorer)

    cases = [("design F (x - c and its products)", design),
             ("scores W'F (BLAS, K x 10 by 10 x n)", scores),
             ("risk check (einsum |z|^2)", risk),
             ("clamp (maximum, in place)", clamp),
             ("exp", exponential),
             ("sum over components (axis 0)", column_sums),
             ("far points (flatnonzero)", far_points),
             ("normalise (broadcast multiply)", normalise),
             ("log of the totals", logarithm),
             ("moments R F' (BLAS, K x n by n x 10)", moments),
             ("  the same by np.dot", moments_dot),
             ("  scores W'F by np.dot", scores_dot),
             ("the whole chunk (moments_pass)", whole_chunk)]
    rows = []
    with one_thread():
        for name, make in cases:
            per_call, speedup = _two_thread_speedup(make, sizes["op_reps"])
            rows.append([name, f"{per_call * 1e6:.1f} us", fmt_ratio(speedup)])
    print_table(
        f"Figure 5. Why the E-step gains nothing from a second thread: each numpy call of one "
        f"{BATCH:,}-row chunk (K={K} full), alone",
        ["call", "1 thread, per call", "2 threads / 1 (each the same calls)"],
        rows,
        ["Two threads each make the same calls as the one thread did; speedup = 2 x (1-thread "
         "time) / (2-thread time), best of 3, one BLAS thread.",
         "A call holds the GIL while numpy sets it up: calls of a few microseconds, the "
         "reduction over components and einsum gain nothing or lose (the",
         "threads queue for the GIL at every call); the long element-wise loops (exp, the "
         "clamp, the normalising multiply) gain 1.4-1.9x. np.matmul's",
         "moments product (a transposed operand) gained nothing in our runs where np.dot of "
         "the same operands (the same bits) gains 1.7-1.8x: the E-step uses np.dot there.",
         "The whole chunk is what figure 3's E-step pass measures: its short calls set the "
         "2-thread time. Load average " + load_line() + "."],
    )


FIGURES = {1: figure_1, 2: figure_2, 3: figure_3, 4: figure_4, 5: figure_5}


def main(quick: bool = False, figures: list[int] | None = None) -> int:
    sizes = SIZES[quick]
    print(f"cores usable: {len(os.sched_getaffinity(0))}")
    for number in figures or sorted(FIGURES):
        start = time.perf_counter()
        FIGURES[number](sizes)
        print(f"(figure {number}: {time.perf_counter() - start:.1f} s; load average "
              f"{load_line()})", flush=True)
    return 0


def _cli(argv: list[str] | None = None) -> int:
    return figures_cli(argv, "streamgmm sensor-rate benchmarks (float32 input, threads)", main,
                       len(FIGURES))


if __name__ == "__main__":
    raise SystemExit(_cli())
