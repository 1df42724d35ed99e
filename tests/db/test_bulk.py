"""Compiled tuple inserts: positional order is checked, multi-row VALUES expand."""

import pytest
from sqlalchemy import Engine, select

from metis.db import bulk
from metis.db.tables import config_versions
from metis.timeutil import utcnow


def test_rows_are_inserted_with_column_processors(engine: Engine) -> None:
    cols = ("name", "version", "updated_at")
    c = bulk.compile_insert(config_versions.insert(), config_versions, cols, engine.dialect)
    now = utcnow()
    with engine.begin() as conn:
        bulk.executemany(conn, c, c.process([("a", 1, now), ("b", 2, now)]))
    with engine.connect() as conn:
        rows = conn.execute(select(config_versions).order_by(config_versions.c.name)).all()
    assert [tuple(r) for r in rows] == [("a", 1, now), ("b", 2, now)]


def test_many_sql_repeats_the_values_group(engine: Engine) -> None:
    cols = ("name", "version", "updated_at")
    c = bulk.compile_insert(config_versions.insert(), config_versions, cols, engine.dialect)
    assert c.many_sql(3).count(c.values) == 3
    now = utcnow()
    with engine.begin() as conn:
        params = tuple(x for r in c.process([("a", 1, now), ("b", 2, now)]) for x in r)
        conn.exec_driver_sql(c.many_sql(2), params)
    with engine.connect() as conn:
        assert len(conn.execute(select(config_versions)).all()) == 2


def test_column_order_must_match_the_compiled_statement(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="statement binds"):
        bulk.compile_insert(
            config_versions.insert(),
            config_versions,
            ("version", "name", "updated_at"),
            engine.dialect,
        )


def test_many_inserts_all_rows_in_one_statement(engine: Engine) -> None:
    """VALUES repeated on SQLite, one array per column (unnest) on PostgreSQL."""
    cols = ("name", "version", "updated_at")
    c = bulk.compile_insert(config_versions.insert(), config_versions, cols, engine.dialect)
    now = utcnow()
    rows = c.process([(f"k{i}", i, now) for i in range(300)])
    sql, params = c.many(rows)
    if engine.dialect.name == "postgresql":
        assert "unnest(" in sql and len(params) == 3
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, params)
    with engine.connect() as conn:
        got = conn.execute(select(config_versions).order_by(config_versions.c.version)).all()
    assert [tuple(r) for r in got] == [(f"k{i}", i, now) for i in range(300)]


def test_utc_datetime_on_sqlite_binds_what_the_two_layer_chain_did(engine: Engine) -> None:
    """UTCDateTime's one-step SQLite processor equals the two layers it replaces
    (process_bind_param, then SQLite's DATETIME processor), and reads back the same."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from metis.db.types import UTCDateTime

    dialect = sqlite.dialect()
    typ = UTCDateTime()
    fast = typ.dialect_impl(dialect).bind_processor(dialect)  # what SQLAlchemy looks up
    stored = dialect.type_descriptor(typ.load_dialect_impl(dialect))  # SQLite's DATETIME
    to_text = stored.bind_processor(dialect)
    assert fast is not None and to_text is not None

    def chain(v: datetime | None) -> object:  # the two layers the fast path replaces
        return to_text(typ.process_bind_param(v, dialect))

    plus2 = timezone(timedelta(hours=2))
    values = [
        datetime(2026, 11, 30, 22, 5, 1, 123456, tzinfo=UTC),
        datetime(2026, 11, 30, 22, 5, 1, tzinfo=UTC),  # no microseconds: still .000000
        datetime(2026, 1, 1, 1, 0, 0, 7, tzinfo=plus2),  # crosses the day back to UTC
        datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC),  # year padded to four digits
        None,
    ]
    for v in values:
        assert fast(v) == chain(v), v
    for p in (fast, chain):
        with pytest.raises(ValueError, match="naive"):
            p(datetime(2026, 1, 1))  # naive: the error under test
    if engine.dialect.name == "sqlite":  # through SQLAlchemy's own execute path too
        cols = ("name", "version", "updated_at")
        c = bulk.compile_insert(config_versions.insert(), config_versions, cols, engine.dialect)
        with engine.begin() as conn:
            bulk.executemany(conn, c, c.process([("tz", 1, values[2])]))
        with engine.connect() as conn:
            got = conn.execute(
                select(config_versions.c.updated_at).where(config_versions.c.name == "tz")
            ).scalar_one()
        assert got == values[2] and got.tzinfo is not None


def test_utc_datetime_on_sqlite_reads_what_the_two_layer_chain_did() -> None:
    """UTCDateTime's one-step SQLite result processor equals SQLite's DATETIME processor
    followed by process_result_value (the chain), for the text it writes and for any other."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite
    from sqlalchemy.types import TypeDecorator

    from metis.db.types import UTCDateTime

    dialect = sqlite.dialect()
    impl = UTCDateTime().dialect_impl(dialect)  # what SQLAlchemy looks up
    fast = impl.result_processor(dialect, None)
    chain = TypeDecorator.result_processor(impl, dialect, None)
    to_text = impl.bind_processor(dialect)
    assert fast is not None and chain is not None and to_text is not None
    written = [
        datetime(2026, 11, 30, 22, 5, 1, 123456, tzinfo=UTC),
        datetime(2026, 11, 30, 22, 5, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 0, 0, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    texts = [to_text(v) for v in written]
    texts += ["2026-11-30 22:05:01", "2026-11-30 22:05:01.5", None]  # not this writer's form
    for t in texts:
        got, want = fast(t), chain(t)
        assert got == want and (got is None or got.tzinfo is UTC), t
    assert [fast(t) for t in texts[:5]] == [v.astimezone(UTC) for v in written]
