"""Analytics answers as JSON-ready dicts: one function per endpoint.

HTTP handlers (`metis.analytics.api`) and the CLI (`metis report`) call these
with a connection and already-resolved parameters. Money leaves as exact
Decimals (`metis.money.usd_json`), summed as integer nano-USD before that, so
``sum(by_user[].cost_usd) == cost_usd`` holds exactly.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from metis import pricing
from metis.analytics.latency import latencies
from metis.analytics.params import Filters, ParamError, Window, guard
from metis.analytics.query import GROUP_DIMS, Agg, filter_conds, partial_coverage
from metis.analytics.views import View, usage
from metis.db.tables import (
    events,
    gateway_keys,
    ingest_runs,
    provider_credentials,
    sync_cursors,
    teams,
    users,
    workspaces,
)
from metis.money import usd_json
from metis.timeutil import day_start, iso, utcnow

JSON = dict[str, Any]


def envelope(window: Window, view: View | None, data: Any, **extra: Any) -> JSON:
    """The common response shape: window, pricing version, view, data."""
    out: JSON = {
        "window": window.as_json(),
        "current_pricing_version": pricing.PRICING_VERSION,
    }
    if view is not None:
        out["view"] = view
    out.update(extra)
    out["data"] = data
    return out


def provider_lagging(conn: Connection, window: Window, filters: Filters) -> list[JSON]:
    """Days in ``window`` whose provider figure is as of a sync made before the day ended.

    A reconciled answer covering such a day (today, usually) carries them as
    ``provider_lagging``: that day's provider figure is a lower bound "as of
    sync ``as_of``", reconciled per measure as the larger of it and the
    attributed figure (docs/reconciliation.md).
    """
    from metis.ledger.reconcile import lagging_days

    d0 = window.start.date()
    d1 = window.end.date() + (
        timedelta(days=1) if day_start(window.end.date()) < window.end else timedelta()
    )
    return [
        {"workspace_id": ws, "provider": prov, "day": d.isoformat(), "as_of": iso(at)}
        for ws, prov, d, at in lagging_days(conn, d0, d1, filters.workspace_id)
    ]


def _ratio(num: int, den: int) -> Decimal | None:
    return None if den == 0 else (Decimal(num) / Decimal(den)).quantize(Decimal("0.000001"))


def _measures(a: Agg) -> JSON:
    return {
        "cost_usd": usd_json(a.cost_nanousd),
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cached_input_tokens": a.cached_input_tokens,
        "cache_creation_input_tokens": a.cache_creation_input_tokens,
        "reasoning_tokens": a.reasoning_tokens,
        "call_count": a.request_count,
        "error_count": a.error_count,
        "record_count": a.record_count,
    }


def _order(rows: list[Agg], tiebreak: str | None) -> list[Agg]:
    def key(a: Agg) -> tuple[int, int, str]:
        v = a.dims.get(tiebreak) if tiebreak else None
        return (-a.cost_nanousd, 1 if v is None else 0, "" if v is None else str(v))

    return sorted(rows, key=key)


def _names(conn: Connection, table: Any, col: str, ids: Iterable[str | None]) -> dict[str, Any]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    out: dict[str, Any] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        for row in conn.execute(select(table).where(table.c.id.in_(chunk))).mappings():
            out[row["id"]] = row if col == "*" else row[col]
    return out


def _total(rows: Iterable[Agg]) -> Agg:
    t = Agg(dims={})
    for a in rows:
        t.add(a)
    return t


def cost(conn: Connection, window: Window, filters: Filters, view: View, group_by: str) -> JSON:
    """``/analytics/cost``: totals grouped by one whitelisted dimension."""
    if group_by not in GROUP_DIMS:
        raise ParamError("invalid_group_by", f"group_by must be one of {', '.join(GROUP_DIMS)}")
    col = GROUP_DIMS[group_by]
    rows = usage(conn, view, window, filters, [col])
    grouped: dict[Any, Agg] = {a.dims[col]: a for a in rows}
    partial = partial_coverage(conn, window, filters)
    ordered = (
        sorted(grouped.values(), key=lambda a: a.dims[col])
        if group_by == "day"
        else _order(list(grouped.values()), col)
    )
    names: dict[str, Any] = {}
    user_rows: dict[str, Any] = {}
    aliases: dict[str, Any] = {}
    if group_by == "user":
        user_rows = _names(conn, users, "*", grouped)
        names = {k: r["display_name"] for k, r in user_rows.items()}
        aliases = {k: r["alias"] for k, r in user_rows.items()}
    elif group_by == "workspace":
        names = _names(conn, workspaces, "name", grouped)
    elif group_by == "team":
        names = _names(conn, teams, "name", grouped)
    elif group_by == "gateway_key":
        names = _names(conn, gateway_keys, "name", grouped)
    data: list[JSON] = []
    for a in ordered:
        v = a.dims[col]
        item: JSON = {group_by: v.isoformat() if group_by == "day" else v}
        if group_by in ("user", "team", "gateway_key"):
            item[{"user": "user_id", "team": "team_id", "gateway_key": "key_id"}[group_by]] = v
            item.pop(group_by)
            item["display_name" if group_by == "user" else "name"] = names.get(v) if v else None
            if group_by == "user":
                item["alias"] = aliases.get(v) if v else None
        elif group_by == "workspace":
            item["workspace_name"] = names.get(v) if v else None
        if group_by == "user":  # the user's hard caps, echoed like a team's (by_team)
            ur = user_rows.get(v) if v else None
            item["daily_cap_usd"] = usd_json(ur["daily_cap_nanousd"]) if ur else None
            item["monthly_cap_usd"] = usd_json(ur["monthly_cap_nanousd"]) if ur else None
        item.update(_measures(a))
        data.append(item)
    total = _total(grouped.values())
    lag = provider_lagging(conn, window, filters) if view == "reconciled" else []
    return envelope(
        window,
        view,
        data,
        group_by=group_by,
        partial_coverage=partial,
        provider_lagging=lag,
        total=_measures(total),
    )


def by_key(conn: Connection, window: Window, filters: Filters, view: View) -> JSON:
    """``/analytics/by_key``: per gateway key, with its user/team binding; null bucket last."""
    rows = usage(conn, view, window, filters, ["gateway_key_id"])
    keys = _names(conn, gateway_keys, "*", (a.dims["gateway_key_id"] for a in rows))
    ws_names = _names(conn, workspaces, "name", (k["workspace_id"] for k in keys.values()))
    aliases = _names(conn, users, "alias", (k["user_id"] for k in keys.values()))
    team_names = _names(conn, teams, "name", (k["team_id"] for k in keys.values()))
    data: list[JSON] = []
    for a in _order(rows, "gateway_key_id"):
        k = a.dims["gateway_key_id"]
        kr = keys.get(k) if k else None
        data.append(
            {
                "key_id": k,
                "name": kr["name"] if kr else None,
                "workspace_id": kr["workspace_id"] if kr else None,
                "workspace_name": ws_names.get(kr["workspace_id"]) if kr else None,
                "user_id": kr["user_id"] if kr else None,
                "user_alias": aliases.get(kr["user_id"]) if kr and kr["user_id"] else None,
                "team_id": kr["team_id"] if kr else None,
                "team_name": team_names.get(kr["team_id"]) if kr and kr["team_id"] else None,
                "revoked": (kr["revoked_at"] is not None) if kr else None,
                **_measures(a),
            }
        )
    return envelope(
        window,
        view,
        data,
        partial_coverage=partial_coverage(conn, window, filters),
    )


def by_team(conn: Connection, window: Window, filters: Filters, view: View) -> JSON:
    """``/analytics/by_team``: spec 003 §5 shape (caps echoed, by_user, null bucket, cost DESC)."""
    rows = usage(conn, view, window, filters, ["team_id", "user_id"])
    per_team: dict[str | None, Agg] = {}
    per_user: dict[str | None, dict[str | None, Agg]] = defaultdict(dict)
    for a in rows:
        t, u = a.dims["team_id"], a.dims["user_id"]
        per_team.setdefault(t, Agg(dims={"team_id": t})).add(a)
        per_user[t].setdefault(u, Agg(dims={"user_id": u})).add(a)
    team_rows = _names(conn, teams, "*", per_team)
    user_names = _names(conn, users, "display_name", (u for d in per_user.values() for u in d))
    user_aliases = _names(conn, users, "alias", (u for d in per_user.values() for u in d))
    data: list[JSON] = []
    for ta in _order(list(per_team.values()), "team_id"):
        t = ta.dims["team_id"]
        tr = team_rows.get(t) if t else None
        data.append(
            {
                "team_id": t,
                "team_name": tr["name"] if tr else None,
                "cost_usd": usd_json(ta.cost_nanousd),
                "input_tokens": ta.input_tokens,
                "output_tokens": ta.output_tokens,
                "cached_input_tokens": ta.cached_input_tokens,
                "cache_creation_input_tokens": ta.cache_creation_input_tokens,
                "call_count": ta.request_count,
                "error_count": ta.error_count,
                "daily_cap_usd": usd_json(tr["daily_cap_nanousd"]) if tr else None,
                "monthly_cap_usd": usd_json(tr["monthly_cap_nanousd"]) if tr else None,
                "by_user": [
                    {
                        "user_id": ua.dims["user_id"],
                        "display_name": user_names.get(ua.dims["user_id"])
                        if ua.dims["user_id"]
                        else None,
                        "alias": user_aliases.get(ua.dims["user_id"])
                        if ua.dims["user_id"]
                        else None,
                        "cost_usd": usd_json(ua.cost_nanousd),
                        "call_count": ua.request_count,
                    }
                    for ua in _order(list(per_user[t].values()), "user_id")
                ],
            }
        )
    return envelope(window, view, data, partial_coverage=partial_coverage(conn, window, filters))


def _price_groups(
    rows: Iterable[Agg], provider: str | None = None, model: str | None = None
) -> tuple[int, int]:
    """Sum of ``price`` over (provider, model, day) groups; returns (nanousd, unpriced_records)."""
    total, unpriced = 0, 0
    for a in rows:
        p = pricing.price(
            provider or a.dims["provider"],
            model or a.dims["model"],
            input_tokens=a.input_tokens,
            output_tokens=a.output_tokens,
            cached_input_tokens=min(a.cached_input_tokens, a.input_tokens),
            cache_creation_input_tokens=min(
                a.cache_creation_input_tokens,
                a.input_tokens - min(a.cached_input_tokens, a.input_tokens),
            ),
            reasoning_tokens=min(a.reasoning_tokens, a.output_tokens),
            at=day_start(a.dims["usage_date"]),
        )
        if p.cost_nanousd is None:
            unpriced += a.record_count
        else:
            total += p.cost_nanousd
    return total, unpriced


def cache_effectiveness(conn: Connection, window: Window, filters: Filters, view: View) -> JSON:
    """``/analytics/cache_effectiveness``: cached vs uncached input and savings, per model.

    ``savings_usd`` = price of the cached tokens as plain input minus their
    price as cache reads (current genai-prices data, per day), i.e. what
    caching saved; null when the model has no price.
    """
    rows = usage(conn, view, window, filters, ["provider", "model", "usage_date"])
    per_model: dict[tuple[str, str], list[Agg]] = defaultdict(list)
    for a in rows:
        per_model[(a.dims["provider"], a.dims["model"])].append(a)
    data: list[JSON] = []
    total_savings = 0
    for (prov, model), group in per_model.items():
        t = _total(group)
        savings: int | None = 0
        for a in group:
            cached = min(a.cached_input_tokens, a.input_tokens)
            if cached == 0:
                continue
            at = day_start(a.dims["usage_date"])
            plain = pricing.price(prov, model, input_tokens=cached, at=at).cost_nanousd
            read = pricing.price(
                prov, model, input_tokens=cached, cached_input_tokens=cached, at=at
            ).cost_nanousd
            if plain is None or read is None:
                savings = None
                break
            savings = (savings or 0) + plain - read
        total_savings += savings or 0
        data.append(
            {
                "provider": prov,
                "model": model,
                "input_tokens": t.input_tokens,
                "cached_input_tokens": t.cached_input_tokens,
                "cache_creation_input_tokens": t.cache_creation_input_tokens,
                "uncached_input_tokens": t.input_tokens
                - t.cached_input_tokens
                - t.cache_creation_input_tokens,
                "cache_hit_rate": _ratio(t.cached_input_tokens, t.input_tokens),
                "cost_usd": usd_json(t.cost_nanousd),
                "savings_usd": usd_json(savings),
            }
        )
    data.sort(key=lambda d: (-int(d["cached_input_tokens"]), str(d["provider"]), str(d["model"])))
    t = _total(rows)
    return envelope(
        window,
        view,
        data,
        partial_coverage=partial_coverage(conn, window, filters),
        total={
            "input_tokens": t.input_tokens,
            "cached_input_tokens": t.cached_input_tokens,
            "cache_hit_rate": _ratio(t.cached_input_tokens, t.input_tokens),
            "savings_usd": usd_json(total_savings),
        },
    )


def parse_baseline(value: str) -> tuple[str, str]:
    """``provider:model`` of the savings baseline; must be a model genai-prices knows."""
    prov, sep, model = value.partition(":")
    if not sep or not prov or not model or len(value) > 200:
        raise ParamError("invalid_baseline", "baseline must be provider:model, e.g. openai:gpt-4o")
    guard("baseline", prov)
    if not all(ch.isalnum() or ch in "-_.:/" for ch in model):
        raise ParamError("invalid_baseline", "baseline model has unexpected characters")
    if not pricing.has_price(prov, model):
        raise ParamError("unknown_baseline", f"no price known for {value!r}")
    return prov, model


def savings(
    conn: Connection, window: Window, filters: Filters, view: View, baseline: tuple[str, str]
) -> JSON:
    """``/analytics/savings``: actual cost vs every call priced on the baseline model."""
    rows = usage(conn, view, window, filters, ["provider", "model", "usage_date"])
    per_model: dict[tuple[str, str], list[Agg]] = defaultdict(list)
    for a in rows:
        per_model[(a.dims["provider"], a.dims["model"])].append(a)
    data: list[JSON] = []
    actual_total = baseline_total = 0
    for (prov, model), group in per_model.items():
        t = _total(group)
        base, _ = _price_groups(group, *baseline)
        actual_total += t.cost_nanousd
        baseline_total += base
        data.append(
            {
                "provider": prov,
                "model": model,
                "call_count": t.request_count,
                "actual_cost_usd": usd_json(t.cost_nanousd),
                "baseline_cost_usd": usd_json(base),
                "savings_usd": usd_json(base - t.cost_nanousd),
            }
        )
    data.sort(key=lambda d: (-Decimal(d["savings_usd"]), str(d["provider"]), str(d["model"])))
    return envelope(
        window,
        view,
        data,
        baseline=f"{baseline[0]}:{baseline[1]}",
        partial_coverage=partial_coverage(conn, window, filters),
        actual_cost_usd=usd_json(actual_total),
        baseline_cost_usd=usd_json(baseline_total),
        savings_usd=usd_json(baseline_total - actual_total),
    )


def _event_conds(type_: str, window: Window, filters: Filters) -> list[Any]:
    c = events.c
    return [
        c.type == type_,
        c.ts >= window.start,
        c.ts < window.end,
        *filter_conds(events, filters, source=False),
    ]


def routing(conn: Connection, window: Window, filters: Filters) -> JSON:
    """``/analytics/routing``: ``route.decided`` events: decisions, rules, fallbacks, failures.

    A fallback is a decision won by a candidate after the first
    (``winner_index > 0``); a hard failure has ``winner_index == -1``, bucketed
    by reason (``quota_exceeded`` for hard caps).
    """
    q = select(events.c.payload).where(*_event_conds("route.decided", window, filters))
    decisions = fallbacks = failures = 0
    rules: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    winners: dict[str, int] = defaultdict(int)
    for (payload,) in conn.execution_options(yield_per=5000).execute(q):
        p = payload or {}
        decisions += 1
        idx = int(p.get("winner_index", 0))
        rule = p.get("rule")
        if rule:
            rules[str(rule)] += 1
        if idx < 0:
            failures += 1
            reasons[str(p.get("reason") or "unknown")] += 1
            continue
        if idx > 0:
            fallbacks += 1
        cands = p.get("candidates") or []
        if idx < len(cands):
            winners[str(cands[idx])] += 1
    return envelope(
        window,
        None,
        partial_coverage=partial_coverage(conn, window, filters),
        data={
            "decisions": decisions,
            "fallbacks": fallbacks,
            "fallback_rate": _ratio(fallbacks, decisions),
            "hard_failures": failures,
            "hard_failures_by_reason": dict(
                sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            "rule_hits": dict(sorted(rules.items(), key=lambda kv: (-kv[1], kv[0]))),
            "winners": dict(sorted(winners.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
    )


def reliability(conn: Connection, window: Window, filters: Filters) -> JSON:
    """``/analytics/reliability``: error rate and latency percentiles per provider/model.

    From the gateway's request records (source ``gateway``). Call and error
    counts are exact, from the rollups (an error is a status other than
    ok/success, `metis.ledger.rollups.SUCCESS_STATUSES`). Latency percentiles
    (nearest-rank) and max come from `metis.analytics.latency`: the daily
    latency histograms (within 2%) unless a user, team or key filter asks for
    the raw records; ``latency_method`` and ``relative_error`` in the response
    say which, ``latency_sample`` how many latencies were read.
    """
    gw = replace(filters, source="gateway")
    counts = {
        (a.dims["provider"], a.dims["model"]): a
        for a in usage(conn, "raw", window, gw, ["provider", "model"])
    }
    total = sum(a.record_count for a in counts.values())
    lat = latencies(conn, window, filters, total)
    data: list[JSON] = []
    for k in sorted(counts, key=lambda k: (-counts[k].record_count, k)):
        a = counts[k]
        data.append(
            {
                "provider": k[0],
                "model": k[1],
                "calls": a.record_count,
                "errors": a.error_count,
                "error_rate": _ratio(a.error_count, a.record_count),
                "latency_ms": lat.of(k),
            }
        )
    return envelope(
        window,
        None,
        data,
        partial_coverage=partial_coverage(conn, window, filters),
        latency_method=lat.method,
        relative_error=lat.relative_error,
        latency_sample={"rows": lat.rows, "every": lat.every, "exact": lat.relative_error == 0},
    )


def ingest_health(conn: Connection, window: Window, workspace_id: str | None) -> JSON:
    """``/analytics/ingest``: sync health per provider credential (cursors + runs in the window).

    ``healthy`` is null for a credential without the usage_admin purpose: it is
    never synced, so it is neither healthy nor failing (``syncable`` is false).
    """
    pc = provider_credentials.c
    q = select(pc.id, pc.workspace_id, pc.provider, pc.mode, pc.purpose_usage_admin, pc.removed_at)
    if workspace_id is not None:
        q = q.where(pc.workspace_id == workspace_id)
    creds = {row.id: row for row in conn.execute(q.order_by(pc.id))}
    ws_names = _names(conn, workspaces, "name", (c.workspace_id for c in creds.values()))
    cursors: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(select(sync_cursors)).mappings():
        cursors[row["credential_id"]].append(row)
    ir = ingest_runs.c
    runs_q = (
        select(
            ir.credential_id,
            func.count().label("runs"),
            func.sum(ir.stored).label("stored"),
            func.sum(ir.updated).label("updated"),
            func.sum(ir.unchanged).label("unchanged"),
            func.sum(ir.errors).label("errors"),
            func.max(ir.started_at).label("last_started_at"),
        )
        .where(ir.started_at >= window.start, ir.started_at < window.end)
        .group_by(ir.credential_id)
    )
    runs = {row.credential_id: row for row in conn.execute(runs_q)}
    failed_q = (
        select(ir.credential_id, func.count())
        .where(ir.started_at >= window.start, ir.started_at < window.end, ir.status != "ok")
        .group_by(ir.credential_id)
    )
    failed: dict[str, int] = {str(k): int(n) for k, n in conn.execute(failed_q)}
    data: list[JSON] = []
    for cid in sorted(set(creds) | {k for k in runs if k}):
        cr = creds.get(cid)
        if cr is None and workspace_id is not None:
            continue
        ru = runs.get(cid)
        curs = cursors.get(cid, [])
        last_success = max(
            (c["last_success_at"] for c in curs if c["last_success_at"]), default=None
        )
        last_error_at = max((c["last_error_at"] for c in curs if c["last_error_at"]), default=None)
        last_error = next(
            (c["last_error"] for c in curs if c["last_error_at"] == last_error_at), None
        )
        # Never past today's start: a cursor written before issue 18 counted the day
        # in progress as complete (through tomorrow 00:00Z).
        today0 = day_start(utcnow().date())
        through = [min(c["complete_through"], today0) for c in curs if c["complete_through"]]
        # Only usage_admin credentials are synced; an inference-only one has no
        # health to report (null), rather than looking like a failing sync.
        syncable = bool(cr.purpose_usage_admin) if cr else None
        data.append(
            {
                "credential_id": cid,
                "workspace_id": cr.workspace_id if cr else None,
                "workspace_name": ws_names.get(cr.workspace_id) if cr else None,
                "provider": cr.provider if cr else None,
                "mode": cr.mode if cr else None,
                "removed": (cr.removed_at is not None) if cr else None,
                "complete_through": iso(min(through)) if through else None,
                "last_success_at": iso(last_success) if last_success else None,
                "last_error_at": iso(last_error_at) if last_error_at else None,
                "last_error": last_error,
                "runs": int(ru.runs) if ru else 0,
                "failed_runs": int(failed.get(cid, 0)),
                "records_stored": int(ru.stored or 0) if ru else 0,
                "records_updated": int(ru.updated or 0) if ru else 0,
                "records_unchanged": int(ru.unchanged or 0) if ru else 0,
                "last_run_at": iso(ru.last_started_at) if ru and ru.last_started_at else None,
                "syncable": syncable,
                "healthy": None
                if syncable is False
                else bool(last_success)
                and (
                    last_error_at is None
                    or (last_success is not None and last_success >= last_error_at)
                ),
            }
        )
    return envelope(window, None, data)
