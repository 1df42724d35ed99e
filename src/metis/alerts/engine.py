"""Crossing detection: decide when an alert fires, record it once, queue its deliveries.

Every alert has a dedupe key (kind, scope, scope id, period, threshold) that
is the primary key of ``alert_state``. Firing is an INSERT that exactly one
writer wins, in any process or replica, so an alert fires once per crossing
and period however many requests, sync runs or evaluator passes see the
condition. Conditions that recover (a failing or stale sync) flip the row
back to ``resolved`` with a conditional UPDATE, which fires the recovery
notice once, and a later failure fires again.

A fired alert is, in one transaction: the ``alert_state`` row, an
``alert.fired`` event, and one ``alert_deliveries`` outbox row per configured
remote sink. The log sink is written right after. Nothing here sends over
the network; `metis.alerts.delivery` does that in the background.

Entry points for other components:

- `check_budget_crossings` (gateway, after a spend counter settles): pure
  arithmetic plus an in-memory append when a threshold was crossed; the
  delivery worker drains that queue into the database. Never blocks.
- `on_sync_run_finished` (pull ingestion, after the run row is committed):
  records failure / recovery / slowness in its own transaction and never
  raises.
- `AlertEngine.evaluate` (periodic, inside ``metis serve``): stale syncs,
  reconciliation drift, unpriced models, monthly caps forecast to be reached
  (`metis.alerts.forecast`), and a budget sweep over the spend counters as a
  safety net for crossings a crashed process never drained.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Engine, RowMapping, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from ulid import ULID

from metis import jsonutil
from metis.alerts.names import label, scope_name
from metis.alerts.rules import AlertConfig, AlertRules, load_config
from metis.alerts.sinks import text_of, wire_payload
from metis.config import Settings, get_settings
from metis.db.tables import (
    alert_deliveries,
    alert_state,
    gateway_keys,
    ingest_runs,
    provider_credentials,
    spend_counters,
    teams,
    usage_records,
    users,
    workspaces,
)
from metis.events import AlertFired, append_events, event_row
from metis.money import from_nanousd
from metis.timeutil import day_key, iso, month_key, utcnow

log = logging.getLogger("metis.alerts")

SYNC_SUCCESS = frozenset({"succeeded", "success", "ok", "completed"})
# Neither success nor failure: still running, skipped (nothing to do), abandoned
# (a dead worker's run, closed by the next run, whose own outcome counts).
SYNC_NEUTRAL = frozenset({"running", "started", "pending", "queued", "skipped", "abandoned"})
_MAX_PENDING = 10_000


@dataclass(frozen=True)
class Alert:
    """One alert to fire (or resolve); becomes an `AlertFired` event."""

    kind: str
    scope: str
    scope_id: str
    period: str
    message: str
    workspace_id: str | None = None
    threshold: Decimal | None = None
    value: Decimal | None = None
    unit: str | None = None
    limit_usd: Decimal | None = None
    current_usd: Decimal | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    state: Literal["firing", "resolved"] = "firing"
    scope_name: str | None = None  # what scope_id is called (metis.alerts.names)

    @property
    def key(self) -> str:
        t = "" if self.threshold is None else str(self.threshold)
        return f"{self.kind}|{self.scope}|{self.scope_id}|{self.period}|{t}"[:400]


# --- budget crossings (gateway hot path) ---------------------------------------------------


def crossed_thresholds(
    before_nanousd: int, after_nanousd: int, cap_nanousd: int, thresholds_pct: Iterable[int]
) -> list[int]:
    """Thresholds (percent of cap) that spend crossed going from ``before`` to ``after``.

    Exact integer arithmetic: threshold ``t`` is crossed when
    ``before < t% of cap <= after``.
    """
    if cap_nanousd <= 0 or after_nanousd <= before_nanousd:
        return []
    return [
        t for t in thresholds_pct if before_nanousd * 100 < t * cap_nanousd <= after_nanousd * 100
    ]


@dataclass(frozen=True)
class _Crossing:
    scope: str
    scope_id: str
    period: str
    after_nanousd: int
    cap_nanousd: int
    workspace_id: str | None
    thresholds: tuple[int, ...]


_pending: deque[_Crossing] = deque(maxlen=_MAX_PENDING)
_config_lock = threading.Lock()
_config: AlertConfig | None = None


def set_active_config(config: AlertConfig | None) -> None:
    """Install the rules the budget check uses in this process (the server does this)."""
    global _config
    with _config_lock:
        _config = config


def _active_config() -> AlertConfig:
    global _config
    cfg = _config
    if cfg is None:
        with _config_lock:
            if _config is None:
                try:
                    _config = load_config(get_settings())
                except Exception:  # a bad file must not break the gateway
                    log.exception("alerts: could not load alert configuration; using defaults")
                    _config = AlertConfig()
            cfg = _config
    return cfg


def check_budget_crossings(
    scope: str,
    scope_id: str,
    period: str,
    before_nanousd: int,
    after_nanousd: int,
    cap_nanousd: int | None,
    *,
    workspace_id: str | None = None,
) -> list[int]:
    """Note the budget thresholds that one settled spend crossed; returns them.

    Call after a spend counter moved from ``before`` to ``after`` (nano-USD)
    for ``scope`` (``key_daily``, ``user_daily``, ``user_monthly``,
    ``team_daily``, ``team_monthly``), ``scope_id`` and ``period`` (``YYYY-MM-DD`` or
    ``YYYY-MM``). Costs a few integer comparisons; a crossing is appended to
    an in-memory queue that the delivery worker records (deduplicated in the
    database) and delivers, so this never does I/O and never raises.
    """
    if cap_nanousd is None or cap_nanousd <= 0 or after_nanousd <= before_nanousd:
        return []
    try:
        rules = _active_config().rules_for(workspace_id)
        if not rules.enabled or scope not in rules.budget_scopes:
            return []
        hit = crossed_thresholds(
            before_nanousd, after_nanousd, cap_nanousd, rules.budget_thresholds_pct
        )
        if hit:
            _pending.append(
                _Crossing(
                    scope, scope_id, period, after_nanousd, cap_nanousd, workspace_id, tuple(hit)
                )
            )
        return hit
    except Exception:  # pragma: no cover - defensive: never break a request
        log.exception("alerts: budget check failed")
        return []


def pending_crossings() -> int:
    """How many budget crossings wait in this process's queue."""
    return len(_pending)


def clear_pending() -> None:
    """Drop queued crossings and the cached rules (tests; a fresh process state)."""
    _pending.clear()
    set_active_config(None)


def budget_alert(
    scope: str,
    scope_id: str,
    period: str,
    threshold_pct: int,
    spent_nanousd: int,
    cap_nanousd: int,
    workspace_id: str | None = None,
    name: str | None = None,
) -> Alert:
    """The alert for spend of ``scope_id`` (named ``name``) reaching ``threshold_pct`` of a cap."""
    pct = (Decimal(spent_nanousd) * 100 / Decimal(cap_nanousd)).quantize(Decimal("0.01"))
    spent, cap = from_nanousd(spent_nanousd), from_nanousd(cap_nanousd)
    return Alert(
        kind="budget_threshold",
        scope=scope,
        scope_id=scope_id,
        period=period,
        workspace_id=workspace_id,
        threshold=Decimal(threshold_pct),
        value=pct,
        unit="percent",
        limit_usd=cap,
        current_usd=spent,
        severity="critical" if threshold_pct >= 100 else "warning",
        scope_name=name,
        message=(
            f"{scope} spend of {label(scope, scope_id, name)} reached {threshold_pct}% of its "
            f"cap in {period}: "
            f"${spent.normalize():f} of ${cap.normalize():f} ({pct}%)"
        ),
    )


# --- the engine ----------------------------------------------------------------------------


def _insert(conn: Connection) -> Any:
    return (
        postgresql.insert(alert_state)
        if conn.dialect.name == "postgresql"
        else sqlite.insert(alert_state)
    )


def _typed_ids(alert: Alert) -> dict[str, str | None]:
    ids: dict[str, str | None] = {"workspace_id": alert.workspace_id}
    # A cap scope's kind is its prefix (team_daily, team_monthly, user_… , key_…).
    col = {"credential": "credential_id"}.get(alert.scope) or {
        "key": "gateway_key_id",
        "user": "user_id",
        "team": "team_id",
    }.get(alert.scope.split("_", 1)[0])
    if col:
        ids[col] = alert.scope_id
    return ids


class AlertEngine:
    """Fires, resolves and evaluates alerts on one database with one configuration."""

    def __init__(self, db: Engine, config: AlertConfig) -> None:
        self.db = db
        self.config = config
        self._last_ledger_scan: datetime | None = None

    # -- firing ---------------------------------------------------------------------------

    def fire(self, conn: Connection, alert: Alert, *, recoverable: bool = False) -> str | None:
        """Fire ``alert`` unless its key already fired; returns the event id or None.

        With ``recoverable`` a key in state ``resolved`` fires again (a new crossing).
        """
        now = utcnow()
        ins = _insert(conn)
        row = {
            "alert_key": alert.key,
            "kind": alert.kind,
            "workspace_id": alert.workspace_id,
            "scope": alert.scope,
            "scope_id": alert.scope_id[:200],
            "period": alert.period,
            "threshold": "" if alert.threshold is None else str(alert.threshold),
            "status": "firing",
            "value": None if alert.value is None else str(alert.value),
            "first_fired_at": now,
            "last_fired_at": now,
        }
        won = conn.execute(
            ins.values(**row).on_conflict_do_nothing().returning(alert_state.c.alert_key)
        ).first()
        if won is None:
            if not recoverable:
                return None
            res = conn.execute(
                update(alert_state)
                .where(alert_state.c.alert_key == alert.key, alert_state.c.status == "resolved")
                .values(status="firing", last_fired_at=now, resolved_at=None, value=row["value"])
            )
            if res.rowcount != 1:
                return None
        return self._record(conn, alert, now)

    def resolve(self, conn: Connection, alert: Alert) -> str | None:
        """Resolve the firing alert with ``alert.key`` (report ``alert``); None if not firing."""
        now = utcnow()
        res = conn.execute(
            update(alert_state)
            .where(alert_state.c.alert_key == alert.key, alert_state.c.status == "firing")
            .values(status="resolved", resolved_at=now)
        )
        if res.rowcount != 1:
            return None
        resolved = replace(alert, state="resolved", severity="info")
        return self._record(conn, resolved, now)

    def _record(self, conn: Connection, alert: Alert, now: datetime) -> str:
        payload = AlertFired(
            alert_id=f"alert_{ULID()}",
            kind=alert.kind,
            state=alert.state,
            severity=alert.severity,
            workspace_id=alert.workspace_id,
            scope=alert.scope,
            scope_id=alert.scope_id,
            period=alert.period,
            threshold=alert.threshold,
            value=alert.value,
            unit=alert.unit,
            limit_usd=alert.limit_usd,
            current_usd=alert.current_usd,
            message=alert.message,
            fired_at=iso(now),
            scope_name=alert.scope_name,
        )
        ev = event_row(payload, ts=now, **_typed_ids(alert))
        append_events(conn, [ev])
        event_id = str(ev["event_id"])
        if alert.state == "firing":
            conn.execute(
                update(alert_state)
                .where(alert_state.c.alert_key == alert.key)
                .values(event_id=event_id)
            )
        enqueue_deliveries(conn, self.config, event_id, ev["payload"], now)
        if self.config.sinks.log:
            log_alert(ev["payload"])
        return event_id

    # -- budget -----------------------------------------------------------------------------

    def drain_pending(self) -> int:
        """Record the budget crossings queued by `check_budget_crossings`; returns alerts fired."""
        items: list[_Crossing] = []
        while _pending:
            try:
                items.append(_pending.popleft())
            except IndexError:  # pragma: no cover - raced with another drainer
                break
        if not items:
            return 0
        fired = 0
        try:
            with self.db.begin() as conn:
                for c in items:
                    for t in c.thresholds:
                        a = budget_alert(
                            c.scope,
                            c.scope_id,
                            c.period,
                            t,
                            c.after_nanousd,
                            c.cap_nanousd,
                            c.workspace_id,
                            scope_name(conn, c.scope, c.scope_id),
                        )
                        if self.fire(conn, a):
                            fired += 1
        except Exception:
            # Put them back for the next pass; the dedupe key makes a retry safe.
            _pending.extendleft(reversed(items))
            raise
        return fired

    def sweep_budgets(self, conn: Connection, now: datetime) -> int:
        """Fire thresholds already reached by current spend counters (safety net)."""
        fired = 0
        day, month = day_key(now), month_key(now)
        sc = spend_counters.c
        team_q = {
            scope: select(sc.scope_id, sc.period, sc.spent_nanousd, cap_col)
            .join(table, table.c.id == sc.scope_id)
            .where(sc.scope == scope, sc.period == period, cap_col > 0)
            for scope, period, table, cap_col in (
                ("team_daily", day, teams, teams.c.daily_cap_nanousd),
                ("team_monthly", month, teams, teams.c.monthly_cap_nanousd),
                ("user_daily", day, users, users.c.daily_cap_nanousd),
                ("user_monthly", month, users, users.c.monthly_cap_nanousd),
            )
        }
        key_q = (
            select(
                sc.scope_id,
                sc.period,
                sc.spent_nanousd,
                gateway_keys.c.daily_cap_nanousd,
                gateway_keys.c.workspace_id,
            )
            .join(gateway_keys, gateway_keys.c.id == sc.scope_id)
            .where(sc.scope == "key_daily", sc.period == day, gateway_keys.c.daily_cap_nanousd > 0)
        )
        rows: list[tuple[str, str, str, int, int, str | None]] = []
        for scope, q in team_q.items():
            for r in conn.execute(q):
                rows.append((scope, r[0], r[1], int(r[2]), int(r[3]), None))
        for k in conn.execute(key_q):
            rows.append(("key_daily", k[0], k[1], int(k[2]), int(k[3]), k[4]))
        for scope, scope_id, period, spent, cap, ws in rows:
            rules = self.config.rules_for(ws)
            if not rules.enabled or scope not in rules.budget_scopes:
                continue
            name = scope_name(conn, scope, scope_id)
            for t in crossed_thresholds(0, spent, cap, rules.budget_thresholds_pct):
                a = budget_alert(scope, scope_id, period, t, spent, cap, ws, name)
                if self.fire(conn, a):
                    fired += 1
        return fired

    # -- ingestion ------------------------------------------------------------------------

    def sync_run_finished(self, conn: Connection, run: Mapping[Any, Any]) -> list[str]:
        """Fire failure / recovery / slowness alerts for one finished run row."""
        status = str(run.get("status") or "").lower()
        cred = run.get("credential_id")
        if status in SYNC_NEUTRAL or not cred:
            return []
        ws = run.get("workspace_id")
        rules = self.config.rules_for(ws)
        if not rules.enabled:
            return []
        fired: list[str] = []
        finished = run.get("finished_at") or utcnow()
        kind = str(run.get("kind") or "sync")
        name = scope_name(conn, "credential", str(cred))
        failed = replace(_sync_failed(cred, ws), scope_name=name)
        stale = replace(_sync_stale(cred, ws, rules), scope_name=name)
        cred_label = f"credential {name} ({cred})" if name else f"credential {cred}"
        if status in SYNC_SUCCESS:
            for a, what in ((failed, "sync runs"), (stale, "successful syncs")):
                msg = (
                    f"{what} of {cred_label} recovered: {kind} run "
                    f"{run.get('id')} succeeded at {iso(finished)}"
                )
                ev = self.resolve(conn, replace(a, message=msg))
                if ev:
                    fired.append(ev)
        elif rules.sync_failure:
            err = str(run.get("error_message") or status).splitlines()[0][:200]
            a = replace(
                failed, message=f"{kind} run {run.get('id')} of {cred_label} {status}: {err}"
            )
            ev = self.fire(conn, a, recoverable=True)
            if ev:
                fired.append(ev)
        duration_ms = run.get("duration_ms")
        limit = rules.sync_slow_after_seconds
        if limit and duration_ms is not None and int(duration_ms) > limit * 1000:
            secs = (Decimal(int(duration_ms)) / 1000).quantize(Decimal("0.001"))
            ev = self.fire(
                conn,
                Alert(
                    kind="sync_slow",
                    scope="credential",
                    scope_id=str(cred),
                    period=day_key(finished),
                    workspace_id=ws,
                    threshold=Decimal(limit),
                    value=secs,
                    unit="seconds",
                    scope_name=name,
                    message=f"{kind} run {run.get('id')} of {cred_label} took {secs}s "
                    f"(threshold {limit}s)",
                ),
            )
            if ev:
                fired.append(ev)
        return fired

    def sweep_stale_syncs(self, conn: Connection, now: datetime) -> int:
        """Fire (or resolve) "no successful sync for too long" per usage_admin credential."""
        pc, ir = provider_credentials.c, ingest_runs.c
        last_ok = (
            select(ir.credential_id, func.max(ir.finished_at).label("last_ok"))
            .where(ir.status.in_(sorted(SYNC_SUCCESS)))
            .group_by(ir.credential_id)
            .subquery()
        )
        q = (
            select(pc.id, pc.workspace_id, pc.provider, pc.created_at, last_ok.c.last_ok)
            .select_from(provider_credentials.outerjoin(last_ok, last_ok.c.credential_id == pc.id))
            .where(pc.purpose_usage_admin.is_(True), pc.removed_at.is_(None))
        )
        n = 0
        for cred, ws, provider, created, last in conn.execute(q):
            rules = self.config.rules_for(ws)
            limit = rules.sync_stale_after_seconds
            if not rules.enabled or not limit:
                continue
            since = last or created
            age = int((now - since).total_seconds())
            name = scope_name(conn, "credential", cred)
            base = replace(_sync_stale(cred, ws, rules), scope_name=name)
            cred_label = f"credential {name} ({cred})" if name else f"credential {cred}"
            if age > limit:
                what = f"since {iso(last)}" if last else "ever (created " + iso(created) + ")"
                a = replace(
                    base,
                    value=Decimal(age),
                    message=f"no successful {provider} sync of {cred_label} {what}; "
                    f"threshold {limit}s",
                )
                if self.fire(conn, a, recoverable=True):
                    n += 1
            elif last is not None:
                a = replace(
                    base, message=f"{provider} {cred_label} synced successfully at {iso(last)}"
                )
                if self.resolve(conn, a):
                    n += 1
        return n

    # -- ledger -----------------------------------------------------------------------------

    def sweep_unpriced(self, conn: Connection, today: date) -> int:
        """Fire once per (workspace, provider, model, day) with usage but no known price."""
        r = usage_records.c
        q = (
            select(
                r.workspace_id,
                r.provider,
                r.model,
                r.usage_date,
                func.sum(r.request_count),
                workspaces.c.name,
            )
            .join(workspaces, workspaces.c.id == r.workspace_id)
            .where(
                r.usage_date >= today - timedelta(days=1),
                r.cost_source == "none",
                (r.input_tokens + r.output_tokens) > 0,
            )
            .group_by(r.workspace_id, r.provider, r.model, r.usage_date, workspaces.c.name)
        )
        n = 0
        for ws, provider, model, day, calls, ws_name in conn.execute(q):
            rules = self.config.rules_for(ws, ws_name)
            if not rules.enabled or not rules.unpriced_models:
                continue
            a = Alert(
                kind="unpriced_model",
                scope="model",
                scope_id=f"{provider}/{model}",
                period=day.isoformat(),
                workspace_id=ws,
                value=Decimal(int(calls or 0)),
                unit="calls",
                message=f"calls to {provider} model {model!r} with no known price on "
                f"{day.isoformat()} in workspace {ws_name}: their cost is recorded as unknown",
            )
            if self.fire(conn, a):
                n += 1
        return n

    def sweep_reconciliation(self, conn: Connection, today: date) -> int:
        """Fire for reconciliation cells whose drift or unattributed share is over threshold.

        Uses `metis.ledger.reconcile` (owned by the reconciliation component);
        see `metis.alerts.recon` for the adapter and its status.
        """
        from metis.alerts.recon import estimated_cost, recent_cells

        n = 0
        for cell in recent_cells(conn, today):
            rules = self.config.rules_for(cell.workspace_id)
            if not rules.enabled or cell.provider_cost_nanousd is None:
                continue
            total = cell.provider_cost_nanousd
            if from_nanousd(total) < rules.recon_min_cost_usd or total <= 0:
                continue
            scope_id = f"{cell.workspace_id}/{cell.provider}/{cell.model}/{cell.day.isoformat()}"
            name = scope_name(conn, "cell", scope_id)
            cell_label = f"{name} ({cell.workspace_id})" if name else scope_id
            attributed = cell.attributed_cost_nanousd
            if attributed > total:
                pct = (Decimal(attributed - total) * 100 / total).quantize(Decimal("0.01"))
                if pct > rules.recon_drift_pct:
                    # Worst-case estimates of unreadable calls are upper bounds, not
                    # mis-attribution: drift only counts what they cannot explain.
                    known = attributed - estimated_cost(conn, cell)
                    pct = (Decimal(max(known - total, 0)) * 100 / total).quantize(Decimal("0.01"))
                if pct > rules.recon_drift_pct:
                    a = Alert(
                        kind="reconciliation_drift",
                        scope="cell",
                        scope_id=scope_id,
                        period=cell.day.isoformat(),
                        workspace_id=cell.workspace_id,
                        threshold=rules.recon_drift_pct,
                        value=pct,
                        unit="percent",
                        current_usd=from_nanousd(attributed),
                        limit_usd=from_nanousd(total),
                        scope_name=name,
                        message=f"cell {cell_label}: attributed spend exceeds the provider total "
                        f"by {pct}%",
                    )
                    n += 1 if self.fire(conn, a) else 0
            else:
                pct = (Decimal(total - attributed) * 100 / total).quantize(Decimal("0.01"))
                if pct > rules.recon_unattributed_pct:
                    a = Alert(
                        kind="reconciliation_unattributed",
                        scope="cell",
                        scope_id=scope_id,
                        period=cell.day.isoformat(),
                        workspace_id=cell.workspace_id,
                        threshold=rules.recon_unattributed_pct,
                        value=pct,
                        unit="percent",
                        current_usd=from_nanousd(total - attributed),
                        limit_usd=from_nanousd(total),
                        scope_name=name,
                        message=f"cell {cell_label}: {pct}% of the provider total is unattributed "
                        "(traffic that bypassed Metis)",
                    )
                    n += 1 if self.fire(conn, a) else 0
        return n

    # -- the periodic pass --------------------------------------------------------------------

    def evaluate(self, now: datetime | None = None, *, ledger_scans: bool | None = None) -> int:
        """One periodic pass over the time-based rules; returns alerts fired or resolved.

        Budget and sync rules read small tables and run every pass. The ledger
        scans (unpriced models, reconciliation cells) read recent usage records,
        so they run at most every ``ledger_scan_every_seconds`` unless
        ``ledger_scans`` forces them on or off.
        """
        now = now or utcnow()
        n = self.drain_pending()
        if ledger_scans is None:
            every = self.config.delivery.ledger_scan_every_seconds
            ledger_scans = (
                self._last_ledger_scan is None
                or (now - self._last_ledger_scan).total_seconds() >= every
            )
        jobs: list[Callable[[Connection], int]] = [
            lambda c: self.sweep_budgets(c, now),
            lambda c: self.sweep_stale_syncs(c, now),
        ]
        if ledger_scans:
            from metis.alerts.forecast import sweep_forecast_breaches

            self._last_ledger_scan = now
            jobs += [
                lambda c: self.sweep_unpriced(c, now.date()),
                lambda c: self.sweep_reconciliation(c, now.date()),
                lambda c: sweep_forecast_breaches(self, c, now.date()),
            ]
        for job in jobs:
            try:
                with self.db.begin() as conn:
                    n += int(job(conn))
            except OperationalError as exc:
                # Transient (SQLite busy/locked, database restarting): the step runs
                # again on the next tick, so one line, not a traceback.
                log.warning(
                    "alerts: evaluation step skipped, database unavailable (%s); retried next tick",
                    type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                )
            except Exception:
                log.exception("alerts: evaluation step failed")
        return n


def _sync_failed(cred: str, ws: str | None) -> Alert:
    return Alert(
        kind="sync_failed",
        scope="credential",
        scope_id=str(cred),
        period="",
        workspace_id=ws,
        severity="critical",
        message="",
    )


def _sync_stale(cred: str, ws: str | None, rules: AlertRules) -> Alert:
    return Alert(
        kind="sync_stale",
        scope="credential",
        scope_id=str(cred),
        period="",
        workspace_id=ws,
        threshold=Decimal(rules.sync_stale_after_seconds),
        unit="seconds",
        severity="critical",
        message="",
    )


def enqueue_deliveries(
    conn: Connection,
    config: AlertConfig,
    event_id: str,
    payload: Mapping[str, Any],
    now: datetime,
    sinks: Iterable[str] | None = None,
) -> int:
    """Add one outbox row per configured remote sink (or per name in ``sinks``)."""
    names = list(sinks) if sinks is not None else config.sinks.remote_sinks()
    if not names:
        return 0
    conn.execute(
        alert_deliveries.insert(),
        [
            {
                "event_id": event_id,
                "sink": s,
                "payload": dict(payload),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for s in names
        ],
    )
    return len(names)


def log_alert(payload: Mapping[str, Any]) -> None:
    """The log sink: one WARNING line per alert (no secrets in payloads).

    The event as JSON with ``METIS_LOG_FORMAT=json``, else its one-line text
    (what Slack shows).
    """
    from metis.ingest.log import log_format

    if log_format() == "json":
        log.warning("alert.fired %s", jsonutil.dumps(wire_payload(payload)).decode())
    else:
        log.warning("alert: %s", text_of(payload))


# --- the ingestion hook --------------------------------------------------------------------


def on_sync_run_finished(
    run: Mapping[Any, Any] | str,
    *,
    engine: Engine | None = None,
    settings: Settings | None = None,
    config: AlertConfig | None = None,
) -> list[str]:
    """Record alerts for a finished sync/backfill run; never raises.

    ``run`` is the ``ingest_runs`` row (a mapping with at least ``id``,
    ``credential_id``, ``workspace_id``, ``status``, ``kind``, ``duration_ms``,
    ``error_message``, ``finished_at``) or its id. Call it after the run row
    is committed: it writes in its own transaction (on SQLite an open write
    transaction of the caller would block it). Returns the ids of the
    ``alert.fired`` events it wrote.
    """
    own = engine is None
    try:
        settings = settings or get_settings()
        config = config or load_config(settings)
        if engine is None:
            from metis.db.engine import make_engine

            engine = make_engine(settings=settings)
        try:
            with engine.begin() as conn:
                row: Mapping[Any, Any] | None = (
                    conn.execute(select(ingest_runs).where(ingest_runs.c.id == run))
                    .mappings()
                    .first()
                    if isinstance(run, str)
                    else run
                )
                if row is None:
                    return []
                return AlertEngine(engine, config).sync_run_finished(conn, row)
        finally:
            if own:
                engine.dispose()
    except Exception:
        log.exception("alerts: sync-run hook failed")
        return []


def firing(conn: Connection, kind: str | None = None) -> list[RowMapping]:
    """Alert states currently firing (optionally of one kind)."""
    q = select(alert_state).where(alert_state.c.status == "firing")
    if kind:
        q = q.where(alert_state.c.kind == kind)
    return list(conn.execute(q.order_by(alert_state.c.last_fired_at)).mappings())
