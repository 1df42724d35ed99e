"""``forecast_breach``: a monthly hard cap is forecast to be reached before the month ends.

For every monthly cap scope the code knows (`metis.alerts.rules.CAP_SCOPES`
ending in ``_monthly``: ``team_monthly`` today, ``user_monthly`` or any other
kind once its table has a ``monthly_cap_nanousd`` column) and every id with
such a cap, the gateway spend the cap counts is forecast to the end of the
UTC month with the method of `metis.analytics.forecast`. When the forecast
reaches the cap while the spend so far does not, the alert fires once per
(scope, id, month), naming the day the cap would be reached; a cap already
reached is the budget alerts' business (80/95/100%), not this one's.

It runs in the engine's ledger scans (`AlertEngine.evaluate`), reading the
daily rollups of the current month and the four weeks before it.
"""

from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from metis.alerts.names import label, scope_name
from metis.alerts.rules import CAP_SCOPES
from metis.analytics.forecast import FIT_DAYS, breach_day, forecast_month, month_start
from metis.analytics.forecast_report import GATEWAY, daily_series, monthly_caps
from metis.money import from_nanousd

if TYPE_CHECKING:
    from metis.alerts.engine import Alert, AlertEngine

KIND = "forecast_breach"


def monthly_kinds() -> list[str]:
    """The entity kinds with a monthly cap scope (``team`` for ``team_monthly`` …)."""
    return [s.removesuffix("_monthly") for s in CAP_SCOPES if s.endswith("_monthly")]


def _usd(nanos: int) -> str:
    return f"${from_nanousd(nanos).quantize(Decimal('0.01')):,}"


def forecast_alerts(conn: Connection, today: date) -> list["Alert"]:
    """The forecast-breach alerts that hold right now (before dedupe and rules)."""
    from metis.alerts.engine import Alert

    out: list[Alert] = []
    start = month_start(today) - timedelta(days=FIT_DAYS)
    for kind in monthly_kinds():
        if kind not in ("team", "user", "workspace"):
            continue  # no per-day series of that kind to forecast from
        scope, caps = monthly_caps(conn, kind)
        if scope is None or not caps:
            continue
        col = f"{kind}_id"
        series = daily_series(conn, "raw", GATEWAY, start, today + timedelta(days=1), col)
        for scope_id, cap in sorted(caps.items()):
            mf = forecast_month(series.get(scope_id, {}), today)
            day = breach_day(mf, cap)
            if day is None or mf.month_to_date_nanousd >= cap:
                continue
            name = scope_name(conn, scope, scope_id)
            out.append(
                Alert(
                    kind=KIND,
                    scope=scope,
                    scope_id=scope_id,
                    period=today.strftime("%Y-%m"),
                    value=from_nanousd(mf.forecast_nanousd),
                    unit="usd",
                    limit_usd=from_nanousd(cap),
                    current_usd=from_nanousd(mf.month_to_date_nanousd),
                    scope_name=name,
                    message=(
                        f"{label(scope, scope_id, name)} is forecast to reach its monthly cap of "
                        f"{_usd(cap)} on {day.isoformat()}: {_usd(mf.month_to_date_nanousd)} "
                        f"spent so far, {_usd(mf.forecast_nanousd)} forecast for "
                        f"{today.strftime('%Y-%m')} (weekly trend of the last "
                        f"{mf.line.fit_days} days)"
                    ),
                )
            )
    return out


def sweep_forecast_breaches(engine: "AlertEngine", conn: Connection, today: date) -> int:
    """Fire each forecast breach once per scope, id and month; returns how many fired."""
    rules = engine.config.rules_for(None)
    if not rules.enabled or not rules.forecast_breach:
        return 0
    n = 0
    for a in forecast_alerts(conn, today):
        if a.scope in rules.budget_scopes and engine.fire(conn, a):
            n += 1
    return n
