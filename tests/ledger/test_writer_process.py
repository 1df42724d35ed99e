"""The write-behind flush in a child process: same rows as the thread, failures re-queue."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from metis.db.tables import events, spend_counters, usage_records
from metis.events import LLMCallCompleted, RouteDecided, event_values
from metis.ledger.counters import Delta
from metis.ledger.record import UsageRecord
from metis.ledger.writer import PendingEvent, WriteBehind
from metis.ledger.writer_process import WriterError, WriterProcess, decode_batch, encode_batch
from metis.workspaces import add_workspace

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


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
        input_tokens=10 + i,
        output_tokens=2,
        request_count=1,
        cost_nanousd=100 + i,
        cost_source="computed",
        metadata={"i": i, "s": "é"},
        latency_ms=3,
    )


def evs(ws: str, i: int) -> list[PendingEvent]:
    return [
        PendingEvent(
            LLMCallCompleted(
                request_id=f"req_{i}",
                workspace_id=ws,
                gateway_key_id="key_1",
                user_id=None,
                team_id="team_1",
                inbound_shape="openai",
                provider="openai",
                model="gpt-4o-mini",
                status="ok",
                http_status=200,
                latency_ms=3,
                cost_usd=Decimal("0.000000100"),
            ),
            NOW,
            {"workspace_id": ws},
        ),
        PendingEvent(
            RouteDecided(
                request_id=f"req_{i}",
                candidates=["openai:gpt-4o-mini"],
                winner_index=0,
                reason="default",
                attempts=[{"target": "openai:gpt-4o-mini", "http_status": 200}],
            ),
            NOW,
            {"workspace_id": ws, "gateway_key_id": "key_1"},
        ),
    ]


DELTAS = {("key_daily", "key_1", "2026-03-01"): Delta(spent=300, reserved=-200)}


def test_batch_round_trips_exactly() -> None:
    records = [rec("ws_1", 1), rec("ws_1", 2)]
    pending = evs("ws_1", 1)
    r2, rows, d2 = decode_batch(encode_batch(records, pending, DELTAS))
    assert r2 == records
    # The child gets each event as the row the in-thread writer would store
    # (all but the fresh event id), its payload encoded once, by the gateway.
    assert [row[1:] for row in rows] == [event_values(e.payload, e.ts, e.ids)[1:] for e in pending]
    assert all(row[0].startswith("evt_") for row in rows)
    assert d2 == DELTAS


def _stored(engine: Engine) -> tuple[list[tuple[object, ...]], ...]:
    with engine.connect() as c:
        recs = c.execute(
            select(
                *(x for x in usage_records.c if x.name not in ("id", "ingested_at", "updated_at"))
            ).order_by(usage_records.c.dedupe_key)
        ).all()
        evts = c.execute(
            select(*(x for x in events.c if x.name not in ("id", "event_id"))).order_by(
                events.c.type, events.c.request_id
            )
        ).all()
        ctrs = c.execute(
            select(spend_counters.c.spent_nanousd, spend_counters.c.reserved_nanousd)
        ).all()
    return [tuple(r) for r in recs], [tuple(r) for r in evts], [tuple(r) for r in ctrs]


async def _write_all(engine: Engine, ws: str, *, process: bool) -> None:
    class Counters:
        def take_deltas(self) -> dict[object, Delta]:
            return dict(DELTAS)

        def deltas_applied(self, _d: object) -> None:
            pass

        def restore_deltas(self, _d: object) -> None:
            pass

    w = WriteBehind(engine, Counters(), process=process)  # type: ignore[arg-type]
    for i in range(3):
        w.add(rec(ws, i), evs(ws, i))
    await w.close()


async def test_child_writes_exactly_what_the_thread_writes(engine: Engine) -> None:
    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    await _write_all(engine, ws, process=False)
    by_thread = _stored(engine)
    with engine.begin() as c:
        for t in (usage_records, events, spend_counters):
            c.execute(t.delete())
    await _write_all(engine, ws, process=True)
    assert _stored(engine) == by_thread
    assert len(by_thread[0]) == 3 and len(by_thread[1]) == 6


async def test_child_failure_keeps_the_batch_and_a_dead_child_is_replaced(engine: Engine) -> None:
    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    w = WriteBehind(engine, None, process=True)
    w.add(rec("ws_missing", 1))  # foreign key fails in the child
    with pytest.raises(WriterError):
        await w.flush()
    assert w.pending == 1 and w.failures == 1
    w._records.clear()
    w.add(rec(ws, 2))
    await w.flush()  # the same child goes on
    child = w._sink
    assert isinstance(child, WriterProcess) and child._proc is not None
    child._proc.kill()
    await asyncio.sleep(0.1)
    w.add(rec(ws, 3))
    with pytest.raises(RuntimeError, match="exited"):
        await w.flush()
    assert w.pending == 1
    await w.flush()  # a new child
    await w.close()
    with engine.connect() as c:
        keys = c.execute(select(usage_records.c.dedupe_key)).scalars().all()
    assert sorted(keys) == ["req_2", "req_3"]


async def test_a_flush_during_the_child_start_does_not_spawn_a_second_child(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metis.ledger.writer_process import WriterProcess

    with engine.begin() as c:
        ws = add_workspace(c, "w").id
    spawned: list[int] = []
    spawn = WriterProcess._spawn

    async def counting(self: WriterProcess) -> object:
        spawned.append(1)
        return await spawn(self)

    monkeypatch.setattr(WriterProcess, "_spawn", counting)
    w = WriteBehind(engine, None, flush_interval_s=0.01, process=True)
    w.start()
    await asyncio.sleep(0.05)  # the child is still importing
    w.add(rec(ws, 1))
    await w.flush()
    await w.close()
    assert len(spawned) == 1
    with engine.connect() as c:
        assert c.execute(select(usage_records.c.dedupe_key)).scalars().all() == ["req_1"]
