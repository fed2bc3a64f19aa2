"""Start-up time of the ``streamgmm`` command (issue 13, item 12): what a newcomer waits for.

    .venv/bin/python benchmarks/bench_startup.py [--quick]

Measures, each in a fresh interpreter, best of N:

- the cumulative import time of ``streamgmm.cli`` as ``python -X importtime`` reports it, and
  of the heaviest modules it pulls in;
- the wall time of ``streamgmm --version``;
- the wall time of ``streamgmm status`` against an endpoint nobody listens on, with
  ``--timeout 0.1`` (so the figure is start-up + 0.1 s of waiting + exit);
- the import time of ``streamgmm.client`` (what ``status``, ``watch`` and ``publish`` load).

Goal: under 0.3 s of import time for ``--version`` and ``status``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import fmt_seconds, header, print_table, verdict  # noqa: E402

GOAL_S = 0.3
STATUS_TIMEOUT_S = 0.1


def import_times(statement: str) -> dict[str, float]:
    """``{module: cumulative seconds}`` from ``python -X importtime -c statement``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                          capture_output=True, text=True, check=True)
    out: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        try:
            out[name.strip()] = int(cumulative.strip()) / 1e6
        except ValueError:  # the header line
            continue
    return out


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - start


def unused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def main(quick: bool = False) -> int:
    repeat = 3 if quick else 7
    cli = [sys.executable, "-m", "streamgmm"]
    endpoint = unused_endpoint()
    cli_imports = [import_times("import streamgmm.cli") for _ in range(repeat)]
    client_imports = [import_times("import streamgmm.cli, streamgmm.client")
                      for _ in range(repeat)]
    cli_s = min(t["streamgmm.cli"] for t in cli_imports)
    client_s = min(t.get("streamgmm.client", 0.0) + t["streamgmm.cli"] for t in client_imports)
    numpy_s = min(t.get("numpy", float("nan")) for t in cli_imports)
    version_s = min(wall([*cli, "--version"]) for _ in range(repeat))
    status_s = min(wall([*cli, "status", "--control", endpoint, "--timeout",
                         str(STATUS_TIMEOUT_S)]) for _ in range(repeat))
    python_s = min(wall([sys.executable, "-c", "pass"]) for _ in range(repeat))
    heavy = sorted({m for t in client_imports for m in t
                    if m.split(".")[0] in ("scipy", "sklearn", "matplotlib")})
    print(header("streamgmm start-up (bench_startup)"))
    print_table(
        f"Start-up of the CLI, fresh interpreter each, best of {repeat}",
        ["what", "time", f"goal < {GOAL_S:g} s"],
        [
            ["import streamgmm.cli (-X importtime, cumulative)", fmt_seconds(cli_s),
             verdict(cli_s < GOAL_S)],
            ["  of which numpy", fmt_seconds(numpy_s), ""],
            ["import streamgmm.cli + streamgmm.client (status, watch, publish)",
             fmt_seconds(client_s), verdict(client_s < GOAL_S)],
            ["streamgmm --version (wall)", fmt_seconds(version_s), ""],
            [f"streamgmm status, nobody listening, --timeout {STATUS_TIMEOUT_S:g} (wall)",
             fmt_seconds(status_s), ""],
            ["python -c pass (wall, the floor)", fmt_seconds(python_s), ""],
        ],
        notes=[f"scipy/sklearn/matplotlib modules imported: {', '.join(heavy) or 'none'}"],
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    sys.exit(main(parser.parse_args().quick))
