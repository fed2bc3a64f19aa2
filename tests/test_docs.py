"""docs/protocol.md names every control op and every configuration key the code knows.

(The per-model status keys are checked in tests/daemon/test_parity.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamgmm import codec
from streamgmm.daemon import config

PROTOCOL = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def _section(title: str) -> str:
    """The text of the ``## ...`` section whose heading contains ``title``."""
    match = re.search(rf"^## [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^## |\Z)", PROTOCOL,
                      re.S | re.M)
    assert match, f"docs/protocol.md has no section {title!r}"
    return match.group(1)


def _table_row(text: str, key: str) -> str:
    """The table row of ``text`` whose first cell is `` `key` ``."""
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
    return row


@pytest.mark.parametrize("op", codec.CONTROL_OPS)
def test_every_control_op_is_documented(op: str) -> None:
    control = _section("Control")
    assert f'`{{"op": "{op}"' in control, f"no request row for op {op!r} in section 3"


# (table in streamgmm/daemon/config.py, how docs/protocol.md names its keys)
KEY_TABLES = [
    ("_SERVICE_FIELDS", "`service.{}`"),
    ("_MODEL_FIELDS", "`model.{}`"),
]


@pytest.mark.parametrize("table, form", KEY_TABLES)
def test_every_config_key_is_documented(table: str, form: str) -> None:
    text = _section("configuration")
    keys = list(getattr(config, table))
    assert keys
    missing = [key for key in keys if form.format(key) not in text]
    assert not missing, f"docs/protocol.md section 4 does not name {missing}"


@pytest.mark.parametrize("table, row", [("_SOCKET_FIELDS", "[service.sockets]"),
                                        ("_CURVE_FIELDS", "[service.curve]")])
def test_every_socket_and_curve_key_is_documented(table: str, row: str) -> None:
    line = _table_row(_section("configuration"), row)
    keys = list(getattr(config, table))
    assert keys
    missing = [key for key in keys if f"`{key}`" not in line]
    assert not missing, f"the {row} row of docs/protocol.md does not name {missing}"


def test_every_model_key_synonym_is_documented() -> None:
    text = _section("configuration")
    for alias, key in config.MODEL_KEY_SYNONYMS.items():
        assert f"`{alias}`" in _table_row(text, f"model.{key}"), alias


def test_every_removed_model_key_is_documented() -> None:
    text = _section("configuration")
    missing = [key for key in config.REMOVED_MODEL_KEYS if f"`{key}`" not in text]
    assert not missing
