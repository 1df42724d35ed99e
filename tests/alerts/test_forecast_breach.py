"""``forecast_breach``: a monthly cap forecast to be reached fires once per cap and month.

Teams with a monthly cap get gateway spend of $10 a day for the last 40 days
(none yet today); the cap is set so the month-to-date spend is under it and
the forecast (the same method, `metis.analytics.forecast`) reaches it.
"""

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from metis.alerts import forecast as forecast_alerts
from metis.alerts.engine import AlertEngine
from metis.alerts.rules import load_config
from metis.analytics import forecast_report
from metis.analytics.forecast import breach_day, forecast_month, next_month
from metis.config import get_settings
from metis.db.tables import alert_deliveries, events, teams
from metis.ledger.upsert import upsert_usage
from metis.money import from_nanousd
from metis.timeutil import utcnow
from tests.alerts.conftest import Sinks
from tests.alerts.helpers import record, workspace

USD = 1_000_000_000
RATE = 10 * USD


def _team(engine: Engine, tid: str, name: str, monthly: int | None) -> None:
    with engine.begin() as c:
        c.execute(
            insert(teams).values(
                id=tid, name=name, monthly_cap_nanousd=monthly, created_at=utcnow(), disabled=False
            )
        )


def _spend(engine: Engine, tid: str, today: date) -> dict[date, int]:
    series = {today - timedelta(days=i): RATE for i in range(1, 41)}
    with engine.begin() as c:
        upsert_usage(c, [record(d, v, team_id=tid) for d, v in series.items()])
    return series


def _fired(engine: Engine, kind: str = "forecast_breach") -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(
            select(events.c.payload, events.c.team_id).where(events.c.type == "alert.fired")
        )
        return [{**p, "_team_id": t} for p, t in rows if p["kind"] == kind]


def test_fires_once_naming_the_team_and_the_day(engine: Engine, sinks: Sinks) -> None:
    today = utcnow().date()
    mtd = RATE * (today.day - 1)
    left = (next_month(today) - today).days  # today included
    cap = mtd + RATE * left // 2 + 1  # under the forecast, over what is spent
    with engine.begin() as c:
        workspace(c)
    _team(engine, "team_p", "platform", cap)
    _team(engine, "team_r", "research", mtd + RATE * left + USD)  # forecast stays under it
    _team(engine, "team_x", "spent", mtd)  # already reached: the budget alerts' business
    series = {tid: _spend(engine, tid, today) for tid in ("team_p", "team_r", "team_x")}
    eng = AlertEngine(engine, load_config(get_settings()))
    eng.evaluate(ledger_scans=True)
    (p,) = _fired(engine)
    f = forecast_month(series["team_p"], today)
    day = breach_day(f, cap)
    assert day is not None and f.month_to_date_nanousd == mtd < cap
    assert p["scope"] == "team_monthly" and p["scope_id"] == "team_p" and p["_team_id"] == "team_p"
    assert p["scope_name"] == "platform" and p["period"] == today.strftime("%Y-%m")
    assert p["message"].startswith(
        "team platform (team_p) is forecast to reach its monthly cap of $"
    )
    assert f"on {day.isoformat()}:" in p["message"]
    assert Decimal(p["limit_usd"]) == from_nanousd(cap)
    assert Decimal(p["current_usd"]) == from_nanousd(mtd)
    assert Decimal(p["value"]) == from_nanousd(f.forecast_nanousd) > from_nanousd(cap)
    # once per cap and month, however many passes
    eng.evaluate(ledger_scans=True)
    assert len(_fired(engine)) == 1
    with engine.connect() as c:
        sinks_of = {r[0] for r in c.execute(select(alert_deliveries.c.sink))}
    assert sinks_of == {"webhook", "slack"}


def test_can_be_switched_off(engine: Engine, metis_env: dict[str, str], fast_alerts: None) -> None:
    p = Path(metis_env["METIS_HOME"]) / "alerts.yaml"
    p.write_text(p.read_text() + "defaults:\n  forecast_breach: false\n")
    today = utcnow().date()
    with engine.begin() as c:
        workspace(c)
    _team(engine, "team_p", "platform", RATE * (today.day - 1) + 1)
    _spend(engine, "team_p", today)
    AlertEngine(engine, load_config(get_settings())).evaluate(ledger_scans=True)
    assert _fired(engine) == []


def test_any_monthly_cap_scope_the_code_knows_is_covered(
    engine: Engine, fast_alerts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scopes come from CAP_SCOPES: a new ``user_monthly`` is picked up by its kind, and a
    kind whose table has no monthly cap column yet is skipped, not an error."""
    scopes = ("team_daily", "team_monthly", "user_monthly")
    monkeypatch.setattr(forecast_alerts, "CAP_SCOPES", scopes)
    monkeypatch.setattr(forecast_report, "CAP_SCOPES", scopes)
    assert forecast_alerts.monthly_kinds() == ["team", "user"]
    today = utcnow().date()
    with engine.begin() as c:
        workspace(c)
    _team(engine, "team_p", "platform", RATE * (today.day - 1) + 1)
    _spend(engine, "team_p", today)
    with engine.connect() as c:
        alerts = forecast_alerts.forecast_alerts(c, today)
    assert [(a.scope, a.scope_id) for a in alerts] == [("team_monthly", "team_p")]
