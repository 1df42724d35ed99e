"""Seeding helpers for alert and retention tests (records go through upsert_usage)."""

import itertools
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, insert

from metis.db.tables import provider_credentials, sync_windows, workspaces
from metis.ledger.record import UsageRecord

_n = itertools.count(1)


def workspace(conn: Connection, wid: str = "ws_1", name: str = "acme") -> str:
    conn.execute(
        insert(workspaces).values(id=wid, name=name, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    )
    return wid


def record(
    day: date,
    cost: int,
    *,
    source: str = "gateway",
    granularity: str = "request",
    model: str = "gpt-4o",
    cost_source: str = "computed",
    ws: str = "ws_1",
    hour: int = 12,
    team_id: str | None = None,
    correlation_id: str | None = None,
) -> UsageRecord:
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    end = start + (timedelta(days=1) if granularity == "1d" else timedelta(seconds=1))
    if granularity == "1d":
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
    return UsageRecord(
        workspace_id=ws,
        source=source,
        source_ref="cred_1" if source == "provider_api_key" else "key_1",
        dedupe_key=f"d{next(_n)}",
        window_start=start,
        window_end=end,
        granularity=granularity,
        provider="openai",
        model=model,
        model_raw=model,
        input_tokens=100,
        output_tokens=10,
        request_count=1,
        cost_nanousd=cost,
        cost_source=cost_source,
        team_id=team_id,
        status="ok" if source == "gateway" else None,
        correlation_id=correlation_id,
    )


def covered(conn: Connection, days: list[date], ws: str = "ws_1", cid: str = "cred_1") -> None:
    """A usage_admin credential whose sync completed these whole UTC days."""
    now = datetime.now(UTC)
    conn.execute(
        insert(provider_credentials).values(
            id=cid,
            workspace_id=ws,
            provider="openai",
            purpose_inference=False,
            purpose_usage_admin=True,
            mode="admin",
            secret_ref="env:NOPE",
            created_at=now,
        )
    )
    for d in days:
        s = datetime(d.year, d.month, d.day, tzinfo=UTC)
        conn.execute(
            insert(sync_windows).values(
                credential_id=cid,
                window_start=s,
                window_end=s + timedelta(days=1),
                completed_at=s + timedelta(days=1, hours=2),
                records=1,
            )
        )
