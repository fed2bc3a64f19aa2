"""Draw the last mixture of a ``watch --foxglove-save`` MCAP with streamgmm's own plotting.

Run: ``python examples/plot_foxglove_mcap.py [OUT.png] [IN.mcap]`` (needs the ``foxglove`` and
``plot`` extras, and ``protobuf`` to decode the messages, which the ``test`` extra installs).
Without IN, a recording is made first (``demo-out/model.mcap``): a mixture fitted online to a
LiDAR-like sweep, logged update by update, with a sample of the points, exactly as
``streamgmm watch --foxglove-save`` logs a daemon's updates. The script then reads the MCAP
back with ``mcap``'s reader, rebuilds each component's covariance from its ellipsoid's pose
and size (``foxglove.SceneUpdate``, entity ``NAME/sigma1``) and its weight from the entity's
metadata, and draws them over the recorded points. It is a picture of what the MCAP holds,
drawn by ``streamgmm.plotting``: not a screenshot of Foxglove. ``make pictures`` writes
``docs/img/foxglove-mcap.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from streamgmm import GaussianMixture, codec
from streamgmm.client import Mixture
from streamgmm.foxglove_view import FoxgloveView, covariance_from_pose
from streamgmm.synthetic import lidar_scene


def record(path: Path) -> None:
    """An online fit of a LiDAR-like sweep, each step logged as ``watch`` would log it."""
    X = lidar_scene(40_000, seed=3)
    gm = GaussianMixture(n_components=16, random_state=0)
    view = FoxgloveView(save=str(path))
    rng = np.random.default_rng(0)
    for seq, start in enumerate(range(0, len(X), 2048), start=1):
        batch = X[start:start + 2048]
        gm.partial_fit(batch)
        sample = batch[rng.choice(len(batch), size=min(len(batch), 512), replace=False)]
        view.log_mixture(Mixture(
            model="lidar", seq=seq, stamp=time.time(), n_seen=int(gm.n_seen_), kind="online",
            covariance_type="full", weights=gm.weights_, means=gm.means_,
            covariances=gm.covariances_, avg_log_likelihood=float("nan"),
            last_stamp=1.75e9 + 0.1 * seq,
            extra={"frame": "lidar", "sample": codec.encode_array(sample.astype(np.float32))}))
    view.close()


def read_back(path: Path) -> tuple[GaussianMixture, np.ndarray, str]:
    """The last SceneUpdate as a GaussianMixture, every recorded point, and a caption."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from mcap.reader import make_reader

    def message_class(schema):
        pool = descriptor_pool.DescriptorPool()
        files = list(descriptor_pb2.FileDescriptorSet.FromString(schema.data).file)
        done: set[str] = set()
        while files:  # each file after its dependencies
            for f in [f for f in files if set(f.dependency) <= done]:
                pool.Add(f)
                done.add(f.name)
                files.remove(f)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))

    classes: dict[int, object] = {}
    last = None
    clouds = []
    with open(path, "rb") as f:
        for schema, _channel, message in make_reader(f).iter_messages(log_time_order=True):
            if schema.id not in classes:
                classes[schema.id] = message_class(schema)
            decoded = classes[schema.id].FromString(message.data)
            if schema.name == "foxglove.SceneUpdate":
                last = decoded
            elif schema.name == "foxglove.PointCloud":
                clouds.append(np.frombuffer(decoded.data, "<f4").reshape(-1, 3))
    entity = next(e for e in last.entities if e.id.endswith("/sigma1"))
    meta = {kv.key: kv.value for kv in entity.metadata}
    means, covs = [], []
    for s in entity.spheres:
        p, q, z = s.pose.position, s.pose.orientation, s.size
        means.append([p.x, p.y, p.z])
        covs.append(covariance_from_pose([q.x, q.y, q.z, q.w], [z.x, z.y, z.z], sigma=1.0))
    weights = np.array([float(w) for w in meta["weights"].split(",")])
    model = GaussianMixture.from_parameters(weights / weights.sum(), np.array(means),
                                            np.array(covs), "full")
    caption = (f"{path.name}: model '{meta['model']}' seq {meta['seq']}, n_seen "
               f"{meta['n_seen']}, frame '{entity.frame_id}' - ellipsoids read back from the "
               "MCAP, drawn by streamgmm.plotting (not a Foxglove screenshot)")
    return model, np.concatenate(clouds), caption


def main(out: str = "demo-out/foxglove-mcap.png", mcap: str | None = None) -> None:
    if mcap is None:
        path = Path("demo-out/model.mcap")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        record(path)
    else:
        path = Path(mcap)
    model, points, caption = read_back(path)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamgmm.plotting import mixture_figure

    fig = mixture_figure(model, points, title=caption, width=9.0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {out} from {path}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
