"""Fuzzing the Hermes ``state.db`` import (`metis ingest hermes-import`).

A real SQLite file in Hermes' schema gets hostile values in any column
(SQLite stores whatever it is given: text in INTEGER columns, negative and
fractional numbers, blobs, NULLs). The import either makes records with
counts and costs the ledger can hold, or stops with one `MetisError` naming
the session and column; the same for a file that is not a database at all.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis.errors import MetisError
from metis.ingest.hermes_import import MAX_TOKENS, read_state_db, to_records
from tests.conftest import BACKEND
from tests.fuzz.settings import fuzz_settings

# No Metis database is involved: run once, in the SQLite pass of the suite.
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="database-free; runs on SQLite")

SCHEMA = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, source TEXT, model TEXT,
  started_at REAL, ended_at REAL, billing_provider TEXT, billing_base_url TEXT);
CREATE TABLE session_model_usage (
  session_id TEXT, model TEXT, billing_provider TEXT, billing_base_url TEXT,
  billing_mode TEXT, task TEXT, api_call_count INTEGER, input_tokens INTEGER,
  output_tokens INTEGER, cache_read_tokens INTEGER, cache_write_tokens INTEGER,
  reasoning_tokens INTEGER, estimated_cost_usd REAL, actual_cost_usd REAL,
  cost_status TEXT, cost_source TEXT, first_seen REAL, last_seen REAL);
"""
USAGE_COLS = [
    "session_id", "model", "billing_provider", "billing_base_url", "billing_mode", "task",
    "api_call_count", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "estimated_cost_usd", "actual_cost_usd",
    "cost_status", "cost_source", "first_seen", "last_seen",
]  # fmt: skip
GOOD = {
    "session_id": "s1", "model": "gpt-4o-mini", "billing_provider": "custom",
    "billing_base_url": "http://127.0.0.1:9/v1", "billing_mode": "", "task": "",
    "api_call_count": 3, "input_tokens": 1000, "output_tokens": 50, "cache_read_tokens": 200,
    "cache_write_tokens": 0, "reasoning_tokens": 0, "estimated_cost_usd": 0.0,
    "actual_cost_usd": 0.01, "cost_status": None, "cost_source": None,
    "first_seen": 1793000010.0, "last_seen": 1793000500.0,
}  # fmt: skip

# What a SQLite column can hold, hostile: numbers outside int64 go in as text.
sqlite_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from([-1, 0, 10**15, 10**15 + 1, 2**63 - 1, 1.5, -0.5, 1e300, float("inf")]),
    st.text(max_size=30),
    st.sampled_from(["10", "1e3", "NaN", "-5", str(10**30), "", "１２"]),
    st.binary(max_size=20),
)


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute(
        "INSERT INTO sessions VALUES ('s1', 'cli', 'gpt-4o-mini', 1793000000, 1793000600, "
        "'custom', 'http://127.0.0.1:9/v1')"
    )
    for r in rows:
        con.execute(
            f"INSERT INTO session_model_usage VALUES ({', '.join('?' * len(USAGE_COLS))})",
            [r[c] for c in USAGE_COLS],
        )
    con.commit()
    con.close()


def _import(path: Path) -> Any:
    try:
        return to_records(read_state_db(path), "ws_1")
    except MetisError as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 500
        return None


@st.composite
def usage_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = dict(GOOD)
    for col in draw(st.lists(st.sampled_from(USAGE_COLS), min_size=1, max_size=4, unique=True)):
        row[col] = draw(sqlite_values)
    return row


@given(st.lists(usage_rows(), min_size=1, max_size=3))
@fuzz_settings(80)
def test_hostile_state_db_rows(rows: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.db"
        _write(path, rows)
        records = _import(path)
    for rec in records or []:
        for f in ("input_tokens", "output_tokens", "cached_input_tokens", "request_count"):
            v = getattr(rec, f)
            assert type(v) is int and 0 <= v <= 3 * MAX_TOKENS, (f, v)
        assert 0 <= rec.cost_nanousd <= 10**18
        assert rec.cached_input_tokens + rec.cache_creation_input_tokens <= rec.input_tokens
        assert rec.reasoning_tokens <= rec.output_tokens
        assert 2000 <= rec.window_start.year < 2100 and rec.window_end > rec.window_start


@given(st.binary(max_size=2000))
@fuzz_settings(60)
def test_a_file_that_is_not_a_state_db(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.db"
        path.write_bytes(data)
        assert _import(path) in (None, [])


def test_the_good_row_imports() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.db"
        _write(path, [GOOD])
        (rec,) = to_records(read_state_db(path), "ws_1")
    assert rec.input_tokens == 1200 and rec.request_count == 3


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("input_tokens", -5, "input_tokens is -5, not a token count"),
        ("output_tokens", 2.5, "output_tokens is 2.5"),
        ("api_call_count", "many", "api_call_count is 'many'"),
        ("input_tokens", str(10**30), "not a token count"),
        ("model", None, "model is None"),
    ],
)
def test_garbage_columns_stop_the_import_naming_them(
    column: str, value: Any, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    _write(path, [{**GOOD, column: value}])
    with pytest.raises(MetisError, match=message):
        to_records(read_state_db(path), "ws_1")


def test_unpriced_model_takes_hermes_cost_only_when_it_is_an_amount(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _write(path, [{**GOOD, "model": "my-local-llm", "actual_cost_usd": "NaN"}])
    with pytest.raises(MetisError, match="actual_cost_usd"):
        to_records(read_state_db(path), "ws_1")
