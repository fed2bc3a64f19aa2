"""Shared helpers of the benchmark suite: one BLAS thread, a header, timers, RSS and tables.

Every benchmark module imports this file (``from _common import ...``); ``run_all.py`` and
running a module directly both put ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- threads


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Limit BLAS and OpenMP pools to one thread, so that figures compare like with like."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


# --------------------------------------------------------------------------- header


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", "?"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def source_line() -> str:
    """Git commit of the checkout and the package files that differ from it (read-only git)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        out = subprocess.run(["git", "--no-optional-locks", *args], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.rstrip("\n")

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = [line[3:] for line in git("status", "--porcelain", "--", "streamgmm")
                   .splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    if not changed:
        return f"git {commit}, streamgmm/ clean"
    return f"git {commit} + uncommitted: {', '.join(changed)}"


def load_line() -> str:
    """Load averages: other processes on the machine disturb the timings."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min) on {_usable_cpus()} cpus"


def blas_lines() -> list[str]:
    """One line per thread pool found by ``threadpoolctl.threadpool_info()``."""
    from threadpoolctl import threadpool_info

    lines = []
    for info in threadpool_info():
        parts = [
            f"{info.get('user_api')}: {info.get('internal_api')} {info.get('version') or '?'}",
            f"arch {info.get('architecture', '-')}",
            f"threading {info.get('threading_layer', '-')}",
            f"threads {info.get('num_threads')}",
            os.path.basename(str(info.get("filepath", ""))),
        ]
        lines.append(", ".join(parts))
    return lines


def header(title: str) -> str:
    """Text recording what the figures were measured on."""
    lines = [
        "=" * 78,
        title,
        "=" * 78,
        f"date        {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"python      {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}",
        f"cpu         {_cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={_usable_cpus()}",
        f"versions    streamgmm {_version('streamgmm')}, numpy {np.__version__}, "
        f"scipy {_version('scipy')}, scikit-learn {_version('sklearn')}, "
        f"threadpoolctl {_version('threadpoolctl')}",
        f"source      {source_line()}",
        f"load avg    {load_line()}",
    ]
    blas_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_",
                                                                            "MKL_"))}
    if blas_env:
        lines.append("blas env    " + " ".join(f"{k}={v}" for k, v in blas_env.items()))
    for i, line in enumerate(blas_lines()):
        lines.append(("pools       " if i == 0 else "            ") + line)
    lines.append("timing      one BLAS/OpenMP thread (threadpool_limits(1)), time.perf_counter, "
                 "best of N")
    lines.append("=" * 78)
    return "\n".join(lines)


# --------------------------------------------------------------------------- measuring


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls of ``fn`` (seconds) and the last result."""
    best = float("inf")
    result = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage`` ``ru_maxrss``).

    On Linux ``ru_maxrss`` survives ``execve``: a process started by a large parent reports
    at least the parent's RSS at the fork. Use :func:`own_peak_rss_mib` in such children.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def own_peak_rss_mib() -> float:
    """Peak RSS of this process's own address space (Linux ``VmHWM``), in MiB.

    Unlike ``ru_maxrss`` it starts from zero at ``execve``. Falls back to
    :func:`peak_rss_mib` where ``/proc`` is not available.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mib()


# --------------------------------------------------------------------------- data


def blob_parameters(dim: int = 3, n_clusters: int = 16, seed: int = 0):
    """Centres and per-axis scales of a fixed mixture of Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 5.0, (n_clusters, dim))
    scales = rng.uniform(0.3, 1.5, (n_clusters, dim))
    return centers, scales


def gaussian_blobs(n: int, dim: int = 3, n_clusters: int = 16, seed: int = 0,
                   params_seed: int = 0) -> np.ndarray:
    """``n`` i.i.d. points (float64) from the blob mixture of :func:`blob_parameters`."""
    centers, scales = blob_parameters(dim, n_clusters, params_seed)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_clusters, n)
    X = rng.standard_normal((n, dim))
    X *= scales[labels]
    X += centers[labels]
    return X


def blob_batches(n: int, batch: int, dim: int = 3, n_clusters: int = 16, seed: int = 0,
                 params_seed: int = 0) -> Iterator[np.ndarray]:
    """The same blob mixture generated on the fly, ``batch`` rows at a time."""
    centers, scales = blob_parameters(dim, n_clusters, params_seed)
    rng = np.random.default_rng(seed)
    sent = 0
    while sent < n:
        m = min(batch, n - sent)
        labels = rng.integers(0, n_clusters, m)
        X = rng.standard_normal((m, dim))
        X *= scales[labels]
        X += centers[labels]
        yield X
        sent += m


# --------------------------------------------------------------------------- output


def verdict(ok: bool | None) -> str:
    """PASS / MISS against a goal, ``info`` for rows without one."""
    if ok is None:
        return "info"
    return "PASS" if ok else "MISS"


def fmt_ratio(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.2f}x"


def fmt_seconds(s: float) -> str:
    if not np.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_rate(points_per_second: float) -> str:
    return f"{points_per_second / 1e6:.2f} M/s"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
                notes: Sequence[str] = ()) -> None:
    """A plain-text table: numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def numeric(text: str) -> bool:
        t = text.replace(" ", "").rstrip("xsuMmB/%").lstrip("+-")
        try:
            float(t)
        except ValueError:
            return False
        return True

    def line(row: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(row):
            out.append(cell.rjust(widths[i]) if numeric(cell) else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "-" * max(len(title), sum(widths) + 2 * (len(widths) - 1))
    print()
    print(title)
    print(rule)
    print(line(list(headers)))
    print(rule)
    for row in cells:
        print(line(row))
    print(rule)
    for note in notes:
        print(note)
    sys.stdout.flush()


def figures_cli(argv: Sequence[str] | None, title: str, main: Callable[..., int],
                n_figures: int) -> int:
    """The command line every ``bench_*.py`` module shares: ``--quick`` and ``--figures``.

    Prints the benchmark header (with ``title``) and calls ``main(quick=..., figures=...)``.
    """
    import argparse

    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--figures", default="",
                        help=f"comma-separated figure numbers (1-{n_figures})")
    args = parser.parse_args(argv)
    figures = [int(f) for f in args.figures.split(",") if f.strip()] or None
    mode = "quick sizes (--quick)" if args.quick else "full sizes"
    print(header(f"{title} ({mode})"))
    return main(quick=args.quick, figures=figures)
