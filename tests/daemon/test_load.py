"""The ``load`` control op: a batch-fitted mixture replaces a live model's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm import GaussianMixture
from streamgmm.cli import main
from streamgmm.client import ControlClient, ControlError

MODEL = {"name": "lidar", "topic": "points/lidar", "dim": 3, "components": 4,
         "publish_every_s": 0.0, "refit_every_s": 0.0}


def _site(seed: int = 0, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], dtype=float) + 20
    return rng.normal(centres[rng.integers(0, 4, n)], 0.5)


def _fitted_daemon(daemon_factory):
    d = daemon_factory([MODEL])
    # A patch of the site (two of its four blobs), as one robot has seen it so far.
    patch = _site(seed=1, n=4000)
    patch = patch[patch[:, 1] < 23][:2000]
    for part in np.array_split(patch, 4):
        d.send("points/lidar", part)
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] >= 2000, timeout=20)
    d.settle()
    d.updates(timeout=0.3)  # drop the online updates so far
    return d


def test_cli_load_publishes_refit_and_online_continues(daemon_factory, tmp_path, capsys):
    d = _fitted_daemon(daemon_factory)
    site = tmp_path / "site.npz"
    assert main(["fit", str(_write(tmp_path, _site())), "-k", "4", "--out", str(site)]) == 0
    capsys.readouterr()
    control = f"ipc://{d.directory}/control"
    assert main(["load", "--model", "lidar", str(site), "--control", control]) == 0
    assert "into lidar as seq" in capsys.readouterr().out
    saved = np.load(site)
    updates = [u for u in d.updates(timeout=1.0) if u["model"] == "lidar"]
    assert updates and updates[-1]["kind"] == "refit"
    np.testing.assert_allclose(updates[-1]["means"], saved["means"], rtol=1e-12)
    np.testing.assert_allclose(updates[-1]["covariances"], saved["covariances"], rtol=1e-12)
    status = d.status()["models"]["lidar"]
    assert status["loads"] == 1 and status["n_seen"] == 2000
    # The loaded mixture is the prior: points of the site move it only a little.
    d.send("points/lidar", _site(seed=2, n=500))
    d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 2500, timeout=10)
    snap = d.request(op="snapshot", model="lidar")
    order = np.argsort(snap["means"][:, 0] + 10 * snap["means"][:, 1])
    ref = np.argsort(saved["means"][:, 0] + 10 * saved["means"][:, 1])
    np.testing.assert_allclose(snap["means"][order], saved["means"][ref], atol=0.5)


def _write(tmp_path, X):
    path = tmp_path / "points.npy"
    np.save(path, X)
    return path


def test_load_refuses_wrong_shape_and_type(daemon_factory):
    d = _fitted_daemon(daemon_factory)
    gm = GaussianMixture(3, random_state=0).fit(_site())
    with ControlClient(f"ipc://{d.directory}/control") as ctl:
        with pytest.raises(ControlError, match="4 components.*3 components"):
            ctl.load("lidar", gm.weights_, gm.means_, gm.covariances_)
        diag = GaussianMixture(4, covariance_type="diag", random_state=0).fit(_site())
        with pytest.raises(ControlError, match="covariance full.*covariance diag"):
            ctl.load("lidar", diag.weights_, diag.means_, diag.covariances_,
                     covariance_type="diag")
        # Diag-shaped covariances sent as the model's (full) type: a shape error.
        with pytest.raises(ControlError, match="load refused.*shape"):
            ctl.load("lidar", diag.weights_, diag.means_, diag.covariances_)
        flat = GaussianMixture(4, random_state=0).fit(_site()[:, :2])
        with pytest.raises(ControlError, match="dim 3.*dim 2"):
            ctl.load("lidar", flat.weights_, flat.means_, flat.covariances_)
        good = GaussianMixture(4, random_state=0).fit(_site())
        bad_cov = good.covariances_.copy()
        bad_cov[0] = -np.eye(3)
        with pytest.raises(ControlError, match="load refused"):
            ctl.load("lidar", good.weights_, good.means_, bad_cov)
        with pytest.raises(ControlError, match="weight must be a positive"):
            ctl.load("lidar", good.weights_, good.means_, good.covariances_, weight=-1)
        with pytest.raises(ControlError, match="no model named"):
            ctl.load("nope", good.weights_, good.means_, good.covariances_)
        assert d.status()["models"]["lidar"]["loads"] == 0
        # The refusals changed nothing; a good load is taken, with its stated weight.
        seq = ctl.load("lidar", good.weights_, good.means_, good.covariances_, weight=1e9)
    assert seq > 0
    snap = d.request(op="snapshot", model="lidar")
    assert snap["seq"] == seq
    np.testing.assert_allclose(snap["means"], good.means_, rtol=1e-12)


def test_load_seeds_a_model_that_has_seen_nothing(daemon_factory):
    d = daemon_factory([MODEL])
    gm = GaussianMixture(4, random_state=0).fit(_site())
    with ControlClient(f"ipc://{d.directory}/control") as ctl:
        ctl.load("lidar", gm.weights_, gm.means_, gm.covariances_, covariance_type="full")
    snap = d.request(op="snapshot", model="lidar")
    np.testing.assert_allclose(snap["weights"], gm.weights_, rtol=1e-12)
    assert snap["kind"] == "snapshot" and snap["n_seen"] == 0
    d.send("points/lidar", _site(seed=3, n=300))
    status = d.wait_for(lambda s: s["models"]["lidar"]["n_seen"] == 300, timeout=10)
    assert status["models"]["lidar"]["fitted"]


def test_cli_load_bad_file_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", weights=np.ones(2) / 2)
    assert main(["load", "--model", "lidar", str(tmp_path / "x.npz"),
                 "--control", f"ipc://{tmp_path}/none", "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "lacks means, covariances" in err and err.count("\n") == 1
    assert main(["load", "--model", "lidar", str(tmp_path / "missing.npz")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_load_of_points_instead_of_a_mixture_file_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "pts.npy", np.zeros((10, 3)))
    (tmp_path / "scan.bin").write_bytes(np.zeros((4, 4), np.float32).tobytes())
    (tmp_path / "text.npz").write_text("weights,means\n")
    for name, what in [("pts.npy", "is a .npy array"), ("scan.bin", "not an .npz archive"),
                       ("text.npz", "not an .npz archive")]:
        assert main(["load", "--model", "lidar", str(tmp_path / name),
                     "--control", f"ipc://{tmp_path}/none", "--timeout", "0.5"]) == 2
        err = capsys.readouterr().err
        assert what in err and "fit --out" in err and err.count("\n") == 1, err
