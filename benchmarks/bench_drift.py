"""Benchmarks of drift (issue 12): a sensor that moves from one place to the next.

Figures
  1. two 2-D indoor laser maps streamed one after the other (``synthetic.two_buildings``,
     31,761 + 20,870 points, each in recorded order) and three 3-D rooms one after another
     (``synthetic.rooms_stream``): gap to batch EM on the window (the last 8,000 points) at
     1/2 and at the end of each place, for partial_fit and for the daemon at full speed,
     in the drift setting (retain="window", retain_size=8000, step_constant=0.05) and in the
     decaying-step reservoir mode (``GaussianMixture()`` defaults) beside it
     (goal: gap <= 0.1 at 1/2 and at the end of each new place, library and daemon)
  2. cost per point of the drift setting against the plain update (textbook stepwise EM,
     replay=False, relocate=False) and the defaults, with scikit-learn's EM point rate

    .venv/bin/python benchmarks/bench_drift.py [--quick] [--figures 1,2]

K=16 full, 512 points per batch / message throughout. See benchmarks/README.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    figures_cli,
    fmt_rate,
    fmt_ratio,
    one_thread,
    print_table,
    verdict,
)
from _ordered import (  # noqa: E402
    TEXTBOOK,
    CliDaemon,
    StreamFeeder,
    add_warm_start,
    batch_reference,
    sklearn_point_rate,
    split_heldout,
    timed_pass,
)

K = 16
BATCH = 512
WINDOW = 8000
STEP = 0.05
GOAL_GAP = 0.1

DRIFT = {"retain": "window", "retain_size": WINDOW, "step_constant": STEP}
DEFAULTS: dict = {}
DAEMON_DRIFT = {"retain": "window", "window_points": WINDOW, "step_constant": STEP}
# GaussianMixture() defaults as daemon keys: reservoir of retain_size=20,000, decaying step.
DAEMON_DEFAULTS = {"retain": "reservoir", "window_points": 20_000, "step_constant": 0.0}

SIZES = {
    False: {"rooms_n": 90_000, "repeat": 3},
    True: {"rooms_n": 45_000, "repeat": 1},
}


class Stream:
    """One stream: training rows in recorded order, held-out rows, places and checkpoints."""

    def __init__(self, name: str, X: np.ndarray, starts: list[int], place_names: list[str],
                 seed: int) -> None:
        self.name, self.dim = name, X.shape[1]
        self.train, _, held = split_heldout(X, seed=seed)
        self.X, self.held = X, held
        self.train_index = np.flatnonzero(~held)  # original row of each streamed row
        # Streamed rows before each place's first original row.
        bounds = [int(np.searchsorted(self.train_index, s)) for s in starts]
        bounds.append(self.train.shape[0])
        self.checkpoints: list[tuple[str, str, int]] = []
        for place, a, b in zip(place_names, bounds[:-1], bounds[1:]):
            self.checkpoints.append((place, "1/2", a + (b - a) // 2))
            self.checkpoints.append((place, "end", b))

    def window_split(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The last WINDOW streamed rows before ``c`` and the held-out rows of their span."""
        lo = max(0, c - WINDOW)
        first, last = self.train_index[lo], self.train_index[c - 1]
        rows = np.arange(self.X.shape[0])
        test = self.X[self.held & (rows >= first) & (rows <= last)]
        return self.train[lo:c], test


def make_streams(quick: bool) -> list[Stream]:
    from streamgmm.synthetic import rooms_stream, two_buildings

    X, second = two_buildings(seed=0)
    n = SIZES[quick]["rooms_n"]
    R = rooms_stream(n, seed=0)
    counts = [n // 3 + (i < n % 3) for i in range(3)]
    return [
        Stream("two buildings (2-D)", X, [0, second], ["building A", "building B"], seed=31),
        Stream("rooms (3-D)", R, [0, counts[0], counts[0] + counts[1]],
               ["room 1", "room 2", "room 3"], seed=32),
    ]


# --------------------------------------------------------------------------- figure 1


def library_run(stream: Stream, **kwargs) -> tuple[list, float]:
    """partial_fit in BATCH-row batches; a frozen copy of the model at every checkpoint and
    the seconds spent in partial_fit."""
    from streamgmm import GaussianMixture

    gm = GaussianMixture(K, random_state=0, **kwargs)
    models, done, seconds = [], 0, 0.0
    with one_thread():
        for _, _, c in stream.checkpoints:
            t0 = time.perf_counter()
            for s in range(done, c, BATCH):
                gm.partial_fit(stream.train[s:min(s + BATCH, c)])
            seconds += time.perf_counter() - t0
            done = c
            models.append(GaussianMixture.from_parameters(gm.weights_, gm.means_,
                                                          gm.covariances_, "full"))
    return models, seconds


def daemon_scores(tmp: Path, name: str, stream: Stream, tests: list[np.ndarray],
                  keys: dict) -> dict:
    """The daemon fed at full speed up to each checkpoint; a snapshot scored at each."""
    model = {"dim": stream.dim, "components": K, "covariance_type": "full",
             "publish_every_s": 0.05, "refit_every_s": 0.0, **keys}
    scores, busy = [], 0.0
    with CliDaemon(tmp, name, **model) as daemon, \
            StreamFeeder(daemon, batch=BATCH) as feed:
        for (_, _, c), test in zip(stream.checkpoints, tests):
            t0 = time.perf_counter()
            feed.send(stream.train, c)
            feed.wait_seen(c)
            busy += time.perf_counter() - t0
            scores.append(feed.snapshot_score(test, settle_s=0.15)[0])
        loss = feed.loss()
    return {"scores": scores, "loss": loss, "rate": stream.train.shape[0] / busy}


def figure_1(streams: list[Stream], quick: bool) -> None:
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="sgdrift-") as tmp:
        for si, stream in enumerate(streams):
            lib_d_models, lib_d_s = library_run(stream, **DRIFT)
            lib_r_models, _ = library_run(stream, **DEFAULTS)
            refs, tests, short = [], [], []
            with one_thread():
                for i, (_, _, c) in enumerate(stream.checkpoints):
                    window, test = stream.window_split(c)
                    tests.append(test)
                    ref = batch_reference(window, test, K, n_init=3)
                    # Two more starts: EM from each online model (see add_warm_start).
                    warm = [add_warm_start(ref, window, test, m[i])["warm_score"]
                            for m in (lib_d_models, lib_r_models)]
                    refs.append(max(ref["kmeans_score"], *warm))
                    short.append(refs[-1] - ref["kmeans_score"])
            lib_d = [float(m.score(t)) for m, t in zip(lib_d_models, tests)]
            lib_r = [float(m.score(t)) for m, t in zip(lib_r_models, tests)]
            dmn_d = daemon_scores(Path(tmp), f"d{si}", stream, tests, DAEMON_DRIFT)
            dmn_r = daemon_scores(Path(tmp), f"r{si}", stream, tests, DAEMON_DEFAULTS)
            zero = all(d["loss"]["lost"] == 0 and d["loss"]["missing"] == 0
                       for d in (dmn_d, dmn_r))
            for i, (place, when, c) in enumerate(stream.checkpoints):
                g = [refs[i] - s[i] for s in (lib_d, dmn_d["scores"], lib_r, dmn_r["scores"])]
                rows.append([
                    stream.name, f"{place} {when}", f"{c:,}", f"{len(tests[i]):,}",
                    f"{refs[i]:.4f}", f"{short[i]:+.4f}", *(f"{x:+.4f}" for x in g),
                    verdict(g[0] <= GOAL_GAP),
                    verdict(zero and g[1] <= GOAL_GAP),
                ])
            notes.append(
                f"  {stream.name}: {stream.train.shape[0]:,} points streamed; daemon drift "
                f"{dmn_d['loss']['applied']}/{dmn_d['loss']['sent']} messages applied, "
                f"lost {dmn_d['loss']['lost']}, absorbed {fmt_rate(dmn_d['rate'])}; daemon "
                f"defaults {dmn_r['loss']['applied']}/{dmn_r['loss']['sent']}, lost "
                f"{dmn_r['loss']['lost']}; library drift pass {lib_d_s:.2f} s")
    print_table(
        f"Figure 1. Gap to batch EM on the window ({WINDOW:,} points) at 1/2 and at the end "
        f"of each place: K={K} full, {BATCH} points per batch/message",
        ["stream", "checkpoint", "streamed", "held-out", "batch EM LL", "k-means short",
         "drift lib",
         "drift daemon", "defaults lib", "defaults daemon", "lib <= 0.1", "daemon <= 0.1"],
        rows,
        [
            "10% of each stream held out uniformly at random; the rest streamed in recorded "
            "order. At each checkpoint (streamed points so far):",
            f"batch EM = streamgmm fit on the last {WINDOW:,} streamed points, scored on "
            "the held-out points of the same span of the stream: the best",
            "of 5 starts, 3 k-means (n_init=3, random_state=0) and one from each library "
            "model there (k-means short = how far the k-means",
            "starts alone fall short of it). Each gap column = batch EM LL - the model's "
            "held-out LL there (nats/point, positive = online worse).",
            f"drift = GaussianMixture(retain='window', retain_size={WINDOW}, "
            f"step_constant={STEP}); daemon: retain = 'window', window_points = {WINDOW},",
            f"step_constant = {STEP}. defaults = GaussianMixture() (decaying step, reservoir "
            "of 20,000); daemon: reservoir, window_points 20000, step_constant 0.",
            "Daemon = streamgmm run (one BLAS thread), fed at full speed (not paced) with "
            "PointPublisher up to each checkpoint; once status",
            "n_seen reaches it, a snapshot is scored. Verdicts: drift setting, every "
            "checkpoint; daemon also needs zero loss (messages_lost, messages_applied).",
            "The daemon folds queued messages into one online step up to its coalescing "
            "limit (for a window: window_points // 16 = 500 < 512,",
            "so one message per step, as in the library); the reservoir daemon takes larger "
            "steps at full speed, hence its other figures.",
        ] + notes + ([f"--quick: rooms stream of {SIZES[True]['rooms_n']:,} points."]
                     if quick else []),
    )


# --------------------------------------------------------------------------- figure 2


def figure_2(streams: list[Stream], quick: bool) -> None:
    repeat = SIZES[quick]["repeat"]
    rows = []
    with one_thread():
        for stream in streams:
            sk = sklearn_point_rate(stream.train, K, fits=1 if quick else 2)
            r = {label: timed_pass(stream.train, BATCH, K, repeat=repeat, **kw)
                 for label, kw in (("textbook", TEXTBOOK), ("drift", DRIFT),
                                   ("defaults", DEFAULTS))}
            plain = r["textbook"]["rate"]
            for key, label in (("textbook", "textbook (plain update)"),
                               ("drift", "drift (window, constant step)"),
                               ("defaults", "defaults (reservoir, decaying)")):
                x = r[key]
                rows.append([stream.name, label, f"{1e6 / x['rate']:.2f} us",
                             fmt_rate(x["rate"]), fmt_ratio(plain / x["rate"]),
                             fmt_ratio(x["rate"] / sk["rate"]),
                             f"{x['relocations']}/{x['reseeded']}", verdict(None)])
            rows.append([stream.name, "sklearn EM point rate", f"{1e6 / sk['rate']:.2f} us",
                         fmt_rate(sk["rate"]), "-", fmt_ratio(1.0), "-", verdict(None)])
    print_table(
        f"Figure 2. Cost per point of the drift setting against the plain update: K={K} "
        f"full, batches of {BATCH}",
        ["stream", "mode", "per point", "rate", "cost vs plain", "vs sklearn",
         "reloc/reseed", "verdict"],
        rows,
        [
            "One pass of partial_fit over the streamed rows of figure 1, first batch "
            f"(initialisation) untimed, best of {repeat}; one BLAS thread.",
            "plain update = textbook stepwise EM (replay=False, relocate=False); cost vs "
            "plain = per-point time / that of the plain update.",
            "vs sklearn = rate / scikit-learn's batch EM point rate on the same rows (N x "
            "iterations/s, iterations time-stamped).",
        ],
    )


# --------------------------------------------------------------------------- main


FIGURES = {1: figure_1, 2: figure_2}


def main(quick: bool = False, figures: list[int] | None = None) -> int:
    streams = make_streams(quick)
    for number in figures or sorted(FIGURES):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of the tol=0 timing fits
            FIGURES[number](streams, quick)
        print(f"(figure {number}: {time.perf_counter() - start:.1f} s)", flush=True)
    return 0


def _cli(argv: list[str] | None = None) -> int:
    return figures_cli(argv, "streamgmm drift benchmarks, issue 12", main, 2)


if __name__ == "__main__":
    sys.exit(_cli())
