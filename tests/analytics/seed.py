"""Test helpers: identity rows (inserted directly) and canonical records via upsert_usage."""

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert

from metis.db.tables import gateway_keys, teams, users, workspaces
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

T0 = datetime(2026, 11, 2, tzinfo=UTC)
_n = [0]


def ws(conn: Connection, wid: str = "ws_1", name: str = "w") -> str:
    conn.execute(insert(workspaces).values(id=wid, name=name, created_at=T0))
    return wid


def user(conn: Connection, uid: str, alias: str, email: str | None = None) -> str:
    conn.execute(
        insert(users).values(
            id=uid,
            alias=alias,
            display_name=alias,
            email=email,
            email_sha256=hashlib.sha256(email.encode()).hexdigest() if email else None,
            created_at=T0,
            disabled=False,
        )
    )
    return uid


def team(
    conn: Connection, tid: str, name: str, daily: int | None = None, monthly: int | None = None
) -> str:
    conn.execute(
        insert(teams).values(
            id=tid,
            name=name,
            daily_cap_nanousd=daily,
            monthly_cap_nanousd=monthly,
            created_at=T0,
            disabled=False,
        )
    )
    return tid


def key(
    conn: Connection, kid: str, name: str, uid: str | None, tid: str | None, wid: str = "ws_1"
) -> str:
    secret = "gw_" + secrets.token_urlsafe(32)
    conn.execute(
        insert(gateway_keys).values(
            id=kid,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            display_prefix=secret[:8],
            name=name,
            workspace_id=wid,
            user_id=uid,
            team_id=tid,
            created_at=T0,
        )
    )
    return kid


def rec(
    *,
    at: datetime,
    cost: int,
    key_id: str | None = None,
    user_id: str | None = None,
    team_id: str | None = None,
    source: str = "gateway",
    model: str = "gpt-4o",
    provider: str = "openai",
    input_tokens: int = 100,
    cached: int = 0,
    output_tokens: int = 10,
    status: str | None = "ok",
    latency_ms: int | None = 100,
    dedupe: str | None = None,
    ws_id: str = "ws_1",
    **extra: Any,
) -> UsageRecord:
    _n[0] += 1
    return UsageRecord(
        workspace_id=ws_id,
        source=source,
        source_ref=key_id or "cred_1",
        dedupe_key=dedupe or f"r{_n[0]}",
        window_start=at,
        window_end=at + timedelta(seconds=1),
        granularity="request",
        provider=provider,
        model=model,
        model_raw=model,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        output_tokens=output_tokens,
        request_count=1,
        cost_nanousd=cost,
        cost_source="computed",
        user_id=user_id,
        team_id=team_id,
        gateway_key_id=key_id,
        status=status,
        latency_ms=latency_ms,
        **extra,
    )


def write(conn: Connection, records: Sequence[UsageRecord]) -> None:
    upsert_usage(conn, records)
