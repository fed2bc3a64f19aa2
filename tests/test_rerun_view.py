"""``streamgmm watch --rerun-save``: mixtures logged as ellipsoids to an .rrd, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamgmm.client import Mixture
from streamgmm.rerun_view import RerunView, ellipsoid_axes

rr = pytest.importorskip("rerun", reason="rerun-sdk not installed: pip install 'streamgmm[rerun]'")


def mixture(seq: int, k: int = 3, d: int = 3) -> Mixture:
    rng = np.random.default_rng(seq)
    a = rng.normal(size=(k, d, d))
    return Mixture(model="lidar", seq=seq, stamp=1000.0 + seq, n_seen=100 * seq, kind="online",
                   covariance_type="full", weights=np.full(k, 1 / k),
                   means=rng.normal(size=(k, d)), covariances=a @ a.transpose(0, 2, 1),
                   avg_log_likelihood=-3.5, last_stamp=50.0 + seq, extra={})


def read_rrd(path: Path) -> dict[str, list]:
    """entity path -> chunks (rerun-sdk's own reader)."""
    out: dict[str, list] = {}
    for chunk in rr.chunk.RrdReader(path).stream().to_chunks():
        out.setdefault(chunk.entity_path, []).append(chunk)
    return out


def test_ellipsoid_axes_rebuild_the_covariance() -> None:
    from scipy.spatial.transform import Rotation

    cov = mixture(4, k=20).covariances
    half, quats = ellipsoid_axes(cov)
    rot = Rotation.from_quat(quats).as_matrix()
    rebuilt = rot @ (half[:, :, None] ** 2 * np.eye(3)) @ rot.transpose(0, 2, 1)
    np.testing.assert_allclose(rebuilt, cov, atol=1e-10)


@pytest.mark.parametrize("d", [3, 2])
def test_updates_logged_to_an_rrd(tmp_path: Path, d: int) -> None:
    path = tmp_path / "out.rrd"
    view = RerunView(save=str(path))
    for seq in (1, 2, 3, 5):
        view.log_mixture(mixture(seq, k=4, d=d))
    view.log_points(np.random.default_rng(0).normal(size=(7, d)), seq=5)
    view.close()
    chunks = read_rrd(path)
    for entity in ("/mixture/sigma1", "/mixture/sigma2", "/mixture/means", "/mixture/info"):
        assert sum(c.num_rows for c in chunks[entity]) == 4, entity
        assert all({"seq", "stamp"} <= set(c.timeline_names) for c in chunks[entity])
    batch = chunks["/mixture/sigma1"][0].to_record_batch()
    seqs = batch.column(batch.schema.get_field_index("seq")).to_pylist()
    assert seqs == [1, 2, 3, 5]
    half_col = next(i for i, f in enumerate(batch.schema) if "half_sizes" in f.name.lower())
    halves = batch.column(half_col).to_pylist()
    assert [len(h) for h in halves] == [4] * 4  # one ellipsoid per component per update
    expected, _ = ellipsoid_axes(_pad3(mixture(1, k=4, d=d).covariances))
    np.testing.assert_allclose(np.array(halves[0]), expected, rtol=1e-5)
    assert sum(c.num_rows for c in chunks["/points"]) == 1


def _pad3(cov: np.ndarray) -> np.ndarray:
    out = np.zeros((len(cov), 3, 3))
    d = cov.shape[-1]
    out[:, :d, :d] = cov
    return out


def test_watch_rerun_save(ctx, fake_control, tmp_path: Path, capsys) -> None:
    import threading

    import zmq

    from streamgmm.cli import main
    from tests.helpers.fakes import MODEL, bound_socket, update_payload, wait_subscribed
    from tests.test_cli import control_handler

    control = fake_control(control_handler)
    pub, endpoint = bound_socket(ctx, zmq.XPUB)
    topic = b"gmm/" + MODEL.encode()

    def publish() -> None:
        wait_subscribed(pub, topic)
        for seq in (5, 6):
            pub.send_multipart([topic, update_payload(seq)])

    thread = threading.Thread(target=publish)
    thread.start()
    out = tmp_path / "watch.rrd"
    try:
        argv = ["watch", "--endpoint", endpoint, "--control", control.endpoint, "--model",
                MODEL, "--count", "3", "--timeout", "10", "--rerun-save", str(out)]
        assert main(argv) == 0
    finally:
        thread.join(10.0)
        pub.close(linger=0)
    assert len(capsys.readouterr().out.splitlines()) == 3  # the snapshot, then seq 5 and 6
    chunks = read_rrd(out)
    batch = chunks["/mixture/sigma1"][0].to_record_batch()
    assert batch.column(batch.schema.get_field_index("seq")).to_pylist() == [4, 5, 6]
