"""What each dashboard page shows, read through the library the API uses.

Every figure comes from the same functions as the analytics API
(`metis.analytics.service`, `metis.analytics.views.usage`,
`metis.ledger.reconcile.reconciled_cells`, `metis.identity.*`), called with the
same window and filters, so a page and the API answer alike for the same range.
Each function returns the template context: tables (`metis.web.tables.Table`,
also the CSV exports) and charts (`metis.web.charts`).

Cap figures ("today vs caps") are the gateway's own spend, across all
workspaces, for today and this month (UTC): exactly what the hard caps count
(``/analytics/by_team?source=gateway&view=raw`` for the same period). Soft
caps (routing rules, `metis.web.soft_caps`) are shown beside them.

The rows without a user or team are explained where they appear
(`metis.web.explain`): provider-reported spend that bypassed Metis versus
keys and plugins without a user or team, with a link to the reconciliation.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from metis.analytics import service
from metis.analytics.params import Filters, Window
from metis.analytics.views import usage
from metis.db.tables import ingest_runs, sync_windows
from metis.identity.keys import list_keys
from metis.identity.teams import list_teams
from metis.identity.users import list_users
from metis.ingest.activity import list_activity
from metis.ledger.reconcile import Totals, pushed_sources, reconciled_cells
from metis.timeutil import day_start, parse_iso, utcnow
from metis.web import soft_caps
from metis.web.charts import cap_bar, day_range, stacked_bars
from metis.web.explain import no_group_note
from metis.web.params import PageQuery
from metis.web.tables import Column, Table, usd
from metis.workspaces import list_workspaces

Ctx = dict[str, Any]
TOP_N = 10
MAX_SERIES = 8
GATEWAY = Filters(source="gateway")


def today_window(today: date) -> Window:
    return Window(day_start(today), day_start(today + timedelta(days=1)))


def month_window(today: date) -> Window:
    first = today.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return Window(day_start(first), day_start(nxt))


def _dec(v: Any) -> Decimal:
    return Decimal(0) if v is None else Decimal(v)


# ---------------------------------------------------------------- overview


def _spend_chart(conn: Connection, q: PageQuery) -> tuple[Any, Table]:
    dim = "team_id" if q.stack == "team" else "source"
    rows = usage(conn, q.view, q.window, q.filters, ["usage_date", dim])
    names: dict[str | None, str] = {None: "(no team)" if dim == "team_id" else "(none)"}
    if dim == "team_id":
        names.update({t.id: t.name for t in list_teams(conn)})
    per: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for a in rows:
        name = names.get(a.dims[dim]) or str(a.dims[dim])
        v = usd(a.cost_nanousd) or Decimal(0)
        per[name][a.dims["usage_date"]] += v
        totals[name] += v
    ordered = sorted(totals, key=lambda n: (-totals[n], n))
    if len(ordered) > MAX_SERIES:
        keep, rest = ordered[: MAX_SERIES - 1], ordered[MAX_SERIES - 1 :]
        other: dict[date, Decimal] = defaultdict(Decimal)
        for n in rest:
            for d, v in per[n].items():
                other[d] += v
        series = [(n, dict(per[n])) for n in keep] + [("other", dict(other))]
    else:
        series = [(n, dict(per[n])) for n in ordered]
    days = day_range(q.start, q.last)
    label = "team" if q.stack == "team" else "source"
    chart = stacked_bars(days, series, title=f"Spend per day by {label} ({q.view} view)")
    table = Table(
        id="spend_by_day",
        title=f"Spend per day by {label}",
        columns=[
            Column("day", "day"),
            Column(label, label),
            Column("cost_usd", "cost", "usd"),
        ],
        rows=[
            {"day": d.isoformat(), label: n, "cost_usd": per[n][d]}
            for d in days
            for n in ordered
            if per[n].get(d)
        ],
    )
    return chart, table


def _cost_table(
    conn: Connection, q: PageQuery, group_by: str, table_id: str, title: str
) -> tuple[Table, dict[str, Any]]:
    res = service.cost(conn, q.window, q.filters, q.view, group_by)
    if group_by == "user":
        cols = [Column("display_name", "user"), Column("user_id", "user id", hidden=True)]
    else:
        cols = [Column(group_by, group_by)]
    cols += [
        Column("cost_usd", "cost", "usd"),
        Column("call_count", "calls", "int"),
        Column("input_tokens", "input tokens", "int"),
        Column("output_tokens", "output tokens", "int"),
    ]
    rows = res["data"]
    note = None
    if group_by == "user":
        rows = [{**r, "display_name": r["display_name"] or "(no user)"} for r in rows]
        note = no_group_note(conn, q, "user_id")
    table = Table(id=table_id, title=title, columns=cols, rows=rows, note=note)
    return table, res


def _caps_tables(conn: Connection, today: date) -> list[Table]:
    """Teams and keys with caps: today's (and this month's) gateway spend against them.

    Soft caps (routing rules) are drawn as ticks on the bars and listed beside them.
    """
    soft, _ = soft_caps.load()
    t_soft_day, t_soft_month = (
        soft_caps.of(soft, "team", "day"),
        soft_caps.of(soft, "team", "month"),
    )
    k_soft = soft_caps.of(soft, "key", "day")
    t_day = {
        r["team_id"]: r for r in service.by_team(conn, today_window(today), GATEWAY, "raw")["data"]
    }
    t_month = {
        r["team_id"]: r for r in service.by_team(conn, month_window(today), GATEWAY, "raw")["data"]
    }
    team_rows = []
    for t in list_teams(conn):
        if t.daily_cap_nanousd is None and t.monthly_cap_nanousd is None:
            continue
        today_usd = _dec(t_day.get(t.id, {}).get("cost_usd"))
        month_usd = _dec(t_month.get(t.id, {}).get("cost_usd"))
        team_rows.append(
            {
                "team": t.name,
                "team_id": t.id,
                "today_usd": today_usd,
                "daily_cap_usd": usd(t.daily_cap_nanousd),
                "daily_bar": cap_bar(
                    today_usd,
                    usd(t.daily_cap_nanousd),
                    label=f"{t.name} today",
                    soft=soft_caps.thresholds(t_soft_day),
                ),
                "month_usd": month_usd,
                "monthly_cap_usd": usd(t.monthly_cap_nanousd),
                "monthly_bar": cap_bar(
                    month_usd,
                    usd(t.monthly_cap_nanousd),
                    label=f"{t.name} this month",
                    soft=soft_caps.thresholds(t_soft_month),
                ),
                "soft_caps": "; ".join(c.text() for c in t_soft_day + t_soft_month),
                "disabled": t.disabled,
            }
        )
    k_day = {
        r["key_id"]: r for r in service.by_key(conn, today_window(today), GATEWAY, "raw")["data"]
    }
    key_rows = []
    for k in list_keys(conn, include_revoked=False):
        if k.daily_cap_nanousd is None:
            continue
        spent = _dec(k_day.get(k.id, {}).get("cost_usd"))
        key_rows.append(
            {
                "key": k.name,
                "key_id": k.id,
                "today_usd": spent,
                "daily_cap_usd": usd(k.daily_cap_nanousd),
                "daily_bar": cap_bar(
                    spent,
                    usd(k.daily_cap_nanousd),
                    label=f"key {k.name}",
                    soft=soft_caps.thresholds(k_soft),
                ),
                "soft_caps": "; ".join(c.text() for c in k_soft),
            }
        )
    return [
        *_user_caps_tables(conn, today),
        Table(
            id="team_caps",
            title=f"Teams today ({today.isoformat()}) and this month vs caps",
            columns=[
                Column("team", "team"),
                Column("daily_bar", "today vs daily cap", "bar"),
                Column("monthly_bar", "month vs monthly cap", "bar"),
                Column("soft_caps", "soft caps (routing rules)"),
                # the bars' figures, exact, for the CSV
                Column("team_id", "team id", hidden=True),
                Column("today_usd", "today", "usd", hidden=True),
                Column("daily_cap_usd", "daily cap", "usd", hidden=True),
                Column("month_usd", "this month", "usd", hidden=True),
                Column("monthly_cap_usd", "monthly cap", "usd", hidden=True),
            ],
            rows=team_rows,
            empty="No team has a cap.",
            note="Gateway spend across all workspaces: what the hard caps count. Dashed ticks "
            "on the bars are soft caps: routing rules that send requests to cheaper models "
            "from there.",
        ),
        Table(
            id="key_caps",
            title="Keys with a daily cap, today",
            columns=[
                Column("key", "key"),
                Column("key_id", "key id", "id"),
                Column("daily_bar", "today vs daily cap", "bar"),
                Column("soft_caps", "soft caps (routing rules)"),
                Column("today_usd", "today", "usd", hidden=True),
                Column("daily_cap_usd", "daily cap", "usd", hidden=True),
            ],
            rows=key_rows,
            empty="No active key has a daily cap.",
        ),
    ]


def user_cap_rows(conn: Connection, today: date) -> list[dict[str, Any]]:
    """Users with a cap: today's and this month's gateway spend against it (what caps count)."""
    u_day = {
        r["user_id"]: r
        for r in service.cost(conn, today_window(today), GATEWAY, "raw", "user")["data"]
    }
    u_month = {
        r["user_id"]: r
        for r in service.cost(conn, month_window(today), GATEWAY, "raw", "user")["data"]
    }
    rows = []
    for u in list_users(conn):
        if u.daily_cap_nanousd is None and u.monthly_cap_nanousd is None:
            continue
        today_usd = _dec(u_day.get(u.id, {}).get("cost_usd"))
        month_usd = _dec(u_month.get(u.id, {}).get("cost_usd"))
        rows.append(
            {
                "user": u.alias,
                "user_id": u.id,
                "today_usd": today_usd,
                "daily_cap_usd": usd(u.daily_cap_nanousd),
                "daily_bar": cap_bar(today_usd, usd(u.daily_cap_nanousd), label=f"{u.alias} today"),
                "month_usd": month_usd,
                "monthly_cap_usd": usd(u.monthly_cap_nanousd),
                "monthly_bar": cap_bar(
                    month_usd, usd(u.monthly_cap_nanousd), label=f"{u.alias} this month"
                ),
                "disabled": u.disabled,
            }
        )
    return rows


def _user_caps_tables(conn: Connection, today: date) -> list[Table]:
    return [
        Table(
            id="user_caps",
            title=f"Users today ({today.isoformat()}) and this month vs caps",
            columns=[
                Column("user", "user"),
                Column("user_id", "user id", hidden=True),
                Column("today_usd", "today", "usd"),
                Column("daily_cap_usd", "daily cap", "usd"),
                Column("daily_bar", "today vs daily cap", "bar"),
                Column("month_usd", "this month", "usd"),
                Column("monthly_cap_usd", "monthly cap", "usd"),
                Column("monthly_bar", "month vs monthly cap", "bar"),
            ],
            rows=user_cap_rows(conn, today),
            empty="No user has a cap (`metis gateway user set-cap`).",
            note="Gateway spend over all the user's keys: what the hard caps count.",
        )
    ]


def overview(conn: Connection, q: PageQuery) -> Ctx:
    chart, by_day = _spend_chart(conn, q)
    models, res = _cost_table(conn, q, "model", "top_models", "Top models")
    users_t, _ = _cost_table(conn, q, "user", "top_users", "Top users")
    today = utcnow().date()
    return {
        "total": res["total"],
        "partial_coverage": res["partial_coverage"],
        "provider_lagging": [
            {**lag, "as_of": as_of(parse_iso(lag["as_of"]))} for lag in res["provider_lagging"]
        ],
        "chart": chart,
        "chart_note": no_group_note(conn, q, "team_id") if q.stack == "team" else None,
        "tables": {
            "spend_by_day": by_day,
            "top_models": models,
            "top_users": users_t,
            **{t.id: t for t in _caps_tables(conn, today)},
        },
        "top_n": TOP_N,
    }


# ---------------------------------------------------------------- teams


def teams(conn: Connection, q: PageQuery) -> Ctx:
    today = utcnow().date()
    soft, soft_error = soft_caps.load()
    soft_day, soft_month = soft_caps.of(soft, "team", "day"), soft_caps.of(soft, "team", "month")
    window = {r["team_id"]: r for r in service.by_team(conn, q.window, q.filters, q.view)["data"]}
    t_day = {
        r["team_id"]: r for r in service.by_team(conn, today_window(today), GATEWAY, "raw")["data"]
    }
    t_month = {
        r["team_id"]: r for r in service.by_team(conn, month_window(today), GATEWAY, "raw")["data"]
    }
    users = {u.id: u for u in list_users(conn)}
    key_users: dict[str, set[str]] = defaultdict(set)
    for k in list_keys(conn, workspace=q.workspace_id, include_revoked=False):
        if k.team_id and k.user_id:
            key_users[k.team_id].add(k.user_id)
    rows, user_rows = [], []
    for t in list_teams(conn):
        w = window.get(t.id, {})
        today_usd = _dec(t_day.get(t.id, {}).get("cost_usd"))
        month_usd = _dec(t_month.get(t.id, {}).get("cost_usd"))
        spent_users = {u["user_id"]: u for u in w.get("by_user", [])}
        member_ids = sorted(
            set(key_users.get(t.id, set())) | {u for u in spent_users if u},
            key=lambda u: users[u].alias if u in users else u,
        )
        rows.append(
            {
                "team": t.name,
                "team_id": t.id,
                "status": "disabled" if t.disabled else "active",
                "cost_usd": _dec(w.get("cost_usd")),
                "call_count": int(w.get("call_count") or 0),
                "today_usd": today_usd,
                "daily_cap_usd": usd(t.daily_cap_nanousd),
                "daily_bar": cap_bar(
                    today_usd,
                    usd(t.daily_cap_nanousd),
                    label=f"{t.name} today",
                    soft=soft_caps.thresholds(soft_day),
                ),
                "month_usd": month_usd,
                "monthly_cap_usd": usd(t.monthly_cap_nanousd),
                "monthly_bar": cap_bar(
                    month_usd,
                    usd(t.monthly_cap_nanousd),
                    label=f"{t.name} this month",
                    soft=soft_caps.thresholds(soft_month),
                ),
                "users": ", ".join(users[u].alias if u in users else u for u in member_ids),
                "disabled": t.disabled,
            }
        )
        for uid in member_ids:
            su = spent_users.get(uid, {})
            user_rows.append(
                {
                    "team": t.name,
                    "user": users[uid].alias if uid in users else uid,
                    "user_id": uid,
                    "cost_usd": _dec(su.get("cost_usd")),
                    "call_count": int(su.get("call_count") or 0),
                }
            )
    nobody = window.get(None)
    teams_t = Table(
        id="teams",
        title="Teams",
        columns=[
            Column("team", "team"),
            Column("status", "status"),
            Column("cost_usd", "spend in range", "usd"),
            Column("call_count", "calls", "int"),
            Column("daily_bar", "today vs daily cap", "bar"),
            Column("monthly_bar", "this month vs monthly cap", "bar"),
            Column("users", "users"),
            # the bars' figures, exact, for the CSV
            Column("team_id", "team id", hidden=True),
            Column("today_usd", "today", "usd", hidden=True),
            Column("daily_cap_usd", "daily cap", "usd", hidden=True),
            Column("month_usd", "this month", "usd", hidden=True),
            Column("monthly_cap_usd", "monthly cap", "usd", hidden=True),
        ],
        rows=rows,
        empty="No teams yet (`metis gateway team add`).",
        note="Today and this month: gateway spend across all workspaces (what caps count). "
        "Spend in range follows the filters above. Dashed ticks on the bars are soft caps "
        "(routing rules, listed below).",
        row_class=lambda r: "muted" if r["disabled"] else "",
    )
    soft_t = Table(
        id="soft_caps",
        title="Soft caps (routing rules)",
        columns=[
            Column("rule", "rule"),
            Column("scope", "spend of"),
            Column("period", "per"),
            Column("threshold_usd", "over", "usd"),
            Column("use", "routes to"),
            Column("conditions", "only when"),
        ],
        rows=[
            {
                "rule": c.rule,
                "scope": c.scope,
                "period": c.period,
                "threshold_usd": c.threshold,
                "use": c.use,
                "conditions": "; ".join(
                    x
                    for x in (
                        f"model {', '.join(c.models)}" if c.models else "",
                        f"workspace {c.workspace}" if c.workspace else "",
                        "other conditions" if c.others else "",
                    )
                    if x
                ),
            }
            for c in soft
        ],
        empty=soft_error or "No routing rule has a spend threshold (see docs/routing.md).",
        note="Past a soft cap the gateway sends the request to a cheaper model instead of "
        "refusing it (hard caps refuse). Rules live in routing.yaml; the gateway reloads them "
        "within a second.",
    )
    users_t = Table(
        id="team_users",
        title="Users per team (spend in range)",
        columns=[
            Column("team", "team"),
            Column("user", "user"),
            Column("user_id", "user id", "id"),
            Column("cost_usd", "spend in range", "usd"),
            Column("call_count", "calls", "int"),
        ],
        rows=user_rows,
        empty="No team has users yet.",
    )
    return {
        "tables": {"teams": teams_t, "soft_caps": soft_t, "team_users": users_t},
        "no_team_usd": _dec(nobody.get("cost_usd")) if nobody else Decimal(0),
        "no_team_note": no_group_note(conn, q, "team_id"),
        "soft_error": soft_error,
        "team_list": list_teams(conn),
    }


# ---------------------------------------------------------------- keys and users


def keys_and_users(conn: Connection, q: PageQuery) -> Ctx:
    today = utcnow().date()
    spend = {r["key_id"]: r for r in service.by_key(conn, q.window, q.filters, q.view)["data"]}
    k_day = {
        r["key_id"]: r for r in service.by_key(conn, today_window(today), GATEWAY, "raw")["data"]
    }
    users = {u.id: u for u in list_users(conn)}
    team_names = {t.id: t.name for t in list_teams(conn)}
    ws_names = {w.id: w.name for w in list_workspaces(conn)}
    key_rows = []
    for k in reversed(list_keys(conn, workspace=q.workspace_id)):
        s = spend.get(k.id, {})
        key_rows.append(
            {
                "name": k.name,
                "key_id": k.id,
                "prefix": k.display_prefix + "…",
                "workspace": ws_names.get(k.workspace_id, k.workspace_id),
                "user": users[k.user_id].alias if k.user_id in users else k.user_id,
                "team": team_names.get(k.team_id or "", k.team_id),
                "status": "revoked" if k.revoked else "active",
                "revoke_reason": k.revoke_reason,
                "created_at": k.created_at,
                "daily_cap_usd": usd(k.daily_cap_nanousd),
                "today_usd": _dec(k_day.get(k.id, {}).get("cost_usd")),
                "cost_usd": _dec(s.get("cost_usd")),
                "call_count": int(s.get("call_count") or 0),
                "allowed_models": ", ".join(k.allowed_models) if k.allowed_models else "",
                "revoked": k.revoked,
            }
        )
    by_user = {
        r["user_id"]: r for r in service.cost(conn, q.window, q.filters, q.view, "user")["data"]
    }
    active: dict[str, int] = defaultdict(int)
    for k in list_keys(conn, include_revoked=False):
        if k.user_id:
            active[k.user_id] += 1
    user_rows = [
        {
            "alias": u.alias,
            "user_id": u.id,
            "display_name": u.display_name,
            "status": "disabled" if u.disabled else "active",
            "active_keys": active.get(u.id, 0),
            "cost_usd": _dec(by_user.get(u.id, {}).get("cost_usd")),
            "daily_cap_usd": usd(u.daily_cap_nanousd),
            "monthly_cap_usd": usd(u.monthly_cap_nanousd),
            "disabled": u.disabled,
        }
        for u in users.values()
    ]
    keys_t = Table(
        id="keys",
        title="Gateway keys",
        columns=[
            Column("name", "name"),
            Column("key_id", "key id", "id"),
            Column("prefix", "prefix"),
            Column("workspace", "workspace"),
            Column("user", "user"),
            Column("team", "team"),
            Column("status", "status"),
            Column("created_at", "created", "datetime", hidden=True),
            Column("daily_cap_usd", "daily cap", "usd"),
            Column("today_usd", "today (gateway)", "usd"),
            Column("cost_usd", "spend in range", "usd"),
            Column("call_count", "calls", "int"),
            Column("allowed_models", "models"),
            Column("revoke_reason", "revoke reason"),
        ],
        rows=key_rows,
        empty="No keys yet: issue one above.",
        row_class=lambda r: "muted" if r["revoked"] else "",
    )
    users_t = Table(
        id="users",
        title="Users",
        columns=[
            Column("alias", "alias"),
            Column("user_id", "user id", "id"),
            Column("display_name", "name"),
            Column("status", "status"),
            Column("active_keys", "active keys", "int"),
            Column("cost_usd", "spend in range", "usd"),
            Column("daily_cap_usd", "daily cap", "usd"),
            Column("monthly_cap_usd", "monthly cap", "usd"),
        ],
        rows=user_rows,
        empty="No users yet.",
        row_class=lambda r: "muted" if r["disabled"] else "",
    )
    return {
        "tables": {"keys": keys_t, "users": users_t},
        "form_users": [u for u in users.values() if not u.disabled],
        "form_teams": [t for t in list_teams(conn) if not t.disabled],
    }


# ---------------------------------------------------------------- reconciliation


def reconciliation(conn: Connection, q: PageQuery) -> Ctx:
    cells = reconciled_cells(conn, q.start, q.end, q.workspace_id)
    ws_names = {w.id: w.name for w in list_workspaces(conn)}
    groups: dict[tuple[date, str], dict[str, Any]] = {}
    zero = Totals()
    for c in cells:
        g = groups.setdefault(
            (c.day, c.provider),
            {
                "provider_reported": zero,
                "gateway": zero,
                "plugin": zero,
                "duplicates": zero,
                "attributed": zero,
                "unattributed": zero,
                "drift": zero,
                "reconciled": zero,
                "covered": 0,
                "cells": 0,
                "flags": set(),
                "as_of": None,
            },
        )
        if c.lagging and c.provider_synced_at is not None:
            g["as_of"] = min(filter(None, (g["as_of"], c.provider_synced_at)))
        g["provider_reported"] += c.provider_reported
        g["gateway"] += c.gateway
        g["plugin"] += c.plugin
        g["duplicates"] += c.plugin_duplicate + c.plugin_via_gateway
        g["attributed"] += c.attributed
        g["unattributed"] += c.unattributed
        g["drift"] += c.drift
        g["reconciled"] += c.reconciled
        g["covered"] += 1 if c.covered else 0
        g["cells"] += 1
        g["flags"].update(c.flags)

    def money(t: Totals) -> Decimal:
        return usd(t.cost_nanousd) or Decimal(0)

    rows: list[dict[str, Any]] = []
    for (day, provider), g in sorted(groups.items()):
        rows.append(
            {
                "day": day.isoformat(),
                "provider": provider,
                "provider_reported_usd": money(g["provider_reported"]),
                "gateway_usd": money(g["gateway"]),
                "plugin_usd": money(g["plugin"]),
                "duplicates_usd": money(g["duplicates"]),
                "unattributed_usd": money(g["unattributed"]),
                "drift_usd": money(g["drift"]),
                "reconciled_usd": money(g["reconciled"]),
                "coverage": f"{g['covered']}/{g['cells']} cells"
                + (f", day in progress, {as_of(g['as_of'])}" if g["as_of"] else ""),
                "flags": ", ".join(sorted(g["flags"])),
            }
        )
    total: dict[str, Any] = {"day": "total", "provider": ""}
    for k in (
        "provider_reported_usd",
        "gateway_usd",
        "plugin_usd",
        "duplicates_usd",
        "unattributed_usd",
        "drift_usd",
        "reconciled_usd",
    ):
        total[k] = sum((Decimal(r[k]) for r in rows), Decimal(0))

    def flag(r: dict[str, Any]) -> str:
        """Highlight by the cells' flags (drift/unattributed in any measure, not only cost)."""
        flags = set(str(r.get("flags") or "").split(", "))
        return " ".join(c for c in ("drift", "unattributed") if c in flags)

    money_cols = [
        Column("provider_reported_usd", "provider-reported", "usd"),
        Column("gateway_usd", "gateway", "usd"),
        Column("plugin_usd", "plugin", "usd"),
        Column("duplicates_usd", "plugin dup. (not counted)", "usd"),
        Column("unattributed_usd", "unattributed", "usd"),
        Column("drift_usd", "drift", "usd"),
        Column("reconciled_usd", "reconciled", "usd"),
    ]
    per_day = Table(
        id="reconciliation",
        title="Per day and provider",
        columns=[
            Column("day", "day"),
            Column("provider", "provider"),
            *money_cols,
            Column("coverage", "provider coverage"),
            Column("flags", "flags"),
        ],
        rows=rows,
        footer=total,
        row_class=flag,
        note="Covered cells take the provider's figure; unattributed = provider − attributed "
        "(traffic that bypassed Metis); drift = attributed above the provider's figure. "
        "A day still in progress (provider_lagging) takes, per measure, the larger of the "
        "provider's figure as of its last sync and the attributed one: it is never drift.",
    )
    cell_rows = [
        {
            "day": c.day.isoformat(),
            "workspace": ws_names.get(c.workspace_id, c.workspace_id),
            "provider": c.provider,
            "model": c.model,
            "basis": ("provider" if c.covered else "gateway+plugin")
            + (
                f" ({as_of(c.provider_synced_at)}, lower bound)"
                if c.lagging and c.provider_synced_at
                else ""
            ),
            "provider_reported_usd": money(c.provider_reported),
            "gateway_usd": money(c.gateway),
            "plugin_usd": money(c.plugin),
            "duplicates_usd": money(c.plugin_duplicate + c.plugin_via_gateway),
            "unattributed_usd": money(c.unattributed),
            "drift_usd": money(c.drift),
            "reconciled_usd": money(c.reconciled),
            "flags": ", ".join(c.flags),
        }
        for c in cells
    ]
    cells_t = Table(
        id="cells",
        title="Cells (workspace, provider, model, day)",
        columns=[
            Column("day", "day"),
            Column("workspace", "workspace"),
            Column("provider", "provider"),
            Column("model", "model"),
            Column("basis", "basis"),
            *money_cols,
            Column("flags", "flags"),
        ],
        rows=cell_rows,
        row_class=flag,
    )
    return {
        "tables": {
            "reconciliation": per_day,
            "cells": cells_t,
            "sources": _pushed_sources_table(conn, q),
        },
        "total": total,
    }


def _pushed_sources_table(conn: Connection, q: PageQuery) -> Table:
    """Per pushed source (plugins, agent telemetry): counted, twins of gateway calls, via it."""
    parts = pushed_sources(conn, q.start, q.end, q.workspace_id)
    by_source: dict[str, dict[str, Totals]] = defaultdict(dict)
    for (source, klass), t in parts.items():
        by_source[source][klass] = t
    rows = []
    zero = Totals()
    for source, classes in sorted(by_source.items()):
        counted = classes.get("plugin", zero)
        dup = classes.get("plugin_duplicate", zero)
        via = classes.get("plugin_via_gateway", zero)
        rows.append(
            {
                "source": source,
                "counted_calls": counted.request_count,
                "counted_usd": usd(counted.cost_nanousd) or Decimal(0),
                "duplicate_calls": dup.request_count,
                "via_gateway_calls": via.request_count,
                "not_counted_usd": usd(dup.cost_nanousd + via.cost_nanousd) or Decimal(0),
            }
        )
    return Table(
        id="sources",
        title="Pushed sources (agent plugins and telemetry)",
        columns=[
            Column("source", "source"),
            Column("counted_calls", "counted calls", "int"),
            Column("counted_usd", "counted", "usd"),
            Column("duplicate_calls", "twins of gateway calls", "int"),
            Column("via_gateway_calls", "sent through the gateway", "int"),
            Column("not_counted_usd", "not counted again", "usd"),
        ],
        rows=rows,
        empty="No pushed usage in this range.",
        note="Twins carry a gateway call's response id; calls sent through the gateway name "
        "its URL (METIS_GATEWAY_URLS) or come from an ingest token set --via-gateway. Both "
        "are the gateway's own rows and are counted there (docs/ingest-otel.md).",
    )


# ---------------------------------------------------------------- ingestion


def _sync_status(h: dict[str, Any], syncable: bool) -> str:
    if h["removed"]:
        return "removed"
    if not syncable:
        return "inference only"  # the gateway forwards with it; nothing to sync
    if h["healthy"]:
        return "healthy"
    return "error" if h["last_error"] else "never synced"


def as_of(synced_at: datetime) -> str:
    """How a figure of a day still in progress is labelled: ``as of sync 14:05Z``."""
    return f"as of sync {synced_at.astimezone(UTC).strftime('%H:%MZ')}"


def ingestion(conn: Connection, q: PageQuery) -> Ctx:
    health = service.ingest_health(conn, q.window, q.workspace_id)["data"]
    ws_names = {w.id: w.name for w in list_workspaces(conn)}
    days_total = q.days
    sw = sync_windows.c
    complete: dict[str, int] = defaultdict(int)
    in_progress: dict[str, list[str]] = defaultdict(list)
    for cid, w_start, w_end, done_at in conn.execute(
        select(sw.credential_id, sw.window_start, sw.window_end, sw.completed_at).where(
            sw.window_start >= q.window.start, sw.window_start < q.window.end
        )
    ):
        # A day fetched before it ended is a lower bound, never a complete day.
        if done_at >= w_end:
            complete[str(cid)] += 1
        else:
            in_progress[str(cid)].append(f"{w_start.date().isoformat()} {as_of(done_at)}")
    rows = []
    for h in health:
        cid = h["credential_id"]
        n = complete.get(cid, 0)
        partial = in_progress.get(cid, [])
        rows.append(
            {
                **h,
                "workspace": ws_names.get(h["workspace_id"] or "", h["workspace_id"]),
                "days_synced": f"{n}/{days_total}",
                "days_synced_n": n,
                "days_in_progress": "; ".join(sorted(partial)),
                "syncable": bool(h["syncable"]),
                "status": _sync_status(h, bool(h["syncable"])),
            }
        )
    creds_t = Table(
        id="credentials",
        title="Provider credentials",
        columns=[
            Column("credential_id", "credential", "id"),
            Column("workspace", "workspace"),
            Column("provider", "provider"),
            Column("mode", "mode", hidden=True),  # CSV only, like "last error at" below
            Column("status", "status"),
            Column("last_success_at", "last sync", "datetime"),
            Column("complete_through", "cursor (complete through)", "datetime"),
            Column("days_synced", "complete days in range"),
            Column("days_in_progress", "days in progress (lower bound)"),
            Column("runs", "runs in range", "int"),
            Column("failed_runs", "failed", "int"),
            Column("records_stored", "stored", "int"),
            # In the CSV only, as "mode": fourteen columns do not fit a 1280 px card; the
            # runs table below shows when each failed run happened.
            Column("last_error_at", "last error at", "datetime", hidden=True),
            Column("last_error", "last error"),
        ],
        rows=rows,
        empty="No provider credentials (`metis provider-key add`).",
        row_class=lambda r: "error" if r["last_error"] and r["healthy"] is False else "",
    )
    ir = ingest_runs.c
    runs_q = (
        select(ingest_runs)
        .where(ir.started_at >= q.window.start, ir.started_at < q.window.end)
        .order_by(ir.started_at.desc(), ir.id.desc())
        .limit(50)
    )
    if q.workspace_id is not None:
        runs_q = runs_q.where(ir.workspace_id == q.workspace_id)
    run_rows = []
    for r in conn.execute(runs_q).mappings():
        total_days = None
        done_days = None
        if r["window_start"] is not None and r["window_end"] is not None:
            total_days = max(1, (r["window_end"] - r["window_start"]).days)
            done_days = int(
                conn.execute(
                    select(func.count())
                    .select_from(sync_windows)
                    .where(
                        sw.credential_id == r["credential_id"],
                        sw.window_start >= r["window_start"],
                        sw.window_start < r["window_end"],
                        sw.completed_at >= sw.window_end,
                    )
                ).scalar_one()
            )
        run_rows.append(
            {
                "run_id": r["id"],
                "credential_id": r["credential_id"],
                "kind": r["kind"],
                "status": r["status"],
                "started_at": r["started_at"],
                "finished_at": r["finished_at"],
                "progress": f"{done_days}/{total_days} days" if total_days else "",
                "stored": r["stored"],
                "updated": r["updated"],
                "errors": r["errors"],
                "error_message": r["error_message"],
            }
        )
    runs_t = Table(
        id="runs",
        title="Sync and backfill runs (latest 50 in range)",
        columns=[
            Column("run_id", "run", "id"),
            Column("credential_id", "credential", "id"),
            Column("kind", "kind"),
            Column("status", "status"),
            Column("started_at", "started", "datetime"),
            Column("finished_at", "finished", "datetime"),
            Column("progress", "days complete"),
            Column("stored", "stored", "int"),
            Column("updated", "updated", "int"),
            Column("errors", "errors", "int"),
            Column("error_message", "error"),
        ],
        rows=run_rows,
        empty="No sync runs in this range.",
        row_class=lambda r: (
            "error" if r["status"] == "failed" else ("running" if r["status"] == "running" else "")
        ),
    )
    return {"tables": {"credentials": creds_t, "runs": runs_t, "tokens": _tokens_table(conn, q)}}


_CHANNELS = {
    "push": "push API",
    "otel_logs": "OTLP logs",
    "otel_traces": "OTLP traces",
    "otel_metrics": "OTLP metrics (not spend)",
}


def _tokens_table(conn: Connection, q: PageQuery) -> Table:
    """Every ingest token and what it last sent, per channel (push API, OTLP signals)."""
    ws_names = {w.id: w.name for w in list_workspaces(conn)}
    aliases = {u.id: u.alias for u in list_users(conn)}
    rows = []
    for a in list_activity(conn, q.workspace_id):
        rows.append(
            {
                "token_id": a.token_id,
                "name": a.token_name + (" (revoked)" if a.revoked else ""),
                "workspace": ws_names.get(a.workspace_id, a.workspace_id),
                "via_gateway": a.via_gateway,
                "user": aliases.get(a.user_id or "", a.user_id),
                "channel": _CHANNELS.get(a.channel or "", a.channel) or "never used",
                "last_seen_at": a.last_seen_at,
                "requests": a.requests,
                "records": a.records,
                "accepted": a.accepted,
                "rejected": a.rejected,
            }
        )
    return Table(
        id="tokens",
        title="Ingest tokens: last data seen",
        columns=[
            Column("token_id", "token"),
            Column("name", "name"),
            Column("workspace", "workspace"),
            Column("via_gateway", "via gateway", "bool"),
            Column("user", "user"),
            Column("channel", "channel"),
            Column("last_seen_at", "last data seen", "datetime"),
            Column("requests", "requests", "int"),
            Column("records", "records received", "int"),
            Column("accepted", "usage items stored", "int"),
            Column("rejected", "rejected", "int"),
        ],
        rows=rows,
        empty="No ingest tokens (`metis ingest token create`).",
        row_class=lambda r: "error" if r["rejected"] else "",
        note="Records: usage items (push API), log records, spans or metric data points (OTLP). "
        "Metrics are a cross-check only: they are never turned into spend.",
    )
