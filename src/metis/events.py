"""Event types (msgspec Structs) and the append-only event log.

Events are the trace/audit store: rows are appended, never updated (the one
exception is `forget`, which pseudonymizes in place). Each event has typed
columns for the ids analytics filter on and the full payload as JSON.
Payloads carry stable ids only: never an email, an email hash, a secret or a
request body.
"""

import weakref
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
from sqlalchemy import Connection, Dialect

from metis.db import bulk
from metis.db.tables import events
from metis.ids import fast_ulid, new_id
from metis.timeutil import utcnow

CapScope = Literal["key_daily", "user_daily", "user_monthly", "team_daily", "team_monthly"]
InboundShape = Literal["openai", "anthropic", "gemini"]


class GatewayKeyIssued(msgspec.Struct, frozen=True):
    """``gateway.key_issued`` (spec 003 §7)."""

    key_id: str
    name: str
    workspace_path: str
    user_id: str | None
    team_id: str | None
    allowed_models: tuple[str, ...] | None
    daily_cap_usd: Decimal | None
    issued_at: str


class GatewayKeyRevoked(msgspec.Struct, frozen=True):
    """``gateway.key_revoked`` (spec 003 §7)."""

    key_id: str
    revoked_at: str
    reason: str


class GatewayKeyUpdated(msgspec.Struct, frozen=True):
    """``gateway.key_updated``: a key's user/team binding changed (``metis gateway key set``).

    Stable ids only: the binding before and after. Past events and usage keep the
    binding they were stamped with (spec 003: re-tagging is not retroactive).
    """

    key_id: str
    user_id: str | None
    team_id: str | None
    previous_user_id: str | None
    previous_team_id: str | None
    updated_at: str


class GatewayQuotaExceeded(msgspec.Struct, frozen=True):
    """``gateway.quota_exceeded`` (spec 003 §7)."""

    gateway_key_id: str
    user_id: str | None
    team_id: str | None
    scope: CapScope
    limit_usd: Decimal
    current_usd: Decimal
    inbound_shape: InboundShape


class LLMCallCompleted(msgspec.Struct, frozen=True, kw_only=True):
    """``llm.call_completed``: one gateway call, successful or not."""

    request_id: str
    workspace_id: str
    gateway_key_id: str | None
    user_id: str | None
    team_id: str | None
    inbound_shape: InboundShape
    provider: str
    model: str
    status: str
    http_status: int
    latency_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None
    cost_source: str = "none"
    pricing_version: str | None = None
    correlation_id: str | None = None
    stream: bool = False
    estimated: bool = False
    """The gateway could not read the call's usage: tokens and cost are its worst case
    (``cost_source = estimated``, `metis.gateway.estimate`)."""
    estimate_reason: str | None = None
    """Why (`metis.gateway.estimate.REASONS`); None when not estimated."""


class RouteDecided(msgspec.Struct, frozen=True, kw_only=True):
    """``route.decided``: the candidate chain and which one answered."""

    request_id: str
    candidates: list[str]
    winner_index: int
    reason: str
    rule: str | None = None
    attempts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    inbound_shape: InboundShape | None = None


class IngestRunCompleted(msgspec.Struct, frozen=True, kw_only=True):
    """``ingest.run_completed``: one sync or backfill run of a credential."""

    run_id: str
    credential_id: str | None
    provider: str | None
    kind: str
    status: str
    window_start: str | None
    window_end: str | None
    pages: int
    stored: int
    updated: int
    unchanged: int
    skipped: int
    errors: int
    duration_ms: int


class AlertFired(msgspec.Struct, frozen=True, kw_only=True):
    """``alert.fired``: an alert condition crossed (or, with ``state="resolved"``, recovered).

    ``scope``/``scope_id`` name what the alert is about (``team_daily`` +
    ``team_…``, ``credential`` + ``cred_…``, ``cell`` + ``ws/provider/model/day``…);
    ``period`` is the dedupe period (``YYYY-MM-DD``, ``YYYY-MM`` or ``""``).
    ``threshold``/``value`` are in ``unit`` (``percent`` of a cap, ``seconds``,
    ``percent`` of a provider total, ``calls``); budget alerts also carry the
    cap and the spend in USD. Fires once per crossing and period.
    """

    alert_id: str
    kind: str
    state: Literal["firing", "resolved"] = "firing"
    severity: Literal["info", "warning", "critical"] = "warning"
    workspace_id: str | None = None
    scope: str
    scope_id: str
    period: str
    threshold: Decimal | None = None
    value: Decimal | None = None
    unit: str | None = None
    limit_usd: Decimal | None = None
    current_usd: Decimal | None = None
    message: str
    fired_at: str
    test: bool = False
    # The name of what scope_id identifies (team name, user alias, key name,
    # workspace/provider of a credential), looked up when it fired.
    scope_name: str | None = None


EVENT_TYPES: dict[type[msgspec.Struct], str] = {
    GatewayKeyIssued: "gateway.key_issued",
    GatewayKeyRevoked: "gateway.key_revoked",
    GatewayQuotaExceeded: "gateway.quota_exceeded",
    GatewayKeyUpdated: "gateway.key_updated",
    LLMCallCompleted: "llm.call_completed",
    RouteDecided: "route.decided",
    IngestRunCompleted: "ingest.run_completed",
    AlertFired: "alert.fired",
}

_TYPED_COLUMNS = (
    "workspace_id",
    "user_id",
    "team_id",
    "gateway_key_id",
    "credential_id",
    "request_id",
    "provider",
    "model",
)


def typed_ids(payload: msgspec.Struct, ids: Mapping[str, str | None]) -> tuple[str | None, ...]:
    """The typed id columns of an event (`_TYPED_COLUMNS` order).

    Each from ``ids`` when given there, else the payload's field of that
    name (``gateway_key_id`` also from a ``key_id`` field), else None.
    """
    out: list[str | None] = []
    for col in _TYPED_COLUMNS:
        if col in ids:
            out.append(ids[col])
        elif col == "gateway_key_id":
            out.append(getattr(payload, "gateway_key_id", None) or getattr(payload, "key_id", None))
        else:
            out.append(getattr(payload, col, None))
    return tuple(out)


def event_type(payload: msgspec.Struct) -> str:
    """The catalog name of a payload Struct (``gateway.key_issued`` …)."""
    try:
        return EVENT_TYPES[type(payload)]
    except KeyError:
        raise TypeError(f"{type(payload).__name__} is not a registered event") from None


def event_row(
    payload: msgspec.Struct, *, ts: datetime | None = None, **ids: str | None
) -> dict[str, Any]:
    """Build an events-table row; typed id columns are taken from ``ids`` or the payload."""
    body = msgspec.to_builtins(payload, builtin_types=(Decimal,))
    row: dict[str, Any] = {
        "event_id": new_id("evt"),
        "type": event_type(payload),
        "ts": ts or utcnow(),
        "payload": _jsonable(body),
    }
    row.update(zip(_TYPED_COLUMNS, typed_ids(payload, ids), strict=True))
    return row


def _jsonable(v: Any) -> Any:
    # Money stays exact: Decimals are stored as strings in the JSON payload.
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


# -- batch path (the gateway's write-behind) -----------------------------------

EVENT_COLUMNS = ("event_id", "type", "ts", *_TYPED_COLUMNS, "payload")
"""Column order of `event_values` tuples."""

_encode = msgspec.json.Encoder().encode  # Decimals as strings, like `_jsonable`
_compiled: "weakref.WeakKeyDictionary[Dialect, bulk.Compiled]" = weakref.WeakKeyDictionary()


EventParts = tuple[str, datetime, tuple[str | None, ...], str]
"""(type, ts, typed ids, payload JSON text): an event ready to store, minus its id.

What the process writer sends its child (`metis.ledger.writer_process`): the
payload is encoded once, in the gateway, and stored as that text."""


def event_parts(payload: msgspec.Struct, ts: datetime, ids: Mapping[str, str | None]) -> EventParts:
    """The `EventParts` of a payload (money as strings, like `event_row`)."""
    return event_type(payload), ts, typed_ids(payload, ids), _encode(payload).decode()


def parts_values(parts: EventParts) -> tuple[Any, ...]:
    """An `event_values` tuple from `EventParts` (a new event id)."""
    kind, ts, typed, payload = parts
    return ("evt_" + fast_ulid(), kind, ts, *typed, payload)


def event_values(
    payload: msgspec.Struct, ts: datetime, ids: Mapping[str, str | None]
) -> tuple[Any, ...]:
    """The row `event_row` builds, as a tuple in `EVENT_COLUMNS` order, payload as JSON text.

    Same columns and values as `event_row` (tested), built without an
    intermediate dict: the payload Struct is encoded by msgspec in one call.
    """
    return parts_values(event_parts(payload, ts, ids))


def append_event_values(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Append rows from `event_values` in one executemany (no per-row SQLAlchemy work)."""
    if not rows:
        return
    dialect = conn.dialect
    c = _compiled.get(dialect)
    if c is None:
        # The payload is JSON text already: no JSON serializer for that column.
        c = bulk.compile_insert(
            events.insert().inline(), events, EVENT_COLUMNS, dialect, raw=("payload",)
        )
        _compiled[dialect] = c
    bulk.executemany(conn, c, c.process(rows))


def append_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append prepared rows (from `event_row`) in one statement."""
    if rows:
        conn.execute(events.insert(), rows)


def append_event(
    conn: Connection, payload: msgspec.Struct, *, ts: datetime | None = None, **ids: str | None
) -> str:
    """Append one event and return its ``evt_…`` id."""
    row = event_row(payload, ts=ts, **ids)
    conn.execute(events.insert(), [row])
    return str(row["event_id"])
