"""Held-out log-likelihood against points streamed: streamgmm, textbook stepwise EM, batch EM.

Run: ``python examples/plot_learning_curve.py [OUT.png] [--points N] [--quick]`` (needs the
``plot`` extra). A few LiDAR sweeps of a room (:func:`streamgmm.synthetic.lidar_scene`), each
in sensor (azimuth) order, are streamed in batches as a sensor delivers them into

- ``GaussianMixture()`` with its ``partial_fit`` defaults (effort 1, moves on),
- textbook stepwise EM: ``GaussianMixture(effort=0, moves=False, step_decay=0.6, step_offset=2.0)``,

and after every few batches both are scored on a held-out sweep (another seed). The dashed
line is batch EM on all the points at once: the target an online pass tries to reach.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from streamgmm import GaussianMixture
from streamgmm.synthetic import lidar_scene

K = 16


def learning_curves(n_points: int, batch: int, n_evals: int, sweeps: int, seed: int = 3):
    """Points streamed and held-out mean log-likelihood of each online model, and batch EM's.

    The stream is `sweeps` consecutive LiDAR sweeps (each in azimuth order, as a spinning
    sensor delivers them) of ``n_points // sweeps`` points each.
    """
    per_sweep = n_points // sweeps
    X = np.vstack([lidar_scene(per_sweep, seed=seed + i) for i in range(sweeps)])
    n_points = len(X)
    held_out = lidar_scene(20_000, seed=seed + 100)
    models = {
        "streamgmm partial_fit (defaults)": GaussianMixture(n_components=K, random_state=0),
        "textbook stepwise EM (effort=0, moves=False, step (t+2)^-0.6)": GaussianMixture(
            n_components=K, random_state=0, effort=0, moves=False, step_decay=0.6,
            step_offset=2.0),
    }
    n_batches = -(-n_points // batch)
    # Scores at evenly spaced batch counts (and after the last batch).
    marks = {int(round(b)) for b in np.linspace(1, n_batches, n_evals)} | {n_batches}
    curves: dict[str, list[float]] = {name: [] for name in models}
    streamed: list[int] = []
    for b in range(1, n_batches + 1):
        chunk = X[(b - 1) * batch : b * batch]
        for model in models.values():
            model.partial_fit(chunk)
        if b in marks:
            streamed.append(min(b * batch, n_points))
            for name, model in models.items():
                curves[name].append(float(model.score(held_out)))
    batch_em = GaussianMixture(n_components=K, random_state=0).fit(X)
    return np.array(streamed), curves, float(batch_em.score(held_out))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="demo-out/learning_curve.png",
                        help="PNG to write (default demo-out/learning_curve.png)")
    parser.add_argument("--points", type=int, default=100_000, help="points streamed")
    parser.add_argument("--sweeps", type=int, default=5, help="LiDAR sweeps they make up")
    parser.add_argument("--batch", type=int, default=2048, help="points per batch")
    parser.add_argument("--quick", action="store_true", help="a small stream, for tests")
    args = parser.parse_args(argv)
    n_points, n_evals = (12_000, 6) if args.quick else (args.points, 25)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    streamed, curves, batch_score = learning_curves(n_points, args.batch, n_evals, args.sweeps)
    n_points = int(streamed[-1])
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    # Below this the curves would squash the interesting part; clipped values sit on the edge.
    floor = batch_score - 10.0
    for (name, scores), style in zip(curves.items(), ["o-", "s--"]):
        shown = np.maximum(scores, floor)
        ax.plot(streamed, shown, style, ms=3.5, label=f"{name}: {scores[-1]:.3f} at the end")
    ax.axhline(batch_score, color="k", ls=":", lw=1.2,
               label=f"batch EM on all {n_points} points: {batch_score:.3f}")
    for i in range(1, args.sweeps):
        ax.axvline(i * n_points / args.sweeps, color="0.7", lw=0.6, zorder=0)
    ax.set_xlim(0, n_points * 1.01)
    ax.set_ylim(floor - 0.3, batch_score + 1.0)
    ax.set_xlabel(f"points streamed ({args.sweeps} LiDAR sweeps of a room, each in azimuth "
                  "order; grey lines: a new sweep begins)")
    ax.set_ylabel("held-out mean log-likelihood [nats/point]")
    ax.set_title(f"Online EM on a sensor-ordered stream (K={K}, batches of {args.batch} "
                 f"points); higher is better", fontsize=10)
    ax.grid(True, lw=0.3, alpha=0.6)
    ax.text(0.01, 0.01, f"scores below {floor:.1f} are drawn on the bottom edge",
            transform=ax.transAxes, fontsize=7, color="0.4")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    finals = ", ".join(f"{name.split(' (')[0]} {s[-1]:.3f}" for name, s in curves.items())
    print(f"held-out log-likelihood after {n_points} points: {finals}, batch EM "
          f"{batch_score:.3f} ({time.perf_counter() - start:.1f} s)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
