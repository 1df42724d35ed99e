"""Write-behind: one transaction per flush, nothing on the request path, flush on close."""

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from metis.db.tables import events, usage_records
from metis.events import RouteDecided
from metis.ledger.counters import SpendCounters, read_counter, scopes_for
from metis.ledger.record import UsageRecord
from metis.ledger.writer import PendingEvent, WriteBehind, _ThreadSink
from metis.workspaces import add_workspace

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def rec(ws: str, i: int) -> UsageRecord:
    return UsageRecord(
        workspace_id=ws,
        source="gateway",
        source_ref="key_1",
        dedupe_key=f"req_{i}",
        window_start=NOW,
        window_end=NOW,
        granularity="request",
        provider="openai",
        model="gpt-4o-mini",
        model_raw="gpt-4o-mini",
        input_tokens=10,
        output_tokens=2,
        request_count=1,
        cost_nanousd=100,
        cost_source="computed",
    )


def ev(i: int) -> PendingEvent:
    return PendingEvent(
        RouteDecided(
            request_id=f"req_{i}",
            candidates=["openai:gpt-4o-mini"],
            winner_index=0,
            reason="default",
        ),
        NOW,
        {"workspace_id": None},
    )


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


async def test_periodic_flush_writes_records_events_and_counters(engine: Engine) -> None:
    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    counters = SpendCounters(engine)
    w = WriteBehind(engine, counters, flush_interval_s=0.05)
    w.start()
    cs = scopes_for(
        key_id="key_1",
        user_id=None,
        team_id=None,
        key_daily_cap=None,
        user_daily_cap=None,
        team_daily_cap=None,
        team_monthly_cap=None,
        now=NOW,
    )
    for i in range(5):
        r = await counters.reserve(cs, 200)
        counters.settle(r, 100)
        w.add(rec(ws, i), [ev(i)])
    assert count(engine, usage_records) == 0  # nothing written on the request path
    for _ in range(100):
        await asyncio.sleep(0.02)
        if count(engine, usage_records) == 5:
            break
    assert count(engine, usage_records) == 5
    assert count(engine, events) == 5
    with engine.connect() as c:
        assert read_counter(c, ("key_daily", "key_1", "2026-03-01")) == (500, 0)
    await w.close()


async def test_close_flushes_and_replay_is_idempotent(engine: Engine) -> None:
    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    w = WriteBehind(engine, None, flush_interval_s=60)
    w.start()
    w.add(rec(ws, 1), [ev(1)])
    w.add(rec(ws, 1))  # the same request id again
    await w.close()
    assert count(engine, usage_records) == 1
    assert count(engine, events) == 1
    assert w.pending == 0


async def test_failed_flush_keeps_batch(engine: Engine) -> None:
    w = WriteBehind(engine, None)
    w.add(rec("ws_missing", 1))  # foreign key fails
    with pytest.raises(IntegrityError):
        await w.flush()
    assert w.pending == 1 and w.failures == 1


async def test_flushes_reuse_one_connection_until_a_failure_or_close(engine: Engine) -> None:
    """Kept open between flushes (closing SQLite's last connection checkpoints the WAL)."""
    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    w = WriteBehind(engine, None)
    w.add(rec(ws, 1))
    await w.flush()
    sink = w._sink
    assert isinstance(sink, _ThreadSink)
    first = sink.db.conn
    assert first is not None
    w.add(rec(ws, 2))
    await w.flush()
    assert sink.db.conn is first
    w.add(rec("ws_missing", 3))  # foreign key fails: the connection is dropped
    with pytest.raises(IntegrityError):
        await w.flush()
    assert sink.db.conn is None
    w._records.clear()
    w.add(rec(ws, 4))  # the next flush opens a new one
    await w.flush()
    assert sink.db.conn is not None and sink.db.conn is not first
    await w.close()
    assert sink.db.conn is None
    assert count(engine, usage_records) == 3
