"""The live mixture in Foxglove: ellipsoids as ``foxglove.SceneUpdate``, served and recorded.

Used by ``streamgmm watch --foxglove [HOST:]PORT`` (a Foxglove WebSocket server; open it in
Foxglove or Lichtblick with *Open connection > Foxglove WebSocket*) and ``--foxglove-save
FILE.mcap`` (the same messages in an MCAP file, to open beside a robot's bag). Needs the
optional ``foxglove-sdk``: ``pip install 'streamgmm[foxglove]'``; it is imported only when a
view is made.

The geometry is pure numpy and needs no SDK (:func:`mixture_ellipsoids`,
:func:`covariance_from_pose`): component ``k`` becomes a ``SpherePrimitive`` ("sphere or
ellipsoid") centred on its mean, rotated by the eigenvectors of its covariance and sized by
its eigenvalues, at 1 and 2 sigma. Two-dimensional models are flat ellipses in the ``z = 0``
plane; other dimensions are refused.

Channels, per model ``NAME``:

- ``/streamgmm/NAME/mixture`` (``foxglove.SceneUpdate``): entities ``NAME/sigma1`` and
  ``NAME/sigma2`` with one sphere per component (in component order), the metadata ``model``,
  ``seq``, ``kind``, ``n_seen``, ``n_change_points``, ``avg_log_likelihood``,
  ``components``, ``weights`` (comma-separated, in component order) and ``sigma``, and on
  ``NAME/sigma1`` a text label with the same figures but the weights.
- ``/streamgmm/NAME/points`` (``foxglove.PointCloud``, fields ``x``, ``y``, ``z`` float32):
  the update's ``sample`` of the absorbed points, when the daemon sends one.

Messages are in the frame the points came in (the update's ``frame``, ``base_link`` when it
has none) and stamped with the newest sensor stamp the model absorbed (``last_stamp``; the
update's wall-clock ``stamp`` before any), so a recording lines up with the robot's bag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamgmm.rerun_view import component_colors, ellipsoid_axes

if TYPE_CHECKING:
    from streamgmm.client import Mixture

__all__ = [
    "DEFAULT_FRAME",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SIGMAS",
    "Ellipsoids",
    "FoxgloveView",
    "covariance_from_pose",
    "full_covariances",
    "mixture_ellipsoids",
    "parse_address",
    "require_foxglove",
    "stamp_ns",
]

SIGMAS = (1.0, 2.0)
DEFAULT_FRAME = "base_link"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# A flat ellipse (2-D model) is an ellipsoid this thin: a fraction of its smaller axis (a
# zero size would leave the renderer a degenerate shape to light).
FLAT_THICKNESS = 0.01


def require_foxglove() -> Any:
    """The ``foxglove`` module (foxglove-sdk), or an ImportError naming the extra."""
    try:
        import foxglove
        import foxglove.channels  # noqa: F401
        import foxglove.messages  # noqa: F401
    except ImportError:
        raise ImportError(
            "--foxglove needs foxglove-sdk: pip install 'streamgmm[foxglove]'"
        ) from None
    return foxglove


def parse_address(text: str) -> tuple[str, int]:
    """``"[HOST:]PORT"`` -> ``(host, port)``; the host defaults to 127.0.0.1.

    Parameters
    ----------
    text : str
        ``"8765"``, ``"127.0.0.1:8765"``, ``"0.0.0.0:8765"`` (every interface, only when
        asked), ``"[::1]:8765"``. Port 0 lets the system choose a free port.

    Returns
    -------
    tuple of (str, int)

    Raises
    ------
    ValueError
        If the port is not an integer in [0, 65535] or the host is empty.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"expected [HOST:]PORT, got {text!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected [HOST:]PORT with a port in 0..65535, got {text!r}")
    return host, int(port)


def full_covariances(covariance_type: str, covariances: np.ndarray, k: int,
                     d: int) -> np.ndarray:
    """The ``(K, d, d)`` covariance matrices of any of the four covariance types.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}
    covariances : numpy.ndarray
        ``(K, d, d)``, ``(K, d)``, ``(K,)`` or ``(d, d)`` as in protocol section 2.
    k, d : int
        Number of components and dimension.

    Returns
    -------
    numpy.ndarray of shape (K, d, d)
    """
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov.reshape(k, d, d).copy()
    if covariance_type == "diag":
        return cov.reshape(k, d)[:, :, None] * np.eye(d)
    if covariance_type == "spherical":
        return cov.reshape(k)[:, None, None] * np.eye(d)
    if covariance_type == "tied":
        return np.broadcast_to(cov.reshape(d, d), (k, d, d)).copy()
    raise ValueError(f"unknown covariance_type {covariance_type!r}")


@dataclass(frozen=True, eq=False)
class Ellipsoids:
    """Components as 3-D ellipsoids.

    Attributes
    ----------
    centers : numpy.ndarray of shape (K, 3)
        The means (``z = 0`` for a 2-D model).
    orientations : numpy.ndarray of shape (K, 4)
        Unit quaternions ``(x, y, z, w)`` taking the frame's axes to the principal axes.
    half_axes : numpy.ndarray of shape (K, 3)
        One-sigma half-axis lengths, the square roots of the covariance's eigenvalues (for a
        2-D model the third is the thickness, :data:`FLAT_THICKNESS` of the smaller one).
    colors : numpy.ndarray of shape (K, 4)
        RGBA in [0, 1]: a hue per component (the same as the PNG and rerun views) and an
        alpha growing with the weight (0.15 for a weightless component, 0.75 for the
        heaviest).
    """

    centers: np.ndarray
    orientations: np.ndarray
    half_axes: np.ndarray
    colors: np.ndarray


def mixture_ellipsoids(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray,
                       covariance_type: str) -> Ellipsoids:
    """Ellipsoids of a 2-D or 3-D mixture (pure numpy).

    Parameters
    ----------
    weights : numpy.ndarray of shape (K,)
    means : numpy.ndarray of shape (K, d)
        ``d`` is 2 or 3.
    covariances : numpy.ndarray
        In the layout of `covariance_type` (see :func:`full_covariances`).
    covariance_type : {"full", "diag", "spherical", "tied"}

    Returns
    -------
    Ellipsoids

    Raises
    ------
    ValueError
        For a dimension other than 2 or 3.

    Examples
    --------
    >>> import numpy as np
    >>> e = mixture_ellipsoids(np.array([1.0]), np.array([[1.0, 2.0, 3.0]]),
    ...                        np.array([[4.0, 9.0, 1.0]]), "diag")
    >>> e.half_axes.round(6).tolist()  # eigenvalues ascending: 1, 4, 9
    [[1.0, 2.0, 3.0]]
    >>> np.allclose(covariance_from_pose(e.orientations[0], 2 * e.half_axes[0]),
    ...             np.diag([4.0, 9.0, 1.0]))
    True
    """
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    k, d = mu.shape
    if d not in (2, 3):
        raise ValueError(f"Foxglove draws models of 2 or 3 dimensions; this one has {d}")
    cov = full_covariances(covariance_type, covariances, k, d)
    centers = np.zeros((k, 3))
    centers[:, :d] = mu
    if d == 3:
        half, quats = ellipsoid_axes(cov)
    else:
        values, vectors = np.linalg.eigh(cov)  # ascending; columns are the axes
        flip = np.linalg.det(vectors) < 0  # a reflection: turn it into a rotation
        vectors[flip, :, 0] *= -1
        angle = np.arctan2(vectors[:, 1, 0], vectors[:, 0, 0])  # of the first axis
        quats = np.zeros((k, 4))
        quats[:, 2] = np.sin(angle / 2)
        quats[:, 3] = np.cos(angle / 2)
        half = np.zeros((k, 3))
        half[:, :2] = np.sqrt(np.clip(values, 0.0, None))
        half[:, 2] = FLAT_THICKNESS * half[:, 0]
    top = float(w.max()) if k and w.max() > 0 else 1.0
    colors = np.empty((k, 4))
    colors[:, :3] = component_colors(k) / 255.0
    colors[:, 3] = 0.15 + 0.6 * np.clip(w / top, 0.0, 1.0)
    return Ellipsoids(centers, quats, half, colors)


def covariance_from_pose(orientation: np.ndarray, size: np.ndarray,
                         sigma: float = 1.0) -> np.ndarray:
    """The 3x3 covariance that an ellipsoid's pose and size stand for (the inverse map).

    Parameters
    ----------
    orientation : array_like of shape (4,)
        Quaternion ``(x, y, z, w)``.
    size : array_like of shape (3,)
        Diameters along the ellipsoid's axes (a ``SpherePrimitive``'s ``size``).
    sigma : float, default=1.0
        The sigma the ellipsoid was drawn at.

    Returns
    -------
    numpy.ndarray of shape (3, 3)
        ``R diag((size / (2 sigma))**2) R^T`` with ``R`` the quaternion's rotation.
    """
    x, y, z, w = np.asarray(orientation, dtype=np.float64) / np.linalg.norm(orientation)
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    half = np.asarray(size, dtype=np.float64) / (2.0 * sigma)
    return (r * half**2) @ r.T


def stamp_ns(m: Mixture) -> int:
    """Log time of a mixture in nanoseconds since the epoch.

    The newest sensor stamp the model absorbed (``last_stamp``), so that the messages line
    up with the sensor data in a bag; the update's wall-clock ``stamp`` when there is none
    (NaN, or not positive).
    """
    t = m.last_stamp if math.isfinite(m.last_stamp) and m.last_stamp > 0 else m.stamp
    return max(0, int(round(t * 1e9)))


def _label(m: Mixture) -> list[tuple[str, str]]:
    """The figures shown with the ellipsoids: (key, value) strings."""
    return [
        ("model", m.model),
        ("seq", str(m.seq)),
        ("kind", m.kind),
        ("n_seen", str(m.n_seen)),
        ("n_change_points", str(m.extra.get("n_change_points", 0))),
        ("avg_log_likelihood", f"{m.avg_log_likelihood:.4f}"),
        ("components", str(m.n_components)),
        ("weights", ",".join(f"{w:.6g}" for w in m.weights)),
    ]


class FoxgloveView:
    """Serve each mixture as a ``foxglove.SceneUpdate`` over WebSocket and/or record it in MCAP.

    Parameters
    ----------
    serve : tuple of (str, int), optional
        ``(host, port)`` of a Foxglove WebSocket server to start (port 0: a free port, see
        :attr:`port`).
    save : str, optional
        Write an MCAP file here; an existing file is refused (a FileExistsError), so a bag
        is never overwritten by mistake.
    name : str, default="streamgmm"
        Server name shown by Foxglove.

    Raises
    ------
    ImportError
        Without foxglove-sdk (the message names the extra).
    FileExistsError
        If `save` exists.
    OSError, RuntimeError
        If the server cannot listen there or the file cannot be written.
    """

    def __init__(self, *, serve: tuple[str, int] | None = None, save: str | None = None,
                 name: str = "streamgmm") -> None:
        fg = require_foxglove()
        self._fg = fg
        self._msg = fg.messages
        # A context of our own: only this view's channels reach its server and file.
        self.context = fg.Context()
        self.server: Any = None
        self.writer: Any = None
        self._channels: dict[tuple[str, str], Any] = {}
        self.logged = 0
        if save is not None:
            import os

            if os.path.lexists(save):
                raise FileExistsError(f"{save} exists; remove it or choose another name")
            self.writer = fg.open_mcap(save, context=self.context)
        if serve is not None:
            try:
                self.server = fg.start_server(name=name, host=serve[0], port=serve[1],
                                              context=self.context)
            except BaseException:
                if self.writer is not None:
                    self.writer.close()
                raise

    @property
    def port(self) -> int | None:
        """The port the WebSocket server listens on (``None`` without a server)."""
        return None if self.server is None else int(self.server.port)

    def _channel(self, model: str, what: str) -> Any:
        key = (model, what)
        channel = self._channels.get(key)
        if channel is None:
            channels = self._fg.channels
            cls = channels.SceneUpdateChannel if what == "mixture" else channels.PointCloudChannel
            channel = cls(f"/streamgmm/{model}/{what}", context=self.context)
            self._channels[key] = channel
        return channel

    def scene_update(self, m: Mixture, *, frame: str | None = None) -> Any:
        """The ``foxglove.messages.SceneUpdate`` of one mixture.

        Parameters
        ----------
        m : Mixture
            A 2-D or 3-D mixture.
        frame : str, optional
            Frame id; by default the mixture's ``frame``, else :data:`DEFAULT_FRAME`.

        Returns
        -------
        foxglove.messages.SceneUpdate

        Raises
        ------
        ValueError
            For a dimension other than 2 or 3.
        """
        msg = self._msg
        e = mixture_ellipsoids(m.weights, m.means, m.covariances, m.covariance_type)
        frame_id = frame or m.frame or DEFAULT_FRAME
        ns = stamp_ns(m)
        timestamp = msg.Timestamp(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000)
        label = _label(m)
        centers = e.centers.tolist()
        quats = e.orientations.tolist()
        colors = e.colors.tolist()
        entities = []
        for sigma in SIGMAS:
            sizes = (2.0 * sigma * e.half_axes).tolist()
            fade = 1.0 if sigma == 1.0 else 0.4
            spheres = [
                msg.SpherePrimitive(
                    pose=msg.Pose(position=msg.Vector3(x=c[0], y=c[1], z=c[2]),
                                  orientation=msg.Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])),
                    size=msg.Vector3(x=s[0], y=s[1], z=s[2]),
                    color=msg.Color(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3] * fade),
                )
                for c, q, s, rgba in zip(centers, quats, sizes, colors)
            ]
            texts = []
            if sigma == 1.0:
                where = e.centers.mean(axis=0)
                texts.append(msg.TextPrimitive(
                    pose=msg.Pose(position=msg.Vector3(x=float(where[0]), y=float(where[1]),
                                                       z=float(where[2])),
                                  orientation=msg.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
                    billboard=True, font_size=14.0, scale_invariant=True,
                    color=msg.Color(r=1.0, g=1.0, b=1.0, a=1.0),
                    text=" ".join(f"{k}={v}" for k, v in label[:-1]),  # not the weights
                ))
            entities.append(msg.SceneEntity(
                timestamp=timestamp, frame_id=frame_id, id=f"{m.model}/sigma{int(sigma)}",
                metadata=[msg.KeyValuePair(key=k, value=v)
                          for k, v in [*label, ("sigma", f"{sigma:g}")]],
                spheres=spheres, texts=texts,
            ))
        return msg.SceneUpdate(entities=entities)

    def point_cloud(self, points: np.ndarray, *, frame: str, ns: int) -> Any:
        """A ``foxglove.messages.PointCloud`` of 2-D or 3-D points (``z = 0`` for 2-D)."""
        msg = self._msg
        pts = np.asarray(points, dtype=np.float32)
        xyz = np.zeros((len(pts), 3), dtype="<f4")
        xyz[:, :min(3, pts.shape[1])] = pts[:, :3]
        f32 = msg.PackedElementFieldNumericType.Float32
        return msg.PointCloud(
            timestamp=msg.Timestamp(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000),
            frame_id=frame,
            pose=msg.Pose(position=msg.Vector3(x=0.0, y=0.0, z=0.0),
                          orientation=msg.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
            point_stride=12,
            fields=[msg.PackedElementField(name=n, offset=4 * i, type=f32)
                    for i, n in enumerate("xyz")],
            data=xyz.tobytes(),
        )

    def log_mixture(self, m: Mixture) -> None:
        """Send (and record) one mixture; with a ``sample``, its points too.

        Raises
        ------
        ValueError
            For a dimension other than 2 or 3.
        """
        update = self.scene_update(m)
        ns = stamp_ns(m)
        self._channel(m.model, "mixture").log(update, log_time=ns)
        sample = m.sample
        if sample is not None:
            cloud = self.point_cloud(sample, frame=m.frame or DEFAULT_FRAME, ns=ns)
            self._channel(m.model, "points").log(cloud, log_time=ns)
        self.logged += 1

    def close(self) -> None:
        """Finish the MCAP file (complete after this) and stop the server."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.server is not None:
            self.server.stop()
            self.server = None
