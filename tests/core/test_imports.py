"""The library core and its tests need no ZeroMQ: ``pytest tests/core`` imports no zmq
(tests/conftest.py imports it in the fixtures that use it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
import pytest
rc = pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", "tests/core"])
import streamgmm, streamgmm.core.online, streamgmm.core.blocks, streamgmm.core.moves
import streamgmm.core.refit, streamgmm.estimator
print("exit", int(rc), "zmq", "zmq" in sys.modules)
"""


def test_collecting_the_core_tests_imports_no_zmq() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "exit 0 zmq False", out.stdout[-2000:]
