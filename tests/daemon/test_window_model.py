"""The daemon at full speed on a robot that changes place: its online model describes the
window (unlike a model of the whole history), the change is counted in ``status`` and
logged."""

from __future__ import annotations

import numpy as np

from streamgmm import GaussianMixture
from streamgmm.synthetic import two_buildings

WINDOW, K = 4000, 8
MODEL = {"name": "laser", "topic": "points/laser", "dim": 2, "components": K,
         "publish_every_s": 0.05, "refit_every_s": 0.0, "retain": "window",
         "window_points": WINDOW, "step_constant": 0.05}


def test_daemon_follows_a_change_of_place_at_full_speed(daemon_factory):
    X, start = two_buildings(seed=0, n_first=8000, n_second=10_000)
    held = np.random.default_rng(1).random(len(X)) < 0.15
    train = np.flatnonzero(~held)
    d = daemon_factory(models=[MODEL])
    for i in range(0, len(train), 512):  # as fast as the socket takes them
        d.send("points/laser", X[train[i:i + 512]])
    d.wait_for(lambda s: s["models"]["laser"]["n_seen"] == len(train), timeout=60)
    snap = d.request(op="snapshot", model="laser")
    status = d.status()["models"]["laser"]

    online = GaussianMixture.from_parameters(snap["weights"], snap["means"],
                                             snap["covariances"])
    window = train[-WINDOW:]
    test = np.flatnonzero(held[window[0]:]) + window[0]
    reference = GaussianMixture(K, n_init=3, random_state=0).fit(X[window])
    gap = reference.score(X[test]) - online.score(X[test])
    # A model of the whole history (the reservoir default, in the library) is far from
    # where the robot is now; the daemon's window model is not.
    history = GaussianMixture(K, random_state=0)
    for i in range(0, len(train), 512):
        history.partial_fit(X[train[i:i + 512]])
    history_gap = reference.score(X[test]) - history.score(X[test])
    assert gap < history_gap - 1.0, (gap, history_gap)
    assert status["n_change_points"] >= 1
    assert status["n_change_points"] == snap["n_change_points"]
    assert status["n_moves"] >= 1
    assert d.stop() == 0
    assert "change point at n_seen=" in d.log()
