"""Batch EM over Dask: the estimator on dask arrays and ``streamgmm fit`` on shards.

One LocalCluster (2 worker processes, in-process scheduler) serves the whole module and is
always closed; every distributed call has a bounded timeout.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from streamgmm import GaussianMixture, dask_em
from streamgmm.cli import main
from streamgmm.estimator import ConvergenceWarning

da = pytest.importorskip("dask.array", reason="needs the extra streamgmm[dask]")
distributed = pytest.importorskip("distributed", reason="needs the extra streamgmm[dask]")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
    )
    try:
        with distributed.Client(cluster, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
            yield c
    finally:
        cluster.close(timeout=30)


def _blobs(n_per: int = 1500, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [5.0] * d, [0.0, 9.0] + [2.0] * (d - 2)])
    X = np.vstack([rng.normal(c, [1.0, 0.6, 1.4][:d] if d <= 3 else 1.0, (n_per, d))
                   for c in centres]) + 50.0
    return X[rng.permutation(len(X))]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_ten_iterations_match_in_memory(client, ctype):
    X = _blobs()
    start = GaussianMixture(3, covariance_type=ctype, max_iter=3, random_state=1).fit(X)
    init = {"weights_init": start.weights_, "means_init": start.means_ + 0.3,
            "precisions_init": start.precisions_}
    kwargs = {"covariance_type": ctype, "max_iter": 10, "tol": 0.0, **init}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, **kwargs).fit(X)
        got = GaussianMixture(3, **kwargs).fit(da.from_array(X, chunks=(700, 3)))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert _relative(getattr(ref, name), getattr(got, name)) < 1e-9, name
    assert got.n_iter_ == ref.n_iter_ == 10
    assert got.converged_ is ref.converged_ is False
    assert got.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)
    np.testing.assert_allclose(got.lower_bounds_, ref.lower_bounds_, rtol=1e-12)


def test_convergence_test_is_the_in_memory_one(client):
    X = _blobs(seed=2)
    with pytest.warns(ConvergenceWarning):
        start = GaussianMixture(3, max_iter=1, random_state=0, init_params="random").fit(X)
    init = {"weights_init": start.weights_, "means_init": start.means_,
            "precisions_init": start.precisions_}
    ref = GaussianMixture(3, tol=1e-5, **init).fit(X)
    got = GaussianMixture(3, tol=1e-5, **init).fit(da.from_array(X, chunks=1000))
    assert ref.converged_ and got.converged_
    assert got.n_iter_ == ref.n_iter_ > 2
    assert _relative(ref.means_, got.means_) < 1e-9
    # The fitted model continues online from statistics counted in points.
    assert got.n_seen_ == len(X)
    assert got.stats_.total == pytest.approx(len(X))
    got.partial_fit(X[:500])
    assert got.n_seen_ == len(X) + 500
    # fit_predict returns the labels as a dask array, computed on the workers.
    Xd = da.from_array(X, chunks=1000)
    gm = GaussianMixture(3, tol=1e-5, **init)
    labels = gm.fit_predict(Xd)
    assert dask_em.is_dask_array(labels)
    np.testing.assert_array_equal(labels.compute(), gm.predict(X))


@pytest.mark.parametrize("init_params", ["k-means++", "random", "kmeans"])
def test_initialisation_is_deterministic_and_sampled(client, monkeypatch, init_params):
    X = _blobs(seed=3)
    Xd = da.from_array(X, chunks=800)
    # A sample smaller than the data: initialisation sees only seeded rows, never all of X.
    monkeypatch.setattr(dask_em, "INIT_SAMPLE", 600)
    fits = [GaussianMixture(3, init_params=init_params, random_state=7).fit(Xd)
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    with pytest.warns(ConvergenceWarning):  # one iteration: not converged, and said so
        other = GaussianMixture(3, init_params=init_params, random_state=8, max_iter=1).fit(Xd)
        first = GaussianMixture(3, init_params=init_params, random_state=7, max_iter=1).fit(Xd)
    assert not np.array_equal(first.means_, other.means_)
    if init_params != "random":  # (random responsibilities may end in a local optimum)
        # The three blobs are found from the sampled start.
        found = np.sort(fits[0].means_[:, 1])
        np.testing.assert_allclose(found, np.sort([50.0, 55.0, 59.0]), atol=0.3)


def test_sample_is_bounded_and_in_row_order(client):
    X = np.arange(3000.0).reshape(1000, 3)
    data = dask_em.DaskData(da.from_array(X, chunks=(150, 3)), client)
    rows = data.sample(100, np.random.RandomState(0))
    assert 90 <= len(rows) <= 100
    assert np.all(np.diff(rows[:, 0]) > 0)
    assert np.isin(rows[:, 0], X[:, 0]).all()
    assert data.n_points == 1000 and data.n_tasks == 2
    np.testing.assert_allclose(data.shift, X.mean(axis=0))


def test_bad_dask_input_is_refused(client):
    X = _blobs()
    X[17, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        GaussianMixture(2).fit(da.from_array(X, chunks=1000))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(da.from_array(_blobs()[:4], chunks=2))
    with pytest.raises(ValueError, match="'means' should have the shape"):
        GaussianMixture(2, means_init=np.zeros((2, 4))).fit(da.from_array(_blobs(), chunks=900))


def test_without_a_client_it_runs_on_threads_and_core_imports_without_dask():
    code = (
        "import sys, numpy as np\n"
        "import streamgmm, streamgmm.estimator, streamgmm.cli, streamgmm.daemon.service\n"
        "assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n"
        "import dask.array as da\n"
        "from streamgmm import GaussianMixture\n"
        "rng = np.random.default_rng(0)\n"
        "X = np.vstack([rng.normal(0, 1, (400, 2)), rng.normal(8, 1, (400, 2))])\n"
        "a = GaussianMixture(2, random_state=0, init_params='random_from_data').fit(X)\n"
        "init = dict(weights_init=a.weights_, means_init=a.means_ + 0.5,\n"
        "            precisions_init=a.precisions_)\n"
        "r = GaussianMixture(2, **init).fit(X)\n"
        "g = GaussianMixture(2, **init).fit(da.from_array(X, chunks=100))\n"
        "assert np.allclose(r.means_, g.means_, rtol=1e-9) and r.n_iter_ == g.n_iter_\n"
        "print('ok', g.n_iter_)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


# ----------------------------------------------------------------------------- CLI on shards


def _write_shards(tmp_path, X, n_shards=4):
    folder = tmp_path / "logs"
    folder.mkdir()
    for i, part in enumerate(np.array_split(X, n_shards)):
        np.save(folder / f"shard{i:02d}.npy", part)
    return folder


def test_shard_loader_memory_maps_npy(tmp_path):
    folder = _write_shards(tmp_path, _blobs(200))
    block = dask_em._load_shard(str(folder / "shard00.npy"))
    assert isinstance(block, np.memmap) and block._mmap is not None
    from dask.sizeof import sizeof

    assert sizeof(block) < 1024 < block.nbytes  # page cache, not worker heap


def test_cli_fit_on_shards_matches_in_memory_fit(client, tmp_path, capsys):
    X = _blobs(seed=4)
    folder = _write_shards(tmp_path, X)
    address = client.scheduler.address
    out = tmp_path / "site.npz"
    rc = main(["fit", str(folder / "*.npy"), "-k", "3", "--scheduler", address,
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "iteration 1  lower bound" in captured.err and " s\n" in captured.err
    assert "in 4 shards" in captured.out
    site = np.load(out)
    # The data are smaller than the initialisation sample: the same k-means start, the
    # same EM as in memory.
    ref = GaussianMixture(3, random_state=0).fit(X)
    assert _relative(ref.means_, site["means"]) < 1e-9
    assert _relative(ref.covariances_, site["covariances"]) < 1e-9
    assert str(site["covariance_type"]) == "full"
    # A directory of shards names the same data.
    rc = main(["fit", str(folder), "-k", "3", "--scheduler", address, "--max-iter", "2"])
    assert rc == 0
    assert "iteration 2" in capsys.readouterr().err


def test_cli_fit_reads_parquet_shards(client, tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X = _blobs(300, seed=5)
    for i, part in enumerate(np.array_split(X, 2)):
        pq.write_table(pa.table({c: part[:, j] for j, c in enumerate("xyz")}),
                       tmp_path / f"p{i}.parquet")
    rc = main(["fit", str(tmp_path / "*.parquet"), "-k", "3", "--scheduler",
               client.scheduler.address, "--out", str(tmp_path / "m.npz")])
    assert rc == 0, capsys.readouterr().err
    ref = GaussianMixture(3, random_state=0).fit(X)
    assert _relative(ref.means_, np.load(tmp_path / "m.npz")["means"]) < 1e-9


def test_cli_fit_bad_shards_exit_2_with_one_line(client, tmp_path, capsys):
    address = client.scheduler.address
    assert main(["fit", str(tmp_path / "nothing*.npy"), "-k", "2", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "no shard matches" in err and err.count("\n") == 1
    np.save(tmp_path / "a.npy", np.zeros((10, 3)))
    np.save(tmp_path / "b.npy", np.zeros((10, 2)))
    assert main(["fit", str(tmp_path), "-k", "2", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "disagree on the dimension" in err and err.count("\n") == 1


def test_cli_fit_without_scheduler_runs_a_local_cluster(client, tmp_path, capsys):
    X = _blobs(400, seed=6)
    folder = _write_shards(tmp_path, X, n_shards=3)
    out = tmp_path / "local.npz"
    rc = main(["fit", str(folder), "-k", "3", "--workers", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "EM on a local cluster of 1 workers" in captured.err
    assert "on 1 workers" in captured.out
    ref = GaussianMixture(3, random_state=0).fit(X)
    assert _relative(ref.means_, np.load(out)["means"]) < 1e-9
    assert int(np.load(out)["n_points"]) == len(X)
    # The module's cluster is still the current one afterwards.
    assert distributed.get_client() is client


def test_a_missing_extra_is_named(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "dask.array", None)  # import dask.array now fails
    with pytest.raises(ImportError, match=r"pip install 'streamgmm\[dask\]'"):
        dask_em.require_dask()
    np.save(tmp_path / "a.npy", _blobs(100))
    assert main(["fit", str(tmp_path / "*.npy"), "-k", "2"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'streamgmm[dask]'" in err and err.count("\n") == 1


def test_statistics_do_not_depend_on_which_worker_holds_which_chunk(client):
    """The partial results are added in chunk order: regrouping the chunks (another worker
    placement, another completion order) gives the same bits."""
    X = _blobs(seed=5)
    data = dask_em.DaskData(da.from_array(X, chunks=300), client)
    worker = data._groups[0][0]
    params = GaussianMixture(3, random_state=0, max_iter=5).fit(X).params_
    first = data.statistics(params)
    chunks = [i for _, idx in data._groups for i in idx]
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = rng.permutation(chunks)
        data._groups = [(worker, [int(i) for i in part]) for part in np.array_split(order, 3)]
        again = data.statistics(params)
        np.testing.assert_array_equal(again.stats.means, first.stats.means)
        np.testing.assert_array_equal(again.stats.scatter, first.stats.scatter)
        assert again.log_likelihood == first.log_likelihood
