"""The daemon and the library give the same model on the same batches (one routine per idea).

A daemon fed over its socket, one message per batch, and ``partial_fit`` fed the same batches
from the same seed reach the same parameters bit for bit, moves included, however busy the
machine: the daemon runs the whole online update inline through the same
:class:`~streamgmm.core.online.OnlineEM`, and nothing of it depends on timing. A model that
publishes on a timer folds consecutive messages into steps by a rule of the messages alone
(:mod:`streamgmm.daemon.steps`): it equals ``partial_fit`` on those steps.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np

from streamgmm import codec
from streamgmm.daemon.config import load_config
from streamgmm.daemon.model import ModelRuntime
from streamgmm.daemon.steps import group_steps
from streamgmm.synthetic import lidar_scene

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 6,
         "publish_every_s": 0.0, "refit_every_s": 0.0, "seed": 7, "window_points": 5000,
         "overload_budget_s": 0.0}


def sorted_blobs(n: int, seed: int = 0) -> np.ndarray:
    """Eight blobs streamed in order of x: the stream keeps arriving where no component is."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (8, 3))
    X = centers[rng.integers(0, 8, n)] + rng.normal(scale=0.5, size=(n, 3))
    return X[np.argsort(X[:, 0], kind="stable")]


@contextlib.contextmanager
def cpu_hogs(n: int = 2):
    """``n`` processes that spin on the CPU for at most 120 s (killed on exit)."""
    code = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


def _library(d, batches):
    library = ModelRuntime(load_config(d.config_path).models[0]).estimator
    for batch in batches:
        library.partial_fit(batch)
    return library


def _feed(d, X, batches):
    for batch in batches:
        d.send("points/lidar", batch)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=90)
    return d.request(op="snapshot", model="lidar"), d.status()["models"]["lidar"]


def _assert_same_model(snap, status, library, n):
    assert snap["n_seen"] == library.n_seen_ == n
    np.testing.assert_array_equal(snap["weights"], library.weights_)
    np.testing.assert_array_equal(snap["means"], library.means_)
    np.testing.assert_array_equal(snap["covariances"], library.covariances_)
    assert status["n_moves"] == library.n_moves_
    assert status["work"] == library.work_


def test_daemon_equals_partial_fit_bit_for_bit(daemon_factory):
    d = daemon_factory(models=[MODEL])
    X = sorted_blobs(24_000)
    batches = np.array_split(X, 48)
    snap, status = _feed(d, X, batches)
    library = _library(d, batches)
    # The ordered stream made the online model move components: the parity covers the
    # moves, not only the plain update.
    assert library.n_moves_ >= 1
    _assert_same_model(snap, status, library, len(X))
    assert d.stop() == 0


def test_daemon_equals_partial_fit_on_a_busy_machine(daemon_factory):
    """Two processes spinning on this 2-core machine change nothing: no timing decides."""
    d = daemon_factory(models=[MODEL])
    X = sorted_blobs(24_000, seed=1)
    batches = np.array_split(X, 48)
    with cpu_hogs(2):
        snap, status = _feed(d, X, batches)
    library = _library(d, batches)
    _assert_same_model(snap, status, library, len(X))
    assert d.stop() == 0


def test_a_timed_model_steps_by_the_messages_alone(daemon_factory):
    """publish_every_s > 0: consecutive messages are folded into steps by their rows and
    stamps alone (streamgmm.daemon.steps), never by how many were queued when the loop came
    to them: small messages sent as fast as possible to a busy machine give partial_fit's
    model on the same steps, bit for bit."""
    timed = dict(MODEL, publish_every_s=0.05)
    d = daemon_factory(models=[timed])
    X = lidar_scene(30_000, seed=2)
    batches = np.array_split(X, 120)  # 250 points a message
    # A 50 Hz sensor, then a stretch of one stamp (a sweep sent in pieces): both rules.
    stamps = [1000.0 + 0.02 * i if i < 60 else 1002.0 for i in range(120)]
    steps = group_steps(batches, stamps, limit=4096, seconds=0.05)
    assert len(steps) < 60 and max(len(s) for s in steps) >= 4096
    with cpu_hogs(2):
        for seq, (batch, stamp) in enumerate(zip(batches, stamps)):
            d.send("points/lidar", batch, seq=seq, stamp=stamp)
        # The end marker closes the last step.
        d.send_raw([b"points/lidar", codec.encode_points(
            np.empty((0, 3)), seq=120, stamp=1002.0, source="test", end=True, first_seq=0)])
        d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=90)
    snap, status = d.request(op="snapshot", model="lidar"), d.status()["models"]["lidar"]
    library = _library(d, steps)
    assert library.online_.n_updates == len(steps) - 1  # the first step seeds the model
    _assert_same_model(snap, status, library, len(X))
    assert d.stop() == 0


def test_every_status_key_is_documented():
    """docs/protocol.md names every per-model key of the status reply."""
    from pathlib import Path

    from streamgmm.daemon.model import MODEL_STATUS

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    missing = [key for key in MODEL_STATUS if f"`{key}`" not in text]
    assert not missing


def test_threads_change_nothing_sweeps_and_two_models(daemon_factory):
    """[service] threads = 2: sweep-sized messages (chunks scored on threads) and two models
    stepped side by side still give partial_fit's model bit for bit."""
    second = dict(MODEL, name="depth", topic="points/depth", seed=3)
    d = daemon_factory(models=[MODEL, second], service={"threads": 2})
    X, Y = sorted_blobs(60_000, seed=3), sorted_blobs(24_000, seed=4)
    sweeps, batches = np.array_split(X, 4), np.array_split(Y, 24)
    for i, batch in enumerate(batches):
        if i < len(sweeps):
            d.send("points/lidar", sweeps[i])
        d.send("points/depth", batch)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X)
               and s["models"]["depth"]["n_seen"] == len(Y), timeout=90)
    status = d.status()["models"]
    for name, data, parts, config in (("lidar", X, sweeps, 0), ("depth", Y, batches, 1)):
        library = ModelRuntime(load_config(d.config_path).models[config]).estimator
        for part in parts:
            library.partial_fit(part)
        _assert_same_model(d.request(op="snapshot", model=name), status[name], library,
                           len(data))
    assert d.stop() == 0


def test_two_coalescing_models_step_side_by_side_on_threads(daemon_factory):
    """Queued points of two models are folded in by two threads at once, in the steps of
    their messages (group_steps): each model is partial_fit's on its steps, bit for bit."""
    first = dict(MODEL, publish_every_s=0.05)
    second = dict(first, name="depth", topic="points/depth", seed=3)
    d = daemon_factory(models=[first, second], service={"threads": 2})
    data = {name: sorted_blobs(20_000, seed=s) for name, s in (("lidar", 5), ("depth", 6))}
    parts = {name: np.array_split(X, 40) for name, X in data.items()}
    stamps = [100.0 + 0.02 * i for i in range(40)]  # 50 Hz: 3 messages a step
    for i in range(40):
        for name in data:
            d.send(f"points/{name}", parts[name][i], source=name, seq=i, stamp=stamps[i])
    for name in data:  # the end markers close the last steps
        d.send_raw([f"points/{name}".encode(), codec.encode_points(
            np.empty((0, 3)), seq=40, stamp=stamps[-1], source=name, end=True, first_seq=0)])
    d.wait_for(lambda s: all(s["models"][n]["n_seen"] == 20_000 for n in data), timeout=90)
    status = d.status()["models"]
    for index, name in enumerate(data):
        library = ModelRuntime(load_config(d.config_path).models[index]).estimator
        for step in group_steps(parts[name], stamps, limit=4096, seconds=0.05):
            library.partial_fit(step)
        _assert_same_model(d.request(op="snapshot", model=name), status[name], library,
                           20_000)
    assert d.status()["counters"]["rejected"] == {}
    assert d.stop() == 0
