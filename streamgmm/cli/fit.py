"""``streamgmm fit``: batch EM on files offline, here or on a Dask cluster."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamgmm.cli.common import (
    CliError,
    ReadCounts,
    check_output_path,
    field_list,
    file_formats,
    iter_file_clouds,
    n_components,
    positive_int,
    print_components,
    row_filter,
    row_filter_options,
)
from streamgmm.core.params import COVARIANCE_TYPES

_SHARD_SUFFIXES = (".npy", ".parquet")


def _is_shard_input(text: str) -> bool:
    """A glob, a directory that is not a rosbag2 bag, or a .parquet file: Dask shards."""
    from streamgmm.formats import is_rosbag2_directory

    if os.path.isdir(text):
        return not is_rosbag2_directory(text)
    return any(c in text for c in "*?[") or text.endswith(".parquet")


def _all_shards(inputs: Sequence[str]) -> bool:
    """Do the inputs name only .npy/.parquet shards (globs, directories of them)?"""
    import glob

    from streamgmm.formats import is_rosbag2_directory

    for item in inputs:
        if os.path.isdir(item):
            if is_rosbag2_directory(item):
                return False
            continue
        names = glob.glob(item) if any(c in item for c in "*?[") else [item]
        if any(not n.endswith(_SHARD_SUFFIXES) for n in names):
            return False
    return True


def _expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files named by paths and globs; a rosbag2 directory stays one input."""
    import glob

    out: list[str] = []
    for item in inputs:
        if any(c in item for c in "*?[") and not os.path.exists(item):
            found = sorted(glob.glob(item))
            if not found:
                raise CliError(f"no file matches {item!r}")
            out.extend(found)
        else:
            out.append(item)
    return out


def _read_fit_inputs(args: argparse.Namespace) -> tuple[list[np.ndarray], ReadCounts]:
    """Every input file's points (a bag: one array per message), filtered and counted."""
    from streamgmm.formats import is_rosbag2_directory

    rule = row_filter(args)
    counts = ReadCounts()
    parts: list[np.ndarray] = []
    files = _expand_inputs(args.file)
    for path in files:
        if os.path.isdir(path) and not is_rosbag2_directory(path):
            raise CliError(f"{path}: a directory of shards cannot be mixed with other files "
                           "(give its .npy/.parquet files, or fit it alone)")
        for cloud in iter_file_clouds(path, topic=args.ros_topic, fields=args.fields,
                                      rule=rule, counts=counts, command="fit"):
            if len(cloud.points):
                parts.append(cloud.points)
    if not parts:
        dropped = counts.dropped_clause()
        raise CliError(f"no points to fit in {' '.join(files)}"
                       + (f" ({dropped})" if dropped else ""))
    if len({p.shape[1] for p in parts}) > 1:
        dims = sorted({p.shape[1] for p in parts})
        raise CliError(f"the inputs disagree on the dimension: {dims} (choose the same "
                       "--fields)")
    for warning in counts.damaged:
        print(f"streamgmm fit: warning: {warning}", file=sys.stderr)
    dropped = counts.dropped_clause()
    if dropped:
        print(f"streamgmm fit: {dropped}", file=sys.stderr)
    return parts, counts


def _save_mixture(path: str, gm: Any, covariance_type: str) -> None:
    from streamgmm.io import save_mixture

    try:
        # n_points: the points behind the fit, the prior weight `streamgmm load` sends.
        save_mixture(path, weights=gm.weights_, means=gm.means_, covariances=gm.covariances_,
                     covariance_type=covariance_type, n_points=int(getattr(gm, "n_seen_", 0)))
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}")


def _fit_options_used(args: argparse.Namespace) -> bool:
    return (args.ros_topic is not None or args.fields is not None or args.keep_zeros
            or args.min_range is not None or args.max_range is not None)


def _cmd_fit_distributed(args: argparse.Namespace) -> int:
    """``fit`` on a Dask cluster (--scheduler) or a local one (several shards, --workers):
    ``.npy``/``.parquet`` shards are read by the workers themselves; any other file (a bag, a
    point cloud) is read here, filtered, and its clouds sent to the workers as chunks."""
    from streamgmm import ConvergenceWarning, GaussianMixture

    try:
        from streamgmm import dask_em

        dask_em.require_dask()
        import distributed  # noqa: F401
    except ImportError:
        raise CliError("fitting on a cluster needs dask.distributed: "
                       "pip install 'streamgmm[dask]'") from None

    where = args.scheduler or f"a local cluster of {args.workers or os.cpu_count()} workers"

    def progress(n_iter: int, lower_bound: float, seconds: float) -> None:
        if n_iter == 1:
            print(f"streamgmm fit: EM on {where}", file=sys.stderr)
        print(f"iteration {n_iter}  lower bound {lower_bound:.6f}  {seconds:.2f} s",
              file=sys.stderr, flush=True)

    gm = GaussianMixture(
        n_components=args.components, covariance_type=args.covariance_type,
        max_iter=args.max_iter, n_init=args.n_init, random_state=args.seed,
    )
    shards = _all_shards(args.file)
    if shards and _fit_options_used(args):
        raise CliError("--ros-topic, --fields, --keep-zeros, --min-range and --max-range apply "
                       "to files read here (bags, point clouds, CSV), not to .npy/.parquet "
                       "shards, which the workers read as they are")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if shards:
                info = dask_em.fit_shards(args.file, gm, scheduler=args.scheduler,
                                          n_workers=args.workers, progress=progress)
                what = "shards"
            else:
                from streamgmm import dask_clouds

                parts, _ = _read_fit_inputs(args)
                info = dask_clouds.fit_arrays(parts, gm, scheduler=args.scheduler,
                                              n_workers=args.workers, progress=progress)
                what = "chunks"
    except ConnectionError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(f"cannot fit {' '.join(args.file)}: {exc}") from None
    print(f"fitted {args.components} components ({args.covariance_type}) to "
          f"{info['n_points']} points in {info['n_shards']} {what}, d={gm.n_features_in_}, "
          f"on {info['n_workers']} workers in {info['seconds']:.2f} s")
    print(
        f"converged: {gm.converged_}  iterations: {gm.n_iter_}  "
        f"lower bound: {gm.lower_bound_:.6f} (mean log-likelihood per point)"
    )
    print_components(gm.weights_, gm.means_)
    if args.out:
        _save_mixture(args.out, gm, args.covariance_type)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from streamgmm import ConvergenceWarning, GaussianMixture

    if args.out:
        check_output_path(args.out, "--out")
    # .npy files named one by one are files like any other (read here, filtered, the same
    # fit as one file of their rows); globs, directories of shards and .parquet are Dask's.
    shards = any(_is_shard_input(item) for item in args.file)
    if args.scheduler or args.workers is not None or (shards and _all_shards(args.file)):
        return _cmd_fit_distributed(args)
    parts, _ = _read_fit_inputs(args)
    X = parts[0] if len(parts) == 1 else np.concatenate(parts)
    gm = GaussianMixture(
        n_components=args.components,
        covariance_type=args.covariance_type,
        max_iter=args.max_iter,
        n_init=args.n_init,
        random_state=args.seed,
    )
    try:
        with warnings.catch_warnings():
            # Reported below as "converged: False" instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
    except ValueError as exc:
        raise CliError(f"cannot fit {' '.join(args.file)}: {exc}") from None
    n, d = X.shape
    print(f"fitted {args.components} components ({args.covariance_type}) to {n} points, d={d}")
    print(
        f"converged: {gm.converged_}  iterations: {gm.n_iter_}  "
        f"lower bound: {gm.lower_bound_:.6f} (mean log-likelihood per point)"
    )
    print(f"BIC: {gm.bic(X):.6g}")
    print_components(gm.weights_, gm.means_)
    if args.out:
        _save_mixture(args.out, gm, args.covariance_type)
    return 0



def add_parser(commands: Any) -> None:
    """The ``fit`` subcommand."""
    p = commands.add_parser(
        "fit", help="fit a mixture to a file offline (batch EM)",
        description="Batch EM on the points of a file (any file publish --file reads: "
        + file_formats() + "; of a point cloud or bag, their x,y,z); prints convergence, "
        "BIC, weights and means, "
        "and with --out saves the parameters with numpy.savez. Shards (a glob, a directory, "
        "several files) or --scheduler run EM on Dask workers, with progress on stderr.",
    )
    p.add_argument("file", metavar="FILE", nargs="+",
                   help="points of shape (n, d), see 'publish --help'; or shards for a "
                   "cluster: several files, a glob ('logs/*.npy'), a directory, .parquet")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", default=None,
                   help="run EM on this Dask scheduler's workers (needs streamgmm[dask]); "
                   "several shards without it run on a local cluster")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="workers of the local cluster (default: the machine's cores)")
    p.add_argument("--components", "-k", type=n_components, required=True,
                   help="number of components K")
    p.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full",
                   help="covariance shape (default full)")
    p.add_argument("--max-iter", type=positive_int, default=100,
                   help="EM iterations at most (default 100)")
    p.add_argument("--n-init", type=positive_int, default=1,
                   help="initialisations; the best is kept (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--ros-topic", default=None, metavar="TOPIC",
                   help="topic of a bag, as for publish --file")
    p.add_argument("--fields", type=field_list, default=None, metavar="x,y,z",
                   help="fields to fit, as for publish --file")
    row_filter_options(p)
    p.add_argument("--out", metavar="MODEL.npz", default=None,
                   help="save weights, means, covariances and covariance_type (np.savez)")
    p.set_defaults(func=_cmd_fit)

