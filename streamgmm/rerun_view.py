"""Live 3-D view of a mixture in rerun: ellipsoids per component, time axes ``seq``/``stamp``.

Used by ``streamgmm watch --rerun`` (spawn a viewer) and ``--rerun-save out.rrd`` (a file to
open with ``rerun out.rrd``). Needs the optional ``rerun-sdk``:
``pip install 'streamgmm[rerun]'``; it is imported only when a view is made.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamgmm.client import Mixture

__all__ = ["RerunView", "ViewerError", "ellipsoid_axes", "require_rerun", "spawn_viewer",
           "viewer_executable"]

SIGMAS = (1.0, 2.0)
# The viewer's gRPC port (rerun's default) and how long it may take to listen.
VIEWER_PORT = 9876
VIEWER_START_S = 15.0


class ViewerError(RuntimeError):
    """The rerun viewer cannot be started; the message is one line saying why."""


def viewer_executable() -> str | None:
    """The ``rerun`` viewer program: next to the running interpreter first (a virtual
    environment's ``bin/``, used without activating it), else on ``PATH``."""
    here = Path(sys.executable).parent / ("rerun.exe" if os.name == "nt" else "rerun")
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("rerun")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spawn_viewer(port: int = VIEWER_PORT, timeout: float = VIEWER_START_S) -> str:
    """Start a rerun viewer listening on loopback only (or use one already there).

    Returns
    -------
    str
        The URL to connect a recording to (``rerun+http://127.0.0.1:PORT/proxy``).

    Raises
    ------
    ViewerError
        No display to show it on, no ``rerun`` program, or it exited before it listened.
    """
    url = f"rerun+http://127.0.0.1:{port}/proxy"
    if _listening(port):
        return url  # a viewer is running: log into it, as rerun.spawn() does
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise ViewerError("no display to open the rerun viewer on (DISPLAY and "
                          "WAYLAND_DISPLAY are unset); use --rerun-save OUT.rrd and open it "
                          "where there is a screen")
    exe = viewer_executable()
    if exe is None:
        raise ViewerError(f"the rerun viewer program is neither next to {sys.executable} nor "
                          "on PATH: pip install 'streamgmm[rerun]'")
    log = tempfile.TemporaryFile()
    env = dict(os.environ, RERUN_APP_ONLY="true")
    try:
        proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(port), "--memory-limit", "75%"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
            start_new_session=True,  # the viewer outlives `watch`, as rerun.spawn()'s does
        )
    except OSError as exc:
        raise ViewerError(f"cannot run {exe}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _listening(port):
            time.sleep(0.3)  # it listens before it opens its window, which may still fail
            if proc.poll() is None:
                return url
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
        raise ViewerError(f"the rerun viewer did not listen on 127.0.0.1:{port} within "
                          f"{timeout:g} s")
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode("utf-8", "replace").splitlines()
             if ln.strip()]
    why = next((ln for ln in reversed(lines) if "error" in ln.lower()),
               lines[-1] if lines else f"exit status {proc.returncode}")
    raise ViewerError(f"the rerun viewer could not start: {' '.join(why.split())[:300]}")


def require_rerun() -> Any:
    """The ``rerun`` module, or an ImportError naming the extra."""
    try:
        import rerun
    except ImportError:
        raise ImportError("--rerun needs rerun-sdk: pip install 'streamgmm[rerun]'") from None
    return rerun


def ellipsoid_axes(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-axis lengths (1 sigma) and rotation quaternions (x, y, z, w) of 3x3 covariances.

    Parameters
    ----------
    covariances : numpy.ndarray of shape (K, 3, 3)

    Returns
    -------
    half_sizes : numpy.ndarray of shape (K, 3)
        Square roots of the eigenvalues (negative round-off clipped to 0).
    quaternions : numpy.ndarray of shape (K, 4)
        Rotations taking the unit axes to the eigenvectors.
    """
    values, vectors = np.linalg.eigh(covariances)
    # eigh may return a reflection; flip one axis so every frame is a proper rotation.
    flip = np.linalg.det(vectors) < 0
    vectors[flip, :, 0] *= -1
    half = np.sqrt(np.clip(values, 0.0, None))
    return half, _quaternions(vectors)


def _quaternions(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (K, 3, 3) to unit quaternions (K, 4) in (x, y, z, w) order."""
    # Shepperd's method, vectorised: pick the largest of w, x, y, z to divide by.
    m = r
    t = np.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2],
                  1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                  1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                  1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], axis=1)
    pick = np.argmax(t, axis=1)
    q = np.empty((len(m), 4))
    s = np.sqrt(np.clip(t[np.arange(len(m)), pick], 1e-300, None)) * 2
    for k, (i, sk) in enumerate(zip(pick, s)):  # K is the number of components: small
        a = m[k]
        if i == 0:
            q[k] = [(a[2, 1] - a[1, 2]) / sk, (a[0, 2] - a[2, 0]) / sk,
                    (a[1, 0] - a[0, 1]) / sk, sk / 4]
        elif i == 1:
            q[k] = [sk / 4, (a[0, 1] + a[1, 0]) / sk, (a[0, 2] + a[2, 0]) / sk,
                    (a[2, 1] - a[1, 2]) / sk]
        elif i == 2:
            q[k] = [(a[0, 1] + a[1, 0]) / sk, sk / 4, (a[1, 2] + a[2, 1]) / sk,
                    (a[0, 2] - a[2, 0]) / sk]
        else:
            q[k] = [(a[0, 2] + a[2, 0]) / sk, (a[1, 2] + a[2, 1]) / sk, sk / 4,
                    (a[1, 0] - a[0, 1]) / sk]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def component_colors(k: int) -> np.ndarray:
    """K distinct RGB colours (uint8), the same for component k in every update."""
    hues = (np.arange(k) * 0.618033988749895) % 1.0  # golden-ratio steps spread the hues
    h6 = hues * 6
    x = 1 - np.abs(h6 % 2 - 1)
    sector = h6.astype(int) % 6
    rgb = np.zeros((k, 3))
    table = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)]
    for s, (r, g, b) in enumerate(table):
        sel = sector == s
        rgb[sel] = np.c_[np.broadcast_to(r, k)[sel], np.broadcast_to(g, k)[sel],
                         np.broadcast_to(b, k)[sel]]
    return (rgb * 0.85 * 255 + 20).astype(np.uint8)


class RerunView:
    """Log each mixture as ellipsoids to a rerun viewer or an ``.rrd`` file.

    Entities: ``mixture/sigma1`` and ``mixture/sigma2`` (Ellipsoids3D, one per component,
    coloured by component, with the line width growing with the weight), ``mixture/means``
    (Points3D, radius by weight) and, with :meth:`log_points`, ``points`` (Points3D). Time
    axes: ``seq`` (the update's sequence number) and ``stamp`` (the latest sensor stamp
    absorbed, as a timestamp).

    Parameters
    ----------
    save : str, optional
        Write an ``.rrd`` file here instead of spawning a viewer.
    spawn : bool, default=True
        Start (or connect to) a local viewer when `save` is not given
        (:func:`spawn_viewer`: the ``rerun`` next to this interpreter, listening on
        127.0.0.1 only); :class:`ViewerError` when it cannot start.
    recording : rerun.RecordingStream, optional
        Log into this stream instead (tests use a memory recording).
    connect : str, optional
        The URL of a running viewer to log into.
    """

    def __init__(self, *, save: str | None = None, spawn: bool = True,
                 recording: Any = None, application_id: str = "streamgmm",
                 connect: str | None = None) -> None:
        rr = require_rerun()
        self._rr = rr
        if recording is None:
            recording = rr.RecordingStream(application_id)
            if save is not None:
                recording.save(save)
            elif connect is not None:
                recording.connect_grpc(connect)
            elif spawn:
                recording.connect_grpc(spawn_viewer())
        self.rec = recording
        self.logged = 0

    def _set_time(self, seq: int, stamp: float | None) -> None:
        self.rec.set_time("seq", sequence=int(seq))
        if stamp is not None and np.isfinite(stamp):
            self.rec.set_time("stamp", timestamp=float(stamp))

    def log_mixture(self, m: Mixture) -> None:
        """Log one mixture (3-D, or its first three dimensions; 2-D gets z = 0)."""
        rr = self._rr
        cov = m.to_estimator().params_.full_covariances()
        d = cov.shape[-1]
        k = len(m.weights)
        if d >= 3:
            means, cov3 = m.means[:, :3], cov[:, :3, :3]
        else:  # pad to 3-D: a flat ellipsoid in the z = 0 plane
            means = np.zeros((k, 3))
            means[:, :d] = m.means
            cov3 = np.zeros((k, 3, 3))
            cov3[:, :d, :d] = cov
        half, quats = ellipsoid_axes(cov3)
        colors = component_colors(k)
        w = np.asarray(m.weights, dtype=np.float64)
        scale = float(np.median(half[half > 0])) if np.any(half > 0) else 1.0
        self._set_time(m.seq, m.last_stamp)
        labels = [f"k={i} w={wi:.3f}" for i, wi in enumerate(w)]
        for sigma in SIGMAS:
            rr_colors = np.c_[colors, np.full(k, 255 if sigma == 1 else 110, np.uint8)]
            self.rec.log(
                f"mixture/sigma{int(sigma)}",
                rr.Ellipsoids3D(centers=means, half_sizes=half * sigma, quaternions=quats,
                                colors=rr_colors, line_radii=0.004 * scale * (1 + 10 * w),
                                labels=labels if sigma == 1 else None),
            )
        self.rec.log("mixture/means",
                     rr.Points3D(means, colors=colors, radii=0.05 * scale * (0.3 + 3 * np.sqrt(w)),
                                 labels=labels))
        self.rec.log("mixture/info", rr.TextLog(
            f"{m.model} seq {m.seq} ({m.kind}) n_seen {m.n_seen} "
            f"avg_ll {m.avg_log_likelihood:.4f}"))
        self.logged += 1

    def log_points(self, points: np.ndarray, *, seq: int, stamp: float | None = None) -> None:
        """Log the latest points as a point cloud (first three dimensions)."""
        pts = np.asarray(points, dtype=np.float32)
        if pts.shape[1] < 3:
            pts = np.c_[pts, np.zeros((len(pts), 3 - pts.shape[1]), np.float32)]
        self._set_time(seq, stamp)
        self.rec.log("points", self._rr.Points3D(pts[:, :3], colors=[150, 150, 150]))

    def close(self) -> None:
        """Flush what was logged (the .rrd file is complete after this)."""
        self.rec.flush()
        disconnect = getattr(self.rec, "disconnect", None)
        if disconnect is not None:
            disconnect()
