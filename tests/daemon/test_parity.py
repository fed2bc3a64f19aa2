"""The daemon and the library give the same model on the same batches (one routine per idea).

A daemon fed over its socket, one message per batch, and ``partial_fit`` fed the same batches
from the same seed must reach the same parameters, relocations and split-merge moves
included: the daemon runs them inline through the same :class:`OnlineEM`.
"""

from __future__ import annotations

import numpy as np

from streamgmm.daemon.config import load_config
from streamgmm.daemon.model import ModelRuntime

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 6,
         "publish_every_s": 0.0, "refit_every_s": 0.0, "seed": 7, "window_points": 5000,
         "relocations": "inline"}


def sorted_blobs(n: int, seed: int = 0) -> np.ndarray:
    """Eight blobs streamed in order of x: the stream keeps arriving where no component is."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (8, 3))
    X = centers[rng.integers(0, 8, n)] + rng.normal(scale=0.5, size=(n, 3))
    return X[np.argsort(X[:, 0], kind="stable")]


def test_daemon_equals_partial_fit_on_the_same_batches(daemon_factory):
    d = daemon_factory(models=[MODEL])
    X = sorted_blobs(24_000)
    batches = np.array_split(X, 48)
    for batch in batches:
        d.send("points/lidar", batch)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=60)
    snap = d.request(op="snapshot", model="lidar")
    status = d.status()["models"]["lidar"]

    library = ModelRuntime(load_config(d.config_path).models[0]).estimator
    for batch in batches:
        library.partial_fit(batch)

    # The ordered stream made the online model relocate or move components: the parity
    # covers those paths, not only the plain stepwise update.
    assert library.n_relocations_ + library.online_.n_moves >= 1
    assert status["n_relocations"] == library.n_relocations_
    assert snap["n_seen"] == library.n_seen_ == len(X)
    np.testing.assert_allclose(snap["weights"], library.weights_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(snap["means"], library.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(snap["covariances"], library.covariances_, rtol=1e-9,
                               atol=1e-9)
    assert d.stop() == 0


def test_every_status_key_is_documented():
    """docs/protocol.md names every per-model key of the status reply."""
    from pathlib import Path

    from streamgmm.daemon.model import MODEL_STATUS

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    missing = [key for key in MODEL_STATUS if f"`{key}`" not in text]
    assert not missing


def test_worker_relocations_follow_an_ordered_stream_with_a_bounded_lag(daemon_factory):
    """relocations = "worker" (the default): the same routine on the refit thread; batches
    absorbed meanwhile are folded in again, and the lag is visible in status."""
    worker = dict(MODEL, relocations="worker")
    d = daemon_factory(models=[worker])
    X = sorted_blobs(24_000)
    for batch in np.array_split(X, 48):
        d.send("points/lidar", batch)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=60)
    status = d.settle()["models"]["lidar"]
    assert status["n_relocations"] >= 1
    assert 0 <= status["relocation_lag_points"] <= status["relocation_lag_points_max"]
    assert status["relocation_lag_points_max"] <= len(X)

    # partial_fit with the same settings, relocating inline.
    library = ModelRuntime(load_config(d.config_path).models[0]).estimator
    library.set_params(relocate=True)
    for batch in np.array_split(X, 48):
        library.partial_fit(batch)
    snap = d.request(op="snapshot", model="lidar")
    online = library.__class__.from_parameters(snap["weights"], snap["means"],
                                               snap["covariances"])
    # Not bit-identical (the lag depends on timing), but no worse a model of the stream.
    assert online.score(X) > library.score(X) - 0.1
    assert d.stop() == 0
