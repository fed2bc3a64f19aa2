"""What thinning under overload costs the model (issue 18, part 4), library only.

Figure
  1. The LiDAR sweep of ``bench_order`` (sensor order; 300,000 points, ``--quick`` 100,000;
     10% held out uniformly), D=3, K=16 full, batches of 4,096, seeds 0-2 (``--quick`` 0-1):
     ``partial_fit`` on every batch (1x), and on a uniform subset of half (2x) and of a
     quarter (4x) of every batch, each subset standing for its whole batch
     (``partial_fit(subset, represented=len(batch))``, what the daemon does under overload).
     Beside them, what the daemon did before thinning: ZeroMQ's queue full, whole messages
     lost (here: of every 2, or 4, consecutive batches only the first arrives, absorbed as
     it is). Held-out gap to batch EM on the whole training stream (best of 3 k-means
     starts and one start from each unthinned run's final model), the loss against 1x of
     the same seed, and the work and seconds per point streamed. No goals: the figures
     say what overload costs either way.

    .venv/bin/python benchmarks/bench_thinning.py [--quick]

gap = held-out mean log-likelihood (nats/point) of batch EM minus that of the online model;
positive means the online model is worse. See benchmarks/README.md.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import figures_cli, one_thread, print_table  # noqa: E402
from _ordered import add_warm_start, batch_reference, split_heldout  # noqa: E402

K = 16
BATCH = 4096
# label -> (how, factor): "thin" keeps 1/factor of every batch's rows standing for all of
# them; "drop" keeps 1 batch of every factor (whole messages lost at the high-water mark).
VARIANTS = {
    "1x (all points)": ("thin", 1),
    "thin 2x": ("thin", 2),
    "thin 4x": ("thin", 4),
    "drop 1 message in 2": ("drop", 2),
    "drop 3 messages in 4": ("drop", 4),
}

SIZES = {
    False: {"n": 300_000, "seeds": (0, 1, 2)},
    True: {"n": 100_000, "seeds": (0, 1)},
}


def thinned_pass(train: np.ndarray, how: str, factor: int, seed: int):
    """One pass of ``partial_fit`` over ``train`` in batches of ``BATCH``.

    ``how="thin"``: each batch is cut to ``ceil(BATCH / factor)`` uniform rows (order kept)
    that stand for the whole batch. ``how="drop"``: only the first of every ``factor``
    batches is absorbed, as it is.

    Returns the model, the seconds and ``work_`` per point streamed.
    """
    from streamgmm import GaussianMixture

    gm = GaussianMixture(K, random_state=seed)
    pick = np.random.default_rng([seed, factor])  # the daemon's thinning has its own stream
    started = time.perf_counter()
    for i, lo in enumerate(range(0, len(train), BATCH)):
        batch = train[lo:lo + BATCH]
        if factor == 1 or how == "drop":
            if i % factor == 0:
                gm.partial_fit(batch)
            continue
        k = math.ceil(len(batch) / factor)
        rows = np.sort(pick.choice(len(batch), size=k, replace=False))
        gm.partial_fit(batch[rows], represented=len(batch))
    seconds = time.perf_counter() - started
    return gm, seconds, gm.work_ / len(train)


def figure_1(sizes: dict) -> bool:
    from streamgmm.synthetic import lidar_scene

    X = lidar_scene(sizes["n"], seed=0)
    train, test, _ = split_heldout(X, seed=11)
    runs: dict[tuple[str, int], dict] = {}
    with one_thread():
        for seed in sizes["seeds"]:
            for label, (how, factor) in VARIANTS.items():
                gm, seconds, work = thinned_pass(train, how, factor, seed)
                runs[(label, seed)] = {"model": gm, "seconds": seconds, "work": work,
                                       "score": float(gm.score(test))}
        ref = batch_reference(train, test, K, n_init=3)
        best = ref["kmeans_score"]
        full = next(iter(VARIANTS))
        for seed in sizes["seeds"]:
            warm = add_warm_start(ref, train, test, runs[(full, seed)]["model"])
            best = max(best, warm["warm_score"])
    rows = []
    for label, (how, factor) in VARIANTS.items():
        gaps, losses, secs, works = [], [], [], []
        for seed in sizes["seeds"]:
            r = runs[(label, seed)]
            gaps.append(best - r["score"])
            losses.append(runs[(full, seed)]["score"] - r["score"])
            secs.append(r["seconds"] / len(train))
            works.append(r["work"])
        rows.append([
            label, f"{math.ceil(BATCH / factor) if how == 'thin' else BATCH}",
            " ".join(f"{g:+.3f}" for g in gaps), f"{np.mean(gaps):+.3f}",
            f"{np.mean(losses):+.3f}" if factor > 1 else "-",
            f"{np.max(losses):+.3f}" if factor > 1 else "-",
            f"{np.mean(works):.2f}", f"{np.mean(secs) * 1e6:.2f} us",
        ])
    print_table(
        f"1. Overload on a sensor-ordered LiDAR sweep ({len(train):,} streamed points, K={K} "
        f"full, batches of {BATCH:,}, seeds {', '.join(map(str, sizes['seeds']))})",
        ["stream", "rows/batch", "gap per seed", "mean gap", "loss vs 1x", "worst loss",
         "work/pt", "time/pt"],
        rows,
        notes=[
            f"reference: batch EM on the {len(train):,} training points, best of 3 k-means "
            f"starts and one start from each 1x run's final model: {best:.4f} nats/point "
            "held out",
            "thin: partial_fit(uniform subset, represented=len(batch)); drop: whole batches "
            "lost, the rest absorbed as they are",
            "work/pt and time/pt are per point streamed (the effort is per absorbed point)",
        ],
    )
    return True


def main(quick: bool = False, figures: list[int] | None = None) -> int:
    ok = True
    if figures is None or 1 in figures:
        started = time.perf_counter()
        ok = figure_1(SIZES[quick]) and ok
        print(f"figure 1: {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(figures_cli(None, "streamgmm thinning under overload: quality cost", main, 1))
