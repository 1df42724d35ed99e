"""Retention: old per-request rows and events go; rollups, audit events and the sync window stay."""

import json
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import events, usage_records, usage_rollups_daily
from metis.events import GatewayKeyIssued, IngestRunCompleted, append_event
from metis.ledger.prune import cutoff_date, prune, pruned_before
from metis.ledger.reconcile import reconciled_totals
from metis.ledger.upsert import upsert_usage
from metis.server import create_app
from metis.timeutil import day_start, iso, utcnow
from metis.util.server_thread import ServerThread
from tests.alerts.helpers import covered, record, workspace
from tests.conftest import Cli

DAYS = 10


def _seed(engine: Engine) -> date:
    """Ten days of gateway calls + provider day buckets, trace and audit events."""
    today = utcnow().date()
    days = [today - timedelta(days=i) for i in range(DAYS)]
    with engine.begin() as c:
        workspace(c)
        covered(c, days[1:])
        recs = []
        for i, d in enumerate(days):
            recs += [
                record(d, 1_000_000 * (i + 1), hour=3, correlation_id=f"chatcmpl-{i}a"),
                record(d, 2_000_000 * (i + 1), hour=15, correlation_id=f"chatcmpl-{i}b"),
                record(d, 4_000_000 * (i + 1), source="provider_api_key", granularity="1d"),
            ]
        upsert_usage(c, recs)
        for d in days:
            at = day_start(d) + timedelta(hours=6)
            append_event(
                c,
                IngestRunCompleted(
                    run_id="run_1", credential_id="cred_1", provider="openai", kind="sync",
                    status="ok", window_start=None, window_end=None, pages=1, stored=1,
                    updated=0, unchanged=0, skipped=0, errors=0, duration_ms=5,
                ),
                ts=at,
            )  # fmt: skip
            append_event(
                c,
                GatewayKeyIssued(
                    key_id="key_1", name="k", workspace_path="/w", user_id=None, team_id=None,
                    allowed_models=None, daily_cap_usd=None, issued_at=iso(at),
                ),
                ts=at,
            )  # fmt: skip
    return today


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as c:

        def n(q: object) -> int:
            return int(c.execute(q).scalar_one())  # type: ignore[call-overload]

        return {
            "request_rows": n(select(func.count()).where(usage_records.c.granularity == "request")),
            "provider_rows": n(select(func.count()).where(usage_records.c.granularity == "1d")),
            "trace_events": n(select(func.count()).where(events.c.type == "ingest.run_completed")),
            "audit_events": n(select(func.count()).where(events.c.type.startswith("gateway."))),
            "rollup_rows": n(select(func.count()).select_from(usage_rollups_daily)),
            "rollup_cost": n(select(func.sum(usage_rollups_daily.c.cost_nanousd))),
        }


def _analytics(url: str, token: str, today: date) -> dict:
    r = httpx.get(
        url + "/analytics/cost",
        params={
            "group_by": "day",
            "view": "raw",
            "from": iso(day_start(today - timedelta(days=DAYS))),
            "to": iso(day_start(today + timedelta(days=1))),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return {"data": body["data"], "total": body["total"]}


def test_cutoff_never_enters_the_sync_window() -> None:
    today = date(2026, 11, 22)
    assert cutoff_date(today, 30, 2) == date(2026, 10, 23)
    assert cutoff_date(today, 1, 2) == date(2026, 11, 21)  # yesterday is kept
    assert cutoff_date(today, 1, 5) == date(2026, 11, 18)


def test_prune_keeps_rollups_audit_and_analytics_totals(cli: type[Cli], engine: Engine) -> None:
    today = _seed(engine)
    token = cli.ok("admin", "token", "create", "--name", "t").stdout.strip().splitlines()[-1]
    before = _counts(engine)
    assert before["request_rows"] == 2 * DAYS and before["audit_events"] == DAYS

    with ServerThread(create_app()) as srv:
        analytics_before = _analytics(srv.url, token, today)
        dry = prune(engine, retention_days=3, dry_run=True)
        # Days before today-3 (six of the ten) go: 2 calls and 1 trace event each.
        assert (dry.cutoff, dry.records, dry.events) == (today - timedelta(days=3), 12, 6)
        assert _counts(engine) == before  # a dry run deletes nothing

        res = prune(engine, retention_days=3)
        assert (res.records, res.events, res.audit_events) == (12, 6, 0)
        after = _counts(engine)
        assert after["request_rows"] == 8 and after["trace_events"] == 4
        assert after["provider_rows"] == before["provider_rows"]  # provider buckets stay
        assert after["audit_events"] == before["audit_events"]  # audit stays
        assert after["rollup_rows"] == before["rollup_rows"]  # rollups stay
        assert after["rollup_cost"] == before["rollup_cost"]
        with engine.connect() as c:
            oldest = c.execute(
                select(func.min(usage_records.c.usage_date)).where(
                    usage_records.c.granularity == "request"
                )
            ).scalar_one()
            assert oldest == today - timedelta(days=3)
            assert pruned_before(c) == today - timedelta(days=3)

        # Analytics over the pruned range answer from rollups with the same totals.
        assert _analytics(srv.url, token, today) == analytics_before

    assert prune(engine, retention_days=3).records == 0  # idempotent
    # Rebuilding rollups leaves the pruned days' rollups alone.
    out = cli.ok("db", "rebuild-rollups").stdout
    assert "were pruned: their rollups are kept" in out
    assert _counts(engine) == after


def test_audit_events_go_only_when_asked(engine: Engine) -> None:
    _seed(engine)
    res = prune(engine, retention_days=3, include_audit=True)
    assert res.audit_events == 6
    assert _counts(engine)["audit_events"] == 4


def test_days_in_the_sync_window_still_reconcile(engine: Engine) -> None:
    today = _seed(engine)
    window = (today - timedelta(days=1), today + timedelta(days=1))
    with engine.connect() as c:
        before = reconciled_totals(c, *window)
    res = prune(engine, retention_days=1, sync_window_days=2)
    assert res.cutoff == today - timedelta(days=1)
    with engine.connect() as c:
        assert reconciled_totals(c, *window) == before
        kept = c.execute(
            select(func.count()).where(
                usage_records.c.granularity == "request",
                usage_records.c.usage_date >= window[0],
            )
        ).scalar_one()
    assert kept == 4


def test_cli_prune(cli: type[Cli], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(engine)
    r = cli.run("db", "prune")
    assert r.exit_code == 1 and "METIS_RETENTION_DAYS" in r.stderr
    monkeypatch.setenv("METIS_RETENTION_DAYS", "5")
    dry = json.loads(cli.ok("db", "prune", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True and dry["records"] == 8 and dry["events"] == 4
    assert _counts(engine)["request_rows"] == 2 * DAYS
    out = cli.ok("db", "prune").stdout
    assert "deleted 8 per-request records and 4 events" in out
    out = cli.ok("db", "prune", "--retention-days", "2", "--include-audit").stdout
    assert "deleted 6 per-request records and 10 events (of which 7 audit)" in out
    monkeypatch.setenv("METIS_RETENTION_DAYS", "0")
    assert cli.run("db", "prune").exit_code == 1
