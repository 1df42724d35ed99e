"""Spend counters: leased cap budget, settle/release, the overshoot bound, restarts."""

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from metis.ledger.counters import (
    CapExceeded,
    SpendCounters,
    apply_deltas,
    read_counter,
    scopes_for,
)

NOW = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)


def caps(team_daily: int | None = None, key_daily: int | None = None) -> list:  # type: ignore[type-arg]
    return scopes_for(
        key_id="key_1",
        user_id="usr_1",
        team_id="team_1",
        key_daily_cap=key_daily,
        user_daily_cap=None,
        team_daily_cap=team_daily,
        team_monthly_cap=None,
        now=NOW,
    )


async def flush(engine: Engine, c: SpendCounters) -> None:
    d = c.take_deltas()
    with engine.begin() as conn:
        apply_deltas(conn, d)
    c.deltas_applied(d)


def test_scopes_and_reset_times() -> None:
    sc = {s.scope: s for s in caps(team_daily=5)}
    assert set(sc) == {"key_daily", "user_daily", "user_monthly", "team_daily", "team_monthly"}
    assert sc["team_daily"].period == "2026-03-31"
    assert sc["user_monthly"].period == "2026-03" and sc["user_monthly"].cap_nanousd is None
    assert sc["user_monthly"].resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert sc["team_monthly"].period == "2026-03"
    assert sc["team_daily"].resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert sc["team_monthly"].resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert sc["team_daily"].cap_nanousd == 5 and sc["key_daily"].cap_nanousd is None


async def test_spec_hard_cap_second_request_refused(engine: Engine) -> None:
    # team daily cap $0.001; one $0.01 request is admitted, the second is refused.
    c = SpendCounters(engine)
    cs = caps(team_daily=1_000_000)
    r = await c.reserve(cs, 12_000_000)
    c.settle(r, 10_000_000)
    with pytest.raises(CapExceeded) as ei:
        await c.reserve(cs, 12_000_000)
    assert ei.value.scope == "team_daily"
    assert ei.value.limit_nanousd == 1_000_000
    assert ei.value.current_nanousd == 10_000_000
    await flush(engine, c)
    with engine.connect() as conn:
        assert read_counter(conn, ("team_daily", "team_1", "2026-03-31"))[0] == 10_000_000
        assert read_counter(conn, ("key_daily", "key_1", "2026-03-31")) == (10_000_000, 0)


async def test_release_spends_nothing(engine: Engine) -> None:
    c = SpendCounters(engine)
    cs = caps(team_daily=100)
    r = await c.reserve(cs, 60)
    c.release(r)
    c.release(r)  # idempotent
    r2 = await c.reserve(cs, 60)
    c.settle(r2, 0)
    await flush(engine, c)
    with engine.connect() as conn:
        assert read_counter(conn, ("team_daily", "team_1", "2026-03-31"))[0] == 0


async def test_concurrent_overshoot_at_most_one_reservation_per_process(engine: Engine) -> None:
    cap, est = 10_000, 1_000  # about ten requests
    procs = [SpendCounters(engine), SpendCounters(engine)]
    cs = caps(team_daily=cap)
    accepted = 0

    async def one(c: SpendCounters, i: int) -> None:
        nonlocal accepted
        try:
            r = await c.reserve(cs, est)
        except CapExceeded:
            return
        await asyncio.sleep(0.001 * (i % 5))
        accepted += 1
        c.settle(r, est)

    await asyncio.gather(*(one(procs[i % 2], i) for i in range(200)))
    for c in procs:
        await flush(engine, c)
    spent = accepted * est
    assert cap - est < spent <= cap + len(procs) * est
    with engine.connect() as conn:
        assert read_counter(conn, ("team_daily", "team_1", "2026-03-31"))[0] == spent


async def test_far_from_cap_needs_no_database_per_request(engine: Engine) -> None:
    c = SpendCounters(engine)
    cs = caps(team_daily=10**12)
    for _ in range(200):
        c.settle(await c.reserve(cs, 1_000), 900)
    assert c.grants == 1


async def test_cap_change_regrants_and_lower_cap_refuses(engine: Engine) -> None:
    c = SpendCounters(engine)
    r = await c.reserve(caps(team_daily=10**9), 1_000)
    c.settle(r, 5_000)
    with pytest.raises(CapExceeded):
        await c.reserve(caps(team_daily=4_000), 1_000)
    r = await c.reserve(caps(team_daily=10**9), 1_000)  # raised again: admitted
    c.settle(r, 1_000)


async def test_survives_restart_and_returns_leases(engine: Engine) -> None:
    c = SpendCounters(engine)
    cs = caps(team_daily=1_000_000)
    c.settle(await c.reserve(cs, 1_000), 400_000)
    c.return_leases()
    await flush(engine, c)
    with engine.connect() as conn:
        assert read_counter(conn, ("team_daily", "team_1", "2026-03-31")) == (400_000, 0)
    fresh = SpendCounters(engine)  # a restarted process
    c2 = fresh
    r = await c2.reserve(cs, 700_000)  # 400k spent < cap: admitted
    c2.settle(r, 700_000)
    with pytest.raises(CapExceeded) as ei:
        await c2.reserve(cs, 1)
    assert ei.value.current_nanousd == 1_100_000
    await c2.refresh()
    assert c2.spent(("team_daily", "team_1", "2026-03-31")) == 1_100_000
