"""What each ingest token last sent: the ingestion page's "last data seen" per token.

One ``ingest_activity`` row per (token, channel): ``push`` for
``POST /v1/ingest/usage``, ``otel_logs`` / ``otel_traces`` / ``otel_metrics``
for the OTLP receiver (`metis.ingest.otel`). A request adds to its counters
(``records``: usage items, log records, spans or metric data points received;
``accepted``: usage items stored or unchanged; ``rejected``: items refused)
and moves ``last_seen_at``. Counters only: no payload, no identity, nothing
from the request body is kept here.

`record` runs inside the caller's transaction, so a batch that is not stored
(e.g. the database refused the write) is not counted either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from metis.db.tables import ingest_activity, ingest_tokens

CHANNELS = ("push", "otel_logs", "otel_traces", "otel_metrics")

_UPSERT: dict[str, Any] = {}


def _stmt(conn: Connection) -> Any:
    dialect = conn.engine.dialect.name
    stmt = _UPSERT.get(dialect)
    if stmt is None:
        mod: Any = postgresql if dialect == "postgresql" else sqlite
        ins = mod.insert(ingest_activity)
        t = ingest_activity.c
        stmt = _UPSERT[dialect] = ins.on_conflict_do_update(
            index_elements=["token_id", "channel"],
            set_={
                "last_seen_at": ins.excluded.last_seen_at,
                "requests": t.requests + ins.excluded.requests,
                "records": t.records + ins.excluded.records,
                "accepted": t.accepted + ins.excluded.accepted,
                "rejected": t.rejected + ins.excluded.rejected,
            },
        )
    return stmt


def record(
    conn: Connection,
    token_id: str,
    channel: str,
    now: datetime,
    *,
    records: int,
    accepted: int,
    rejected: int,
) -> None:
    """Count one request of ``token_id`` on ``channel`` (one of `CHANNELS`)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown ingest channel {channel!r}")
    conn.execute(
        _stmt(conn),
        {
            "token_id": token_id,
            "channel": channel,
            "first_seen_at": now,
            "last_seen_at": now,
            "requests": 1,
            "records": records,
            "accepted": accepted,
            "rejected": rejected,
        },
    )


@dataclass(frozen=True)
class Activity:
    """One token's activity on one channel."""

    token_id: str
    token_name: str
    workspace_id: str
    source: str
    via_gateway: bool
    user_id: str | None
    revoked: bool
    channel: str | None  # None: the token never sent anything
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    requests: int
    records: int
    accepted: int
    rejected: int


def list_activity(conn: Connection, workspace_id: str | None = None) -> list[Activity]:
    """Every ingest token with its per-channel activity (a token never used: one empty row)."""
    tk, a = ingest_tokens.c, ingest_activity.c
    q = (
        select(
            tk.id,
            tk.name,
            tk.workspace_id,
            tk.source,
            tk.via_gateway,
            tk.user_id,
            tk.revoked_at,
            a.channel,
            a.first_seen_at,
            a.last_seen_at,
            a.requests,
            a.records,
            a.accepted,
            a.rejected,
        )
        .select_from(ingest_tokens.outerjoin(ingest_activity, a.token_id == tk.id))
        .order_by(tk.created_at, tk.id, a.channel)
    )
    if workspace_id is not None:
        q = q.where(tk.workspace_id == workspace_id)
    out = []
    for r in conn.execute(q).all():
        out.append(
            Activity(
                token_id=r.id,
                token_name=r.name,
                workspace_id=r.workspace_id,
                source=r.source,
                via_gateway=bool(r.via_gateway),
                user_id=r.user_id,
                revoked=r.revoked_at is not None,
                channel=r.channel,
                first_seen_at=r.first_seen_at,
                last_seen_at=r.last_seen_at,
                requests=int(r.requests or 0),
                records=int(r.records or 0),
                accepted=int(r.accepted or 0),
                rejected=int(r.rejected or 0),
            )
        )
    return out
