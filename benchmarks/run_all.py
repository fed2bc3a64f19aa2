"""Run every benchmark module ``benchmarks/bench_*.py`` in turn (``make bench``).

    .venv/bin/python benchmarks/run_all.py            # full sizes (over 10 minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # smaller sizes (a few minutes)
    .venv/bin/python benchmarks/run_all.py --only core

Each module defines ``main(quick: bool = False)``; modules are found by glob, so a new
``bench_NAME.py`` is picked up without touching this file. A module that raises is reported
and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import header, load_line  # noqa: E402


def discover() -> dict[str, Path]:
    """``{short name: path}`` of every ``bench_*.py`` next to this file, sorted by name."""
    return {p.stem[len("bench_"):]: p for p in sorted(HERE.glob("bench_*.py"))}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def call_main(module, quick: bool):
    main = getattr(module, "main", None)
    if main is None:
        raise AttributeError(f"{module.__name__} has no main()")
    params = inspect.signature(main).parameters
    if "quick" in params:
        return main(quick=quick)
    if "argv" in params:
        return main(argv=["--quick"] if quick else [])
    return main()


def main(argv: list[str] | None = None) -> int:
    found = discover()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, for a check in about a minute")
    parser.add_argument("--only", action="append", metavar="NAME", default=None,
                        help="run only this module (e.g. 'core' or 'bench_core'); repeatable. "
                        f"Found: {', '.join(found) or 'none'}")
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name, path in found.items():
            print(f"{name:12s} {path.relative_to(HERE.parent)}")
        return 0

    selected = list(found)
    if args.only:
        wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.only]
        unknown = [n for n in wanted if n not in found]
        if unknown:
            parser.error(f"no benchmark module named {', '.join(unknown)}; "
                         f"found: {', '.join(found) or 'none'}")
        selected = [n for n in found if n in wanted]

    mode = "quick sizes (--quick)" if args.quick else "full sizes"
    print(header(f"streamgmm benchmarks: {', '.join(selected) or 'none'} ({mode})"))
    failed = []
    started = time.perf_counter()
    for name in selected:
        t0 = time.perf_counter()
        print(f"\n##### bench_{name} #####", flush=True)
        try:
            rc = call_main(load(name, found[name]), args.quick)
        except Exception:
            traceback.print_exc(file=sys.stdout)
            rc = 1
        if rc not in (None, 0):
            failed.append(name)
        print(f"\n##### bench_{name}: {time.perf_counter() - t0:.1f} s"
              f"{' (FAILED)' if name in failed else ''} #####", flush=True)
    print(f"\nload avg at the end: {load_line()}")
    print(f"all benchmarks: {time.perf_counter() - started:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
