"""The usage export's lines built by the database equal the Python encoder's, byte for byte."""

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from metis.analytics import export_lines, exports
from metis.analytics.params import Filters
from metis.analytics.views import query_window
from tests.analytics import seed
from tests.analytics.seed import T0, rec
from tests.analytics.test_api import WIN, _identity
from tests.analytics.test_exports import _GW_URL, _overlapping_ledger, _per_cell_export

# Pieces every check of `export_lines.PlainCheck` must catch, and harmless look-alikes.
_HOSTILE = ['"', ",", "\\", "\n", "\r", "\t", "\x00", "\x7f", "é", "模", "\u2028", ":null",
            '":"', "=1", "+1", "-1", "@a", " -x", "null", "a,b", '{"k":1}', "'", ";", "%s",
            "%d", "%%", "{", "}", "[", "]", ":", " "]  # fmt: skip
_PLAIN = ["gpt-4o", "claude-3-5", "x_y", "A.B", "v1", "ok", "9", ""]


_TEXT_FIELDS = ("model", "key_id", "user_id", "team_id", "status", "pricing_version",
                "correlation_id", "request_id")  # fmt: skip


def _hostile_text(rnd: random.Random, odd: list[str]) -> str:
    parts = [rnd.choice(_PLAIN + odd) for _ in range(rnd.randrange(1, 4))]
    return "".join(parts) if any(p in odd for p in parts) else rnd.choice(odd)


def _hostile_ledger(engine: Engine) -> int:
    """300 rows; about a third have one text cell holding odd characters."""
    rnd = random.Random(2312)
    # PostgreSQL text cannot hold NUL (the ledger's writers refuse it); SQLite's can.
    odd = [h for h in _HOSTILE if h != "\x00" or engine.dialect.name == "sqlite"]
    _identity(engine)
    recs = []
    for i in range(300):
        at = T0 + timedelta(minutes=7 * i, microseconds=rnd.choice([0, 1, 999_999, 120_000]))
        text: dict[str, Any] = {
            f: None if f != "model" and rnd.random() < 0.2 else rnd.choice(_PLAIN) or "m"
            for f in _TEXT_FIELDS
        }
        if rnd.random() < 0.35:
            text[rnd.choice(_TEXT_FIELDS)] = _hostile_text(rnd, odd)
        recs.append(
            rec(
                at=at,
                cost=rnd.choice(
                    [0, 1, 999_999_999, 10**9, 123_456_789_012_345, 10**17, -1, -(10**9) - 7]
                ),
                source=rnd.choice(["gateway", "gateway", "hermes_plugin"]),
                latency_ms=rnd.choice([None, 0, 1, 2**31 - 1]),
                input_tokens=rnd.choice([0, 7, 10**15]),
                base_url=rnd.choice([None, _GW_URL + "/v1"]),
                **text,
            )
        )
    with engine.begin() as c:
        seed.write(c, recs)
    return len(recs)


def _export(engine: Engine, view: str, fmt: str) -> bytes:
    window = query_window(WIN["from"], WIN["to"], view)  # type: ignore[arg-type]
    return b"".join(exports.usage_export(engine, window, Filters(), fmt, (), view))  # type: ignore[arg-type]


def _count_slow(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each batch read again by id (the Python encoder's rows)."""
    slow: list[int] = []
    real = exports._rows_by_id

    def counting(conn: Any, c: Any, ids: Any, counted: Any) -> Any:
        slow.append(len(ids))
        return real(conn, c, ids, counted)

    monkeypatch.setattr(exports, "_rows_by_id", counting)
    return slow


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("view", ["reconciled", "raw"])
def test_hostile_text_takes_the_encoder_and_the_bytes_agree(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, view: str, fmt: str
) -> None:
    """A row with quotes, separators, backslashes, control or non-ASCII characters, a
    formula start, a NUL (SQLite) or a negative cost is written from its values; every
    other row is the database's line; the bytes equal the per-cell reference."""
    monkeypatch.setenv("METIS_GATEWAY_URLS", _GW_URL)
    monkeypatch.setattr(exports, "BATCH", 16)  # plain batches, mixed ones
    n = _hostile_ledger(engine)
    slow = _count_slow(monkeypatch)
    got = _export(engine, view, fmt)
    want = _per_cell_export(engine, view, fmt, query_window(WIN["from"], WIN["to"], view))  # type: ignore[arg-type]
    assert got.decode() == want.decode()
    # Both paths ran: most rows are the database's lines, the hostile ones Python's.
    assert 0 < sum(slow) < n // 2, slow


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_overlapping_ledger_agrees_in_every_batch_size(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Batch edges fall anywhere: a batch of one, a prime, one batch for everything."""
    monkeypatch.setenv("METIS_GATEWAY_URLS", _GW_URL)
    _overlapping_ledger(engine)
    window = query_window(WIN["from"], WIN["to"], "reconciled")
    want = _per_cell_export(engine, "reconciled", fmt, window)
    for size in (1, 13, 10_000):
        monkeypatch.setattr(exports, "BATCH", size)
        assert _export(engine, "reconciled", fmt) == want, size


@pytest.mark.parametrize("rows", [0, 1, 4, 5, 6, 11])
def test_row_counts_at_the_batch_edges(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """No rows, one, a batch but one, a batch, a batch and one, two and one: all there."""
    monkeypatch.setattr(exports, "BATCH", 5)
    _identity(engine)
    with engine.begin() as c:
        seed.write(c, [rec(at=T0 + timedelta(minutes=i), cost=i, key_id="key_a")
                       for i in range(rows)])  # fmt: skip
    for fmt in ("csv", "jsonl"):
        window = query_window(WIN["from"], WIN["to"], "raw")
        got = _export(engine, "raw", fmt)
        assert got == _per_cell_export(engine, "raw", fmt, window)
        assert got.count(b"\n") == rows + (fmt == "csv")


def test_plain_rows_are_not_read_again(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of ordinary text are the database's lines: no row is read a second time."""
    _identity(engine)
    with engine.begin() as c:
        seed.write(c, [rec(at=T0 + timedelta(seconds=i, microseconds=i), cost=i * 10**6 + 5,
                           key_id="key_a", user_id="usr_a", team_id="team_e",
                           correlation_id=f"c-{i}", latency_ms=None if i % 3 else i)
                       for i in range(40)])  # fmt: skip
    slow = _count_slow(monkeypatch)
    for fmt in ("csv", "jsonl"):
        for view in ("raw", "reconciled"):
            window = query_window(WIN["from"], WIN["to"], view)  # type: ignore[arg-type]
            assert _export(engine, view, fmt) == _per_cell_export(engine, view, fmt, window)
    assert slow == []


def test_a_time_stored_in_another_form_takes_the_encoder(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite keeps times as text; a row holding a form Metis does not write (an older
    writer's ``YYYY-MM-DD HH:MM:SS``) is encoded from its parsed values."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL stores typed times")
    _identity(engine)
    with engine.begin() as c:
        seed.write(c, [rec(at=T0 + timedelta(hours=i), cost=1, key_id="key_a") for i in range(3)])
        c.execute(text("UPDATE usage_records SET window_end = substr(window_end, 1, 19)"))
    slow = _count_slow(monkeypatch)
    for fmt in ("csv", "jsonl"):
        window = query_window(WIN["from"], WIN["to"], "raw")
        got = _export(engine, "raw", fmt)
        assert got == _per_cell_export(engine, "raw", fmt, window)
        assert b"T01:00:01Z" in got
    assert sum(slow) == 6


def test_every_exported_column_has_a_sql_text() -> None:
    kinds = (export_lines.DATE_COLUMNS + export_lines.TIME_COLUMNS + export_lines.TEXT_COLUMNS
             + export_lines.INT_COLUMNS + (export_lines.MONEY_COLUMN,))  # fmt: skip
    assert sorted(kinds) == sorted(exports.USAGE_COLUMNS)
    assert len(set(kinds)) == len(kinds)


def test_postgresql_session_defaults_do_not_change_the_bytes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lines are formatted in UTC whatever time zone a new PostgreSQL session starts
    with (`export_lines.PG_SESSION`). (psycopg reads times only in ISO DateStyle, so a
    server must keep that one.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps times as UTC text")
    monkeypatch.setenv("METIS_GATEWAY_URLS", _GW_URL)
    _overlapping_ledger(engine)
    db = engine.url.database
    settings = {"timezone": "'Pacific/Chatham'"}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for k, v in settings.items():
            c.exec_driver_sql(f'ALTER DATABASE "{db}" SET {k} = {v}')
    engine.dispose()  # new sessions start with those settings
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SHOW timezone").scalar() == "Pacific/Chatham"
        for fmt in ("csv", "jsonl"):
            for view in ("raw", "reconciled"):
                window = query_window(WIN["from"], WIN["to"], view)  # type: ignore[arg-type]
                assert _export(engine, view, fmt) == _per_cell_export(engine, view, fmt, window)
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            for k in settings:
                c.exec_driver_sql(f'ALTER DATABASE "{db}" RESET {k}')
        engine.dispose()
