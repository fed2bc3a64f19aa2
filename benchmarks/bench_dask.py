"""Batch EM over Dask on a LocalCluster: points x iterations / s per worker, fixed overhead per
iteration, memory-mapped shards, the allocator's effect, and the scaling model's inputs.

Everything is measured in the same run: in-process ``run_em`` (one BLAS thread) and
scikit-learn's ``GaussianMixture`` as references, then 1, 2, ... single-threaded worker
processes (distributed's default worker environment, so ``MALLOC_TRIM_THRESHOLD_=65536``).

    make bench-dask                      # D=3, K=16 full, 16 chunks of 250,000 points
    python benchmarks/bench_dask.py --quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import gaussian_blobs, header, one_thread, print_table, verdict  # noqa: E402

GOAL_RATE = 8e6  # points x it/s per worker
GOAL_FRACTION = 0.8  # of in-process
GOAL_OVERHEAD = 0.020  # s per iteration
GOAL_MMAP = 0.15  # memory-mapped shards within 15% of in-memory
SPARK_PER_CORE = 0.30e6  # Spark ML GaussianMixture, one core, as given in issue 14


def start_params(X, k, seed=0):
    from streamgmm.core.params import MixtureParams
    from streamgmm.core.suffstats import SufficientStats

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), 20_000, replace=False)
    sample = X[idx]
    centres = sample[rng.choice(len(sample), k, replace=False)]
    labels = np.argmin(((sample[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    resp = np.eye(k)[labels] * 0.9 + 0.1 / k
    stats = SufficientStats.from_responsibilities(sample, resp, "full")
    p = stats.to_params(1e-6)
    return MixtureParams.from_covariances(p.weights, p.means, p.covariances, "full")


def time_iterations(statistics, params, n_iter):
    """Seconds of the fastest of ``n_iter`` EM iterations (statistics + M-step), after one
    warm-up: the machine is shared, and the best iteration is the least disturbed."""
    from streamgmm.core.em import m_step

    params = m_step(statistics(params).stats, 1e-6)
    best = np.inf
    for _ in range(n_iter):
        t0 = time.perf_counter()
        params = m_step(statistics(params).stats, 1e-6)
        best = min(best, time.perf_counter() - t0)
    return best


def in_process_rate(X, params, n_iter):
    from streamgmm.core.em import batch_statistics

    shift = X.mean(axis=0)
    with one_thread():
        return len(X) / time_iterations(lambda p: batch_statistics(X, p, None, shift),
                                        params, n_iter)


def sklearn_rate(X, params, n_iter):
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return float("nan")
    gm = GaussianMixture(params.n_components, tol=0.0, max_iter=n_iter,
                         weights_init=params.weights, means_init=params.means,
                         precisions_init=params.precisions)
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        gm.fit(X)
        seconds = time.perf_counter() - t0
    # (one timed fit of n_iter iterations: scikit-learn is the slow reference anyway)
    return len(X) * n_iter / seconds


_ALLOC_CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, sys.argv[2])
from threadpoolctl import threadpool_limits
if sys.argv[1] == "old":
    from oldcore.em import batch_statistics
else:
    from streamgmm.core.em import batch_statistics
from streamgmm.core.params import MixtureParams
rng = np.random.default_rng(0)
d = np.load(sys.argv[3])
X = d["X"]
p = MixtureParams.from_covariances(d["w"], d["m"], d["c"], "full")
shift = X.mean(axis=0)
with threadpool_limits(1):
    batch_statistics(X, p, None, shift)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        batch_statistics(X, p, None, shift)
        best = min(best, time.perf_counter() - t0)
print(len(X) / best)
"""


def allocator_rates(X, params, old_tree: str | None):
    """E-step rate in a fresh process with and without MALLOC_TRIM_THRESHOLD_=65536."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, X=X[:1_000_000], w=params.weights, m=params.means, c=params.covariances)
        versions = ["new"] + (["old"] if old_tree else [])
        for version in versions:
            for trim in (None, "65536"):
                env = dict(os.environ)
                env.pop("MALLOC_TRIM_THRESHOLD_", None)
                if trim:
                    env["MALLOC_TRIM_THRESHOLD_"] = trim
                res = subprocess.run(
                    [sys.executable, "-c", _ALLOC_CHILD, version, old_tree or ".", path],
                    env=env, capture_output=True, text=True, timeout=600,
                )
                if res.returncode != 0:
                    raise RuntimeError(res.stderr)
                out[(version, trim)] = float(res.stdout.strip())
    return out


def scheduler_cost_per_task(client, n=400):
    """Seconds of scheduler round trip per task (submit + gather of no-op tasks)."""
    # A builtin as the task: workers unpickle it without importing this file.
    client.gather([client.submit(abs, i, pure=False) for i in range(20)])
    t0 = time.perf_counter()
    client.gather([client.submit(abs, i, pure=False) for i in range(n)])
    return (time.perf_counter() - t0) / n


def dask_figures(X, params, n_workers, chunk, n_iter, shards_dir):
    import dask.array as da
    from distributed import Client, LocalCluster

    from streamgmm.dask_em import DaskData, open_shards

    # from_array embeds the in-memory chunks in the graph, once: that is the point here.
    warnings.filterwarnings("ignore", message="Sending large graph")
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    try:
        with Client(cluster) as client:
            client.wait_for_workers(n_workers, timeout=120)
            data = DaskData(da.from_array(X, chunks=(chunk, X.shape[1])), client)
            rate = len(X) / time_iterations(data.statistics, params, n_iter)
            del data
            tiny = X[: 2000 * n_workers]
            small = DaskData(da.from_array(tiny, chunks=(2000, X.shape[1])), client)
            overhead = time_iterations(small.statistics, params, 20)
            del small
            mmap_rate = float("nan")
            if shards_dir is not None:
                import glob

                shards = DaskData(open_shards(sorted(glob.glob(f"{shards_dir}/*.npy"))),
                                  client)
                mmap_rate = len(X) / time_iterations(shards.statistics, params, n_iter)
                del shards
            per_task = scheduler_cost_per_task(client)
    finally:
        cluster.close()
    return rate, overhead, mmap_rate, per_task


def chunk_seconds(X, params, chunk):
    from streamgmm.core.em import moments_pass
    from streamgmm.core.scoring import make_scorer

    scorer = make_scorer(params, X.mean(axis=0))
    block = np.ascontiguousarray(X[:chunk])
    best = np.inf
    with one_thread():
        moments_pass(block, scorer)
        for _ in range(5):
            t0 = time.perf_counter()
            moments_pass(block, scorer)
            best = min(best, time.perf_counter() - t0)
    return best


def scaling_model(rate_per_worker, overhead_1, per_task, mstep_s, workers, n_points,
                  fan_in=32):
    """Predicted parallel efficiency of one EM iteration (see docs/distributed.md).

    T(W) = N / (W r) + o_1 + (W - 1) c + ceil(log_f W) * o_level + m, against N / (W r).
    ``c`` is the scheduler's cost per task (it handles W tasks serially), ``o_level`` one
    tree level (a task round trip, ~ o_1), ``m`` the client's M-step.
    """
    compute = n_points / (workers * rate_per_worker)
    levels = 0 if workers <= fan_in else int(np.ceil(np.log(workers) / np.log(fan_in))) - 1
    total = compute + overhead_1 + (workers - 1) * per_task + levels * overhead_1 + mstep_s
    return compute / total


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` as on the command line (``run_all.py`` passes it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 chunks instead of 16")
    parser.add_argument("--workers", type=int, nargs="*", default=None,
                        help="worker counts (default 1, 2, ... up to the cores)")
    parser.add_argument("--old-core", default=None, metavar="DIR",
                        help="a directory with oldcore/em.py (the pre-reuse E-step) to "
                        "compare the allocator's effect before and after")
    args = parser.parse_args(argv)
    n_chunks, chunk, k, d = (4 if args.quick else 16), 250_000, 16, 3
    n_iter = 3 if args.quick else 5
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    workers = args.workers or list(range(1, max(cores, 2) + 1))
    print(header(f"streamgmm batch EM over Dask (D={d}, K={k} full, {n_chunks} chunks of "
                 f"{chunk:,} points)"))
    X = gaussian_blobs(n_chunks * chunk, dim=d, n_clusters=k, seed=0)
    params = start_params(X, k)

    t_inproc = in_process_rate(X, params, n_iter)
    t_sklearn = sklearn_rate(X, params, n_iter)
    per_chunk = chunk_seconds(X, params, chunk)
    from streamgmm.core.em import batch_statistics, m_step

    stats = batch_statistics(X[:10000], params).stats
    t0 = time.perf_counter()
    for _ in range(50):
        m_step(stats, 1e-6)
    mstep = (time.perf_counter() - t0) / 50

    alloc = allocator_rates(X, params, args.old_core)

    rows = []
    results = {}
    with tempfile.TemporaryDirectory() as shards_dir:
        for i in range(n_chunks):
            np.save(os.path.join(shards_dir, f"shard{i:03d}.npy"), X[i * chunk:(i + 1) * chunk])
        for w in workers:
            results[w] = dask_figures(X, params, w, chunk, n_iter, shards_dir)

    print_table(
        "References (one BLAS thread, same run)",
        ["engine", "points x it/s", "vs in-process"],
        [["in-process run_em", f"{t_inproc / 1e6:.2f} M", "1.00"],
         ["scikit-learn GaussianMixture", f"{t_sklearn / 1e6:.2f} M",
          f"{t_sklearn / t_inproc:.2f}"],
         ["Spark ML per core (issue 14)", f"{SPARK_PER_CORE / 1e6:.2f} M",
          f"{SPARK_PER_CORE / t_inproc:.3f}"]],
    )
    for w, (rate, overhead, mmap_rate, per_task) in results.items():
        per_worker = rate / w
        rows.append([
            w, f"{per_worker / 1e6:.2f} M", f"{per_worker / t_inproc:.2f}",
            f"{per_worker / SPARK_PER_CORE:.1f}x", f"{overhead * 1e3:.1f} ms",
            f"{mmap_rate / rate:.3f}", f"{per_task * 1e3:.2f} ms",
            verdict(per_worker >= GOAL_RATE and per_worker >= GOAL_FRACTION * t_inproc
                    and overhead <= GOAL_OVERHEAD and abs(1 - mmap_rate / rate) <= GOAL_MMAP),
        ])
    print_table(
        "LocalCluster (single-threaded worker processes, MALLOC_TRIM_THRESHOLD_=65536)",
        ["workers", "per worker", "vs in-process", "vs Spark/core", "overhead/it",
         "mmap / mem", "sched/task", "goals"],
        rows,
    )
    print_table(
        "Allocator: E-step in a fresh process, 1M points (points x it/s)",
        ["E-step", "glibc default", "MALLOC_TRIM_THRESHOLD_=65536", "ratio"],
        [[v, f"{alloc[(v, None)] / 1e6:.2f} M", f"{alloc[(v, '65536')] / 1e6:.2f} M",
          f"{alloc[(v, '65536')] / alloc[(v, None)]:.2f}"]
         for v in ("new", "old") if (v, None) in alloc],
    )
    rate1, overhead1, _, per_task = results[workers[0]]
    r = rate1 / workers[0]
    model_rows = []
    for n_points in (1e9, 1e11):
        model_rows.append([f"{n_points:.0e}"] + [
            f"{scaling_model(r, overhead1, per_task, mstep, w, n_points):.3f}"
            for w in (8, 64, 512)])
    print(f"\nscaling inputs: r = {r / 1e6:.2f} M points x it/s per worker, compute per "
          f"{chunk:,}-point chunk {per_chunk * 1e3:.1f} ms, overhead o_1 = "
          f"{overhead1 * 1e3:.1f} ms/it, scheduler c = {per_task * 1e3:.2f} ms/task, "
          f"M-step m = {mstep * 1e3:.2f} ms")
    print_table("Predicted efficiency of one iteration (docs/distributed.md)",
                ["points", "8 workers", "64 workers", "512 workers"], model_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
