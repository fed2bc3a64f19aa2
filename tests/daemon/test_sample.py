"""``sample_points``: a uniform sample of the absorbed points in each update, and ``frame``.

The sample is drawn by its own seeded generator: the model is the same with it as without
it (the parity with ``partial_fit`` holds), and subscribers that ignore the keys keep working.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm import codec
from streamgmm.client import Mixture
from streamgmm.daemon.config import load_config
from streamgmm.daemon.model import ModelRuntime
from streamgmm.daemon.sample import PointSample
from tests.daemon.test_parity import MODEL, sorted_blobs

# ----------------------------------------------------------------- the reservoir alone


def test_sample_is_bounded_and_made_of_the_offered_points() -> None:
    s = PointSample(capacity=10, dim=2, seed=0)
    assert s.take() is None
    s.add(np.zeros((0, 2)))
    assert s.take() is None
    s.add(np.arange(8.0).reshape(4, 2))
    pts, of = s.take()
    np.testing.assert_array_equal(pts, np.arange(8.0).reshape(4, 2))  # fewer than capacity
    assert of == 4 and s.take() is None  # take() starts afresh
    X = np.arange(2000.0).reshape(1000, 2)
    for part in np.array_split(X, 7):
        s.add(part)
    pts, of = s.take()
    assert pts.shape == (10, 2) and pts.dtype == np.float32 and of == 1000
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in pts.astype(np.float64))
    assert len({tuple(r) for r in pts}) == 10  # distinct points, no row kept twice


def test_sample_is_deterministic_per_seed() -> None:
    X = np.random.default_rng(5).normal(size=(5000, 3))

    def draw(seed: int) -> np.ndarray:
        s = PointSample(capacity=64, dim=3, seed=seed)
        for part in np.array_split(X, 13):
            s.add(part)
        return s.take()[0]

    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))


def test_every_point_is_equally_likely_whatever_the_batches() -> None:
    """Inclusion frequency of each of 100 points in a 10-point sample: 0.1 for all of them,
    with batches of uneven sizes (some larger than the sample). Seeded: no flakiness."""
    n, capacity, runs = 100, 10, 4000
    X = np.arange(n, dtype=np.float64)[:, None]
    counts = np.zeros(n)
    cuts = [3, 7, 30, 31, 64, 99]
    for seed in range(runs):
        s = PointSample(capacity, 1, seed)
        for part in np.split(X, cuts):
            s.add(part)
        counts[s.take()[0][:, 0].astype(int)] += 1
    freq = counts / runs
    # Binomial standard deviation sqrt(0.1 * 0.9 / 4000) = 0.0047: 5 of them.
    assert np.abs(freq - 0.1).max() < 0.024
    # The first points of an interval (copied in before any replacement) are no likelier.
    assert abs(freq[:capacity].mean() - freq[capacity:].mean()) < 0.01


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PointSample(0, 3, 0)


# ----------------------------------------------------------------- in the daemon


def test_updates_carry_a_sample_and_the_frame_and_the_model_is_unchanged(daemon_factory):
    model = dict(MODEL, sample_points=128)
    d = daemon_factory(models=[model])
    X = sorted_blobs(12_000)
    batches = np.array_split(X, 24)
    for i, batch in enumerate(batches):
        d.send("points/lidar", batch, frame="lidar_front" if i % 2 else "")
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == len(X), timeout=60)
    updates = d.updates(timeout=1.0)
    snap = d.request(op="snapshot", model="lidar")

    # The parity with partial_fit holds with the sample on: its generator is not the model's.
    library = ModelRuntime(load_config(d.config_path).models[0]).estimator
    for batch in batches:
        library.partial_fit(batch)
    np.testing.assert_allclose(snap["means"], library.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(snap["covariances"], library.covariances_, rtol=1e-9,
                               atol=1e-9)

    # publish_every_s = 0: one update per message, its sample drawn from that message.
    online = [u for u in updates if u["kind"] == "online"]
    assert len(online) >= 20
    sent = {tuple(np.float32(r)) for r in X}
    for i, u in enumerate(online):
        mixture = Mixture.from_update(u)
        pts = mixture.sample
        assert pts is not None and pts.dtype == np.float32
        assert u["sample"]["dtype"] == "<f4" and u["sample_of"] == 500
        assert pts.shape == (128, 3)
        assert all(tuple(r) in sent for r in pts)
        # The first message named no frame; from the second on, the latest one seen sticks.
        assert mixture.frame == ("" if i == 0 else "lidar_front")
    assert snap["frame"] == "lidar_front" and "sample" not in snap  # a snapshot has none


def test_no_sample_without_the_key_and_old_decoders_ignore_it(daemon_factory):
    d = daemon_factory(models=[dict(MODEL, components=2)])
    d.send("points/lidar", np.random.default_rng(0).normal(size=(300, 3)))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 300)
    (update,) = d.updates(timeout=1.0)
    assert "sample" not in update and "sample_of" not in update
    assert "frame" not in update  # no publisher named one
    # A peer that knows only version 1 decodes an update with the extensions as before.
    payload = codec.encode_update(
        **{k: update[k] for k in codec.UPDATE_KEYS if k != "v"},
        sample=codec.encode_array(np.ones((4, 3), np.float32)), sample_of=9, frame="f")
    again = codec.decode_update(payload)
    np.testing.assert_array_equal(again["means"], update["means"])
