"""The forecast answer: month-to-date and month-end forecast per team, user or workspace.

One function, `forecast_report`, serves ``GET /analytics/forecast``, ``metis
report forecast`` and the dashboard's forecast page, so they agree. It reads
the daily series through the one query layer (`metis.analytics.views.usage`,
the requested view), so a row's ``month_to_date_usd`` equals
``/analytics/cost`` for the month's days so far, and applies the method of
`metis.analytics.forecast` to each row; the backtest replays it on the past
months the ledger covers.

Rows with a monthly hard cap also carry ``cap``: the cap, the gateway spend
it counts this month (caps count the gateway's own spend, across
workspaces), that spend's month-end forecast and the day it is forecast to
reach the cap. Which kinds have a monthly cap is read from the cap scopes
the code knows (`metis.alerts.rules.CAP_SCOPES`, ``<kind>_monthly``) and the
kind's ``monthly_cap_nanousd`` column, so a new monthly cap scope is picked
up without a change here.
"""

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, select

from metis.alerts.rules import CAP_SCOPES
from metis.analytics.forecast import (
    BACKTEST_MONTHS,
    CHECKPOINTS,
    DAMPING,
    FIT_DAYS,
    METHOD,
    METHOD_TEXT,
    MIN_TREND_WEEKS,
    BacktestPoint,
    MonthForecast,
    backtest,
    breach_day,
    error_summary,
    first_spend_day,
    forecast_month,
    month_start,
    next_month,
)
from metis.analytics.params import Filters, ParamError, Window
from metis.analytics.service import envelope
from metis.analytics.views import View, usage
from metis.db.tables import teams, users, workspaces
from metis.money import to_nanousd, usd_json
from metis.timeutil import day_start, iso, utcnow

# by -> (column, id field, table)
BY: dict[str, tuple[str, str, Any]] = {
    "team": ("team_id", "team_id", teams),
    "user": ("user_id", "user_id", users),
    "workspace": ("workspace_id", "workspace_id", workspaces),
}
GATEWAY = Filters(source="gateway")
JSON = dict[str, Any]


def parse_by(value: str | None) -> str:
    if value is None or value == "":
        return "team"
    if value not in BY:
        raise ParamError("invalid_by", f"by must be one of {', '.join(BY)}")
    return value


def history_start(today: date) -> date:
    """The first day a forecast with its backtest needs (past months, plus a fit window)."""
    m = month_start(today)
    for _ in range(BACKTEST_MONTHS):
        m = month_start(m - timedelta(days=1))
    return m - timedelta(days=FIT_DAYS)


def past_months(today: date, first_day: date | None) -> list[date]:
    """Up to `BACKTEST_MONTHS` complete months before ``today``'s with data from their start.

    ``first_day`` is the first day with spend in the data read: a month that
    began before it is not a fair test (its first days would look like no
    spend at all).
    """
    months: list[date] = []
    m = month_start(today)
    for _ in range(BACKTEST_MONTHS):
        m = month_start(m - timedelta(days=1))
        if first_day is None or m < first_day:
            break
        months.append(m)
    return sorted(months)


def daily_series(
    conn: Connection, view: View, filters: Filters, start: date, end: date, col: str | None
) -> dict[Any, dict[date, int]]:
    """Spend per day ``[start, end)`` per value of ``col`` (None: one series, keyed None)."""
    window = Window(day_start(start), day_start(end))
    cols = ["usage_date"] + ([col] if col else [])
    out: dict[Any, dict[date, int]] = defaultdict(dict)
    for a in usage(conn, view, window, filters, cols):
        key = a.dims[col] if col else None
        day = a.dims["usage_date"]
        out[key][day] = out[key].get(day, 0) + a.cost_nanousd
    return dict(out)


def series_by_kind(
    conn: Connection, view: View, filters: Filters, today: date, kinds: list[str]
) -> dict[str, dict[Any, dict[date, int]]]:
    """The daily series of several kinds (``team``, ``user`` …) from one grouped query.

    What `forecast_report` reads for each ``by``, fetched once for a page that
    shows them all.
    """
    cols = [BY[k][0] for k in kinds]
    window = Window(day_start(history_start(today)), day_start(today + timedelta(days=1)))
    out: dict[str, dict[Any, dict[date, int]]] = {k: defaultdict(dict) for k in kinds}
    for a in usage(conn, view, window, filters, ["usage_date", *cols]):
        day = a.dims["usage_date"]
        for k, col in zip(kinds, cols, strict=True):
            s = out[k][a.dims[col]]
            s[day] = s.get(day, 0) + a.cost_nanousd
    return {k: dict(v) for k, v in out.items()}


def monthly_caps(conn: Connection, by: str) -> tuple[str | None, dict[str, int]]:
    """The monthly cap scope of kind ``by`` (e.g. ``team_monthly``) and each id's cap."""
    scope = f"{by}_monthly"
    table = BY[by][2]
    col = table.c.get("monthly_cap_nanousd")
    if scope not in CAP_SCOPES or col is None:
        return None, {}
    rows = conn.execute(select(table.c.id, col).where(col.is_not(None), col > 0))
    return scope, {str(r[0]): int(r[1]) for r in rows}


def _names(conn: Connection, by: str) -> dict[str, dict[str, Any]]:
    if by == "team":
        return {r.id: {"team_name": r.name} for r in conn.execute(select(teams.c.id, teams.c.name))}
    if by == "user":
        q = select(users.c.id, users.c.alias, users.c.display_name)
        return {r.id: {"alias": r.alias, "display_name": r.display_name} for r in conn.execute(q)}
    q = select(workspaces.c.id, workspaces.c.name)
    return {r.id: {"workspace_name": r.name} for r in conn.execute(q)}


def _blank_names(by: str) -> dict[str, None]:
    return {"team": {"team_name": None}, "user": {"alias": None, "display_name": None}}.get(
        by, {"workspace_name": None}
    )


def _pct(v: Fraction | None) -> Decimal | None:
    if v is None:
        return None
    return (Decimal(v.numerator) / Decimal(v.denominator)).quantize(Decimal("0.01"))


def _backtest_json(points: list[BacktestPoint]) -> list[JSON]:
    by_month: dict[date, list[BacktestPoint]] = defaultdict(list)
    for p in points:
        by_month[p.month].append(p)
    return [
        {
            "month": m.strftime("%Y-%m"),
            "actual_usd": usd_json(ps[0].actual_nanousd),
            "forecasts": [
                {
                    "known_days": p.known_days,
                    "forecast_usd": usd_json(p.forecast_nanousd),
                    "error_pct": _pct(p.error_pct),
                }
                for p in ps
            ],
        }
        for m, ps in sorted(by_month.items())
    ]


def _cap_json(scope: str, cap: int, mf: MonthForecast) -> JSON:
    day = breach_day(mf, cap)
    if mf.month_to_date_nanousd >= cap:
        status = "reached"
    elif day is not None:
        status = "forecast_to_reach"
    else:
        status = "ok"
    return {
        "scope": scope,
        "limit_usd": usd_json(cap),
        "spent_usd": usd_json(mf.month_to_date_nanousd),
        "forecast_usd": usd_json(mf.forecast_nanousd),
        "reaches_on": day.isoformat() if day else None,
        "status": status,
    }


def forecast_report(
    conn: Connection,
    filters: Filters,
    view: View,
    by: str,
    *,
    today: date | None = None,
    series: dict[Any, dict[date, int]] | None = None,
) -> JSON:
    """``/analytics/forecast``: this UTC month's spend so far and its forecast per ``by``.

    ``series`` (from `series_by_kind`, same view, filters and day) saves the read.
    """
    by = parse_by(by)
    now = utcnow()
    today = today or now.date()
    col, id_field, _ = BY[by]
    if series is None:
        start = history_start(today)
        series = daily_series(conn, view, filters, start, today + timedelta(days=1), col)
    overall: dict[date, int] = defaultdict(int)
    for s in series.values():
        for d, v in s.items():
            overall[d] += v
    months = past_months(today, first_spend_day(overall))
    scope, caps = monthly_caps(conn, by)
    gw: dict[Any, dict[date, int]] = {}
    if caps:
        gw_start = month_start(today) - timedelta(days=FIT_DAYS)
        gw = daily_series(conn, "raw", GATEWAY, gw_start, today + timedelta(days=1), col)
    names = _names(conn, by)
    rows: list[JSON] = []
    points: list[BacktestPoint] = []
    ms = month_start(today)
    for key, s in series.items():
        mf = forecast_month(s, today)
        bt = backtest(s, months)
        if (
            not mf.month_to_date_nanousd
            and not mf.forecast_nanousd
            and not any(p.actual_nanousd for p in bt)
        ):
            continue  # nothing this month, nothing forecast, nothing to test on
        points += bt
        row: JSON = {id_field: key, **(names.get(key) or _blank_names(by))}
        row.update(
            {
                "month_to_date_usd": usd_json(mf.month_to_date_nanousd),
                "forecast_usd": usd_json(mf.forecast_nanousd),
                "daily_rate_usd": usd_json(mf.daily_rate_nanousd),
                "trend_usd_per_day": usd_json(round(mf.line.slope)),
                "fit_days": mf.line.fit_days,
                "cap": _cap_json(scope, caps[key], forecast_month(gw.get(key, {}), today))
                if scope and key in caps
                else None,
                "backtest": _backtest_json(bt),
            }
        )
        rows.append(row)
    rows.sort(key=lambda r: (r[id_field] is None, -Decimal(r["forecast_usd"]), str(r[id_field])))
    summary = error_summary(points)
    nxt = next_month(today)
    return envelope(
        Window(day_start(ms), day_start(nxt)),
        view,
        rows,
        by=by,
        month=ms.strftime("%Y-%m"),
        as_of=iso(now),
        days_in_month=(nxt - ms).days,
        complete_days=(today - ms).days,
        method={
            "name": METHOD,
            "fit_days": FIT_DAYS,
            "min_trend_weeks": MIN_TREND_WEEKS,
            "damping": float(DAMPING),
            "description": METHOD_TEXT,
        },
        backtest={
            "months": [m.strftime("%Y-%m") for m in months],
            "checkpoints": list(CHECKPOINTS),
            "errors": [
                {
                    "known_days": k,
                    "points": v["points"],
                    "mape_pct": _pct(v["mape_pct"]),
                    "wape_pct": _pct(v["wape_pct"]),
                }
                for k, v in summary.items()
            ],
        },
        total={
            "month_to_date_usd": usd_json(sum(to_nanousd(r["month_to_date_usd"]) for r in rows)),
            "forecast_usd": usd_json(sum(to_nanousd(r["forecast_usd"]) for r in rows)),
        },
    )
