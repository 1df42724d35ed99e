"""Budget alerts: 80/95/100% of a team cap fire exactly once per threshold and day.

Spend is driven through the gateway's real spend counters
(`metis.ledger.counters.SpendCounters`: reserve, settle, write-behind flush),
whose settle calls `check_budget_crossings`; the gateway app itself had no
test fixture yet when this was written. Deliveries go over real HTTP to a
receiver on 127.0.0.1 and are checked for a valid HMAC signature.
"""

import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine, event, insert, select

from metis.alerts.delivery import DeliveryWorker
from metis.alerts.engine import AlertEngine, check_budget_crossings, crossed_thresholds
from metis.alerts.rules import load_config
from metis.config import get_settings
from metis.db.tables import alert_deliveries, events, teams
from metis.ledger.counters import CapExceeded, SpendCounters, apply_deltas, scopes_for
from metis.server import create_app
from metis.timeutil import day_key, month_key, utcnow
from metis.util.server_thread import ServerThread, free_port
from tests.alerts.conftest import Sinks
from tests.alerts.receiver import Receiver

CAP = 1_000_000_000  # $1.00
STEP = 50_000_000  # $0.05 per call


def _team(engine: Engine, tid: str = "team_eng") -> str:
    with engine.begin() as c:
        c.execute(
            insert(teams).values(
                id=tid,
                name=tid.removeprefix("team_"),
                daily_cap_nanousd=CAP,
                created_at=utcnow(),
                disabled=False,
            )
        )
    return tid


async def _spend_to_cap(counters: SpendCounters, tid: str, now_offset_days: int = 0) -> int:
    """Settle $0.05 calls until the team's daily cap refuses; returns calls admitted."""
    now = utcnow() + timedelta(days=now_offset_days)
    caps = scopes_for(
        key_id=None,
        user_id=None,
        team_id=tid,
        key_daily_cap=None,
        user_daily_cap=None,
        team_daily_cap=CAP,
        team_monthly_cap=None,
        now=now,
    )
    checkouts = [0]

    def _count(*_: object) -> None:
        checkouts[0] += 1

    event.listen(counters.engine, "checkout", _count)
    n = 0
    while True:
        try:
            res = await counters.reserve(caps, STEP)
        except CapExceeded:
            return n
        before = checkouts[0]
        counters.settle(res, STEP)
        assert checkouts[0] == before  # settle (with its alert check) touches no database
        n += 1
        assert n <= 40


def _flush(engine: Engine, counters: SpendCounters) -> None:
    with engine.begin() as c:
        apply_deltas(c, counters.take_deltas())


def test_crossed_thresholds_is_exact() -> None:
    assert crossed_thresholds(0, 799_999_999, CAP, (80, 95, 100)) == []
    assert crossed_thresholds(799_999_999, 800_000_000, CAP, (80, 95, 100)) == [80]
    assert crossed_thresholds(800_000_000, 950_000_000, CAP, (80, 95, 100)) == [95]
    assert crossed_thresholds(0, 2 * CAP, CAP, (80, 95, 100)) == [80, 95, 100]
    assert crossed_thresholds(CAP, CAP + 1, CAP, (80, 95, 100)) == []


async def test_team_cap_fires_once_per_threshold_per_day(engine: Engine, sinks: Sinks) -> None:
    tid = _team(engine)
    config = load_config(get_settings())
    worker = DeliveryWorker(engine, config)
    counters = SpendCounters(engine)

    assert await _spend_to_cap(counters, tid) == 20
    _flush(engine, counters)
    res = await worker.run_once()
    assert res.delivered == 6 and res.failed == 0  # 3 thresholds x (webhook + slack)

    # Deliveries are sent concurrently: arrival order is not guaranteed.
    hooks = sorted(sinks.receiver.at("/hook"), key=lambda p: p.json["threshold"])
    assert [p.json["threshold"] for p in hooks] == [80, 95, 100]
    for p in hooks:
        assert p.signature_ok(sinks.secret)
        assert not p.signature_ok("another-secret")
        body = p.json
        assert body["kind"] == "budget_threshold"
        assert body["scope"] == "team_daily" and body["scope_id"] == tid
        assert body["scope_name"] == "eng"  # the name next to the id
        assert f"spend of team eng ({tid}) reached" in body["message"]
        assert body["period"] == day_key(utcnow())
        assert body["limit_usd"] == 1
    assert [p.json["current_usd"] for p in hooks] == [
        Decimal("0.8"),
        Decimal("0.95"),
        Decimal("1"),
    ]
    slack = sinks.receiver.at("/slack")
    assert len(slack) == 3 and all("team_daily" in p.json["text"] for p in slack)
    assert all(f"team eng ({tid})" in p.json["text"] for p in slack)

    # More passes, the periodic sweep over the flushed counters, a second
    # process's counters seeing the same spend: nothing fires again.
    AlertEngine(engine, config).evaluate()
    check_budget_crossings("team_daily", tid, day_key(utcnow()), 0, CAP, CAP)
    await worker.run_once()
    assert len(sinks.receiver.at("/hook")) == 3
    with engine.connect() as c:
        fired = c.execute(select(events.c.team_id).where(events.c.type == "alert.fired")).all()
    assert fired == [(tid,)] * 3

    # The next day is a new period: each threshold fires once more.
    assert await _spend_to_cap(counters, tid, now_offset_days=1) == 20
    await worker.run_once()
    hooks = sinks.receiver.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks[3:]) == [80, 95, 100]
    tomorrow = day_key(utcnow() + timedelta(days=1))
    assert {p.json["period"] for p in hooks[3:]} == {tomorrow}


async def test_receiver_down_delays_nothing_and_gets_alerts_later(
    engine: Engine, fast_alerts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    secret = "s3cret-for-this-test"
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_SECRET", secret)
    tid = _team(engine)
    config = load_config(get_settings())
    worker = DeliveryWorker(engine, config)
    counters = SpendCounters(engine)

    t0 = time.perf_counter()
    assert await _spend_to_cap(counters, tid) == 20
    assert time.perf_counter() - t0 < 5.0  # 20 admissions incl. lease grants, receiver down

    res = await worker.run_once()
    assert res.retried == 3 and res.delivered == 0
    with engine.connect() as c:
        rows = c.execute(select(alert_deliveries)).mappings().all()
    assert {r["status"] for r in rows} == {"pending"}
    assert all(r["attempts"] == 1 and r["last_error"] == "webhook: ConnectError" for r in rows)
    assert all(str(port) not in (r["last_error"] or "") for r in rows)  # no URL in errors

    rec = Receiver()
    with ServerThread(rec.app(), port=port):
        deadline = time.monotonic() + 10
        while len(rec.at("/hook")) < 3 and time.monotonic() < deadline:
            await worker.run_once()
            time.sleep(0.05)
        await worker.run_once()
    hooks = rec.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks) == [80, 95, 100]  # each exactly once
    assert all(p.signature_ok(secret) for p in hooks)
    with engine.connect() as c:
        rows = c.execute(select(alert_deliveries)).mappings().all()
    assert {r["status"] for r in rows} == {"delivered"}


def test_server_records_and_delivers_in_the_background(engine: Engine, sinks: Sinks) -> None:
    tid = _team(engine)
    with ServerThread(create_app()) as srv:
        # What the gateway's settle does in the server process: an in-memory append.
        period = day_key(utcnow())
        assert check_budget_crossings("team_daily", tid, period, 0, 960_000_000, CAP) == [80, 95]
        deadline = time.monotonic() + 10
        while len(sinks.receiver.at("/hook")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(srv.url + "/openapi.json").status_code == 200
    hooks = sinks.receiver.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks) == [80, 95]
    assert all(p.signature_ok(sinks.secret) for p in hooks)


def test_sweep_fires_crossings_no_process_recorded(engine: Engine, fast_alerts: None) -> None:
    """A crossing queued by a process that died is still found in the stored counters."""
    from metis.db.tables import spend_counters

    tid = _team(engine)
    with engine.begin() as c:
        c.execute(
            insert(spend_counters).values(
                scope="team_daily",
                scope_id=tid,
                period=day_key(utcnow()),
                spent_nanousd=970_000_000,
                reserved_nanousd=0,
                updated_at=utcnow(),
            )
        )
    eng = AlertEngine(engine, load_config(get_settings()))
    assert eng.evaluate() == 2  # 80% and 95%
    assert eng.evaluate() == 0
    with engine.connect() as c:
        got = sorted(
            p["threshold"]
            for (p,) in c.execute(select(events.c.payload).where(events.c.type == "alert.fired"))
        )
    assert got == ["80", "95"]


def test_sweep_fires_user_cap_crossings(engine: Engine, fast_alerts: None) -> None:
    """The sweep's safety net covers user caps (issue 18 #7) as it does team caps."""
    from metis.db.tables import spend_counters
    from metis.identity.users import add_user

    with engine.begin() as c:
        uid = add_user(c, "Alice", alias="alice", monthly_cap_nanousd=1_000_000_000).id
        c.execute(
            insert(spend_counters).values(
                scope="user_monthly",
                scope_id=uid,
                period=month_key(utcnow()),
                spent_nanousd=1_000_000_000,
                reserved_nanousd=0,
                updated_at=utcnow(),
            )
        )
    eng = AlertEngine(engine, load_config(get_settings()))
    assert eng.evaluate() == 3  # 80, 95 and 100%
    with engine.connect() as c:
        got = [
            p for (p,) in c.execute(select(events.c.payload).where(events.c.type == "alert.fired"))
        ]
    assert {p["scope"] for p in got} == {"user_monthly"} and {p["scope_id"] for p in got} == {uid}
