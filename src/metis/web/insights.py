"""The dashboard's analysis pages: savings and cache, routing and reliability, forecast.

Each builder reads the same functions as the admin API
(`metis.analytics.service.savings`, ``cache_effectiveness``, ``routing``,
``reliability``, `metis.analytics.forecast_report.forecast_report`) with the
page's window, view and filters, so a page and its endpoint agree:
``/analytics/savings``, ``/analytics/cache_effectiveness``,
``/analytics/routing``, ``/analytics/reliability``, ``/analytics/forecast``.
"""

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from metis.analytics import service
from metis.analytics.forecast import basis_text, forecast_month
from metis.analytics.forecast_report import BY, forecast_report, series_by_kind
from metis.analytics.params import ParamError
from metis.timeutil import utcnow
from metis.web.charts import stacked_bars
from metis.web.params import PageQuery, UIError
from metis.web.tables import Column, Table, usd

Ctx = dict[str, Any]


def _d(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


# ---------------------------------------------------------------- savings and cache


def savings(conn: Connection, q: PageQuery) -> Ctx:
    """What routing to cheaper models and prompt caching saved in the range."""
    try:
        baseline = service.parse_baseline(q.baseline)
    except ParamError as exc:
        raise UIError(400, exc.message) from None
    sv = service.savings(conn, q.window, q.filters, q.view, baseline)
    cache = service.cache_effectiveness(conn, q.window, q.filters, q.view)
    savings_t = Table(
        id="savings",
        title=f"Actual cost against every call on {sv['baseline']}",
        columns=[
            Column("provider", "provider"),
            Column("model", "model"),
            Column("call_count", "calls", "int"),
            Column("actual_cost_usd", "actual", "usd"),
            Column("baseline_cost_usd", "on the baseline", "usd"),
            Column("savings_usd", "saved", "usd"),
        ],
        rows=sv["data"],
        footer={
            "provider": "total",
            "actual_cost_usd": sv["actual_cost_usd"],
            "baseline_cost_usd": sv["baseline_cost_usd"],
            "savings_usd": sv["savings_usd"],
        },
        note="The same tokens priced on the baseline model, day by day (genai-prices); a "
        "negative figure means the model used cost more than the baseline would have.",
        row_class=lambda r: "drift" if (_d(r.get("savings_usd")) or 0) < 0 else "",
    )
    cache_t = Table(
        id="cache",
        title="Prompt caching per model",
        columns=[
            Column("provider", "provider"),
            Column("model", "model"),
            Column("input_tokens", "input tokens", "int"),
            Column("cached_input_tokens", "cache reads", "int"),
            Column("cache_creation_input_tokens", "cache writes", "int"),
            Column("uncached_input_tokens", "uncached", "int"),
            Column("cache_hit_rate", "hit rate", "pct"),
            Column("cost_usd", "cost", "usd"),
            Column("savings_usd", "saved by caching", "usd"),
        ],
        rows=cache["data"],
        footer={
            "provider": "total",
            "input_tokens": cache["total"]["input_tokens"],
            "cached_input_tokens": cache["total"]["cached_input_tokens"],
            "cache_hit_rate": cache["total"]["cache_hit_rate"],
            "savings_usd": cache["total"]["savings_usd"],
        },
        note="Saved by caching = the cached tokens priced as plain input minus their price as "
        "cache reads; empty when the model has no known price.",
    )
    return {
        "tables": {"savings": savings_t, "cache": cache_t},
        "savings": sv,
        "cache_total": cache["total"],
    }


# ---------------------------------------------------------------- routing and reliability


def _latency_note(rel: dict[str, Any]) -> str:
    """How the reliability table's latency figures were obtained (`metis.analytics.latency`)."""
    method = rel["latency_method"]
    if method == "histogram":
        return f"; percentiles from daily histograms, within {rel['relative_error']:.0%}."
    if method == "raw_sample":
        return f"; percentiles from 1 call in {rel['latency_sample']['every']}."
    return "."


def routing(conn: Connection, q: PageQuery) -> Ctx:
    """Route decisions (soft caps, fallbacks, refusals) and per-model reliability."""
    r = service.routing(conn, q.window, q.filters)["data"]
    rel = service.reliability(conn, q.window, q.filters)

    def counts(d: dict[str, int], key: str, label: str, tid: str, title: str, empty: str) -> Table:
        return Table(
            id=tid,
            title=title,
            columns=[Column(key, label), Column("count", "requests", "int")],
            rows=[{key: k, "count": v} for k, v in d.items()],
            empty=empty,
        )

    rel_rows = [
        {
            "provider": x["provider"],
            "model": x["model"],
            "calls": x["calls"],
            "errors": x["errors"],
            "error_rate": x["error_rate"],
            **{p: x["latency_ms"][p] for p in ("p50", "p90", "p95", "p99", "max")},
        }
        for x in rel["data"]
    ]
    rel_t = Table(
        id="reliability",
        title="Gateway calls per model: errors and latency",
        columns=[
            Column("provider", "provider"),
            Column("model", "model"),
            Column("calls", "calls", "int"),
            Column("errors", "errors", "int"),
            Column("error_rate", "error rate", "pct"),
            Column("p50", "p50", "ms"),
            Column("p90", "p90", "ms"),
            Column("p95", "p95", "ms"),
            Column("p99", "p99", "ms"),
            Column("max", "max", "ms"),
        ],
        rows=rel_rows,
        empty="No gateway calls in this range.",
        note="Latency from request to the upstream's last byte, as the gateway measured it"
        + _latency_note(rel),
        row_class=lambda x: "drift" if (_d(x["error_rate"]) or 0) >= Decimal("0.05") else "",
    )
    return {
        "routing": r,
        "tables": {
            "rule_hits": counts(
                r["rule_hits"], "rule", "rule", "rule_hits", "Rules that matched",
                "No routing rule matched in this range.",
            ),
            "winners": counts(
                r["winners"], "target", "provider:model", "winners", "Where requests went",
                "No routed requests in this range.",
            ),
            "failures": counts(
                r["hard_failures_by_reason"], "reason", "reason", "failures",
                "Requests refused or failed (no candidate served them)",
                "No request was refused or failed.",
            ),
            "reliability": rel_t,
        },
    }  # fmt: skip


# ---------------------------------------------------------------- forecast


def _month_chart(series: dict[Any, dict[date, int]], today: date) -> Any:
    """Spend per day of this month: actual so far, then the forecast (sum of the teams')."""
    actual: dict[date, Decimal] = defaultdict(Decimal)
    ahead: dict[date, Decimal] = defaultdict(Decimal)
    days: list[date] = []
    for s in series.values():
        mf = forecast_month(s, today)
        days = [d for d, _, _ in mf.days]
        for d, v, predicted in mf.days:
            if not predicted:
                actual[d] += usd(v) or Decimal(0)
            elif d == today:  # today: what is spent, and the rest of the line on top
                spent = usd(s.get(d, 0)) or Decimal(0)
                actual[d] += spent
                ahead[d] += (usd(v) or Decimal(0)) - spent
            else:
                ahead[d] += usd(v) or Decimal(0)
    if not days:
        return None
    return stacked_bars(
        days,
        [("spent", dict(actual)), ("forecast", dict(ahead))],
        title=f"Spend per day in {today.strftime('%Y-%m')}: spent, then forecast",
    )


def _forecast_table(body: dict[str, Any], by: str) -> Table:
    id_field = {"team": "team_id", "user": "user_id", "workspace": "workspace_id"}[by]
    name_field = {"team": "team_name", "user": "alias", "workspace": "workspace_name"}[by]
    rows = []
    for r in body["data"]:
        cap = r["cap"] or {}
        last = r["backtest"][-1] if r["backtest"] else None
        mid = next((f for f in last["forecasts"] if f["known_days"] == 14), None) if last else None
        status = {
            "reached": "reached",
            "forecast_to_reach": f"reaches it {cap.get('reaches_on')}",
            "ok": "stays under",
        }.get(cap.get("status", ""), "")
        rows.append(
            {
                "name": r.get(name_field) or f"(no {by})",
                "id": r[id_field],
                "month_to_date_usd": r["month_to_date_usd"],
                "forecast_usd": r["forecast_usd"],
                "daily_rate_usd": r["daily_rate_usd"],
                "basis": basis_text(r["fit_days"]),
                "cap_usd": cap.get("limit_usd"),
                "cap_forecast_usd": cap.get("forecast_usd"),
                "cap_status": status,
                "last_error": f"{last['month']}: {Decimal(mid['error_pct']):+.1f}%"
                if last and mid and mid["error_pct"] is not None
                else "",
                "breach": cap.get("status") == "forecast_to_reach",
                "over": cap.get("status") == "reached",
            }
        )
    return Table(
        id=f"forecast_{by}",
        title=f"Per {by}",
        columns=[
            Column("name", by),
            Column("id", f"{by} id", "id"),
            Column("month_to_date_usd", "so far", "usd"),
            Column("forecast_usd", "forecast", "usd"),
            Column("daily_rate_usd", "daily rate now", "usd"),
            Column("basis", "fitted on"),
            Column("cap_usd", "monthly cap", "usd"),
            Column("cap_forecast_usd", "gateway forecast (what the cap counts)", "usd"),
            Column("cap_status", "cap"),
            Column("last_error", "last month's error (after 14 days)"),
        ],
        rows=rows,
        empty=f"No spend per {by} this month or in the weeks before.",
        row_class=lambda r: "drift" if r["over"] else "unattributed" if r["breach"] else "",
    )


def forecast(conn: Connection, q: PageQuery) -> Ctx:
    """This UTC month so far and where it will end, per team, user and workspace."""
    today = utcnow().date()
    series = series_by_kind(conn, q.view, q.filters, today, list(BY))  # one read for all
    bodies = {
        by: forecast_report(conn, q.filters, q.view, by, today=today, series=series[by])
        for by in BY
    }
    return {
        "tables": {f"forecast_{by}": _forecast_table(b, by) for by, b in bodies.items()},
        "forecast": bodies["team"],
        "chart": _month_chart(series["team"], today),
    }
