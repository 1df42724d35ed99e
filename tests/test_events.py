from datetime import UTC, datetime
from decimal import Decimal

import msgspec
from sqlalchemy import Engine, delete, select

from metis.db.tables import events
from metis.events import (
    GatewayKeyIssued,
    GatewayKeyRevoked,
    GatewayQuotaExceeded,
    LLMCallCompleted,
    RouteDecided,
    append_event,
    append_event_values,
    append_events,
    event_row,
    event_values,
)


def test_append_event_fills_typed_columns_and_keeps_money_exact(engine: Engine) -> None:
    payload = GatewayKeyIssued(
        key_id="key_1",
        name="n",
        workspace_path="/w",
        user_id="usr_1",
        team_id=None,
        allowed_models=("gpt-4o-mini",),
        daily_cap_usd=Decimal("0.100000001"),
        issued_at="2026-11-22T00:00:00Z",
    )
    with engine.begin() as c:
        append_event(c, payload, workspace_id="ws_1")
    with engine.connect() as c:
        row = c.execute(select(events)).mappings().one()
    assert row["type"] == "gateway.key_issued"
    assert row["gateway_key_id"] == "key_1"
    assert row["user_id"] == "usr_1"
    assert row["workspace_id"] == "ws_1"
    assert Decimal(row["payload"]["daily_cap_usd"]) == Decimal("0.100000001")
    assert row["payload"]["allowed_models"] == ["gpt-4o-mini"]


def _read(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as c:
        rows = c.execute(select(events).order_by(events.c.id)).mappings().all()
    return [{k: v for k, v in r.items() if k not in ("id", "event_id")} for r in rows]


def test_event_values_store_exactly_what_event_row_stores(engine: Engine) -> None:
    """The write-behind's tuple path and the dict path give identical rows."""
    ts = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
    cases: list[tuple[msgspec.Struct, dict[str, str | None]]] = [
        (
            LLMCallCompleted(
                request_id="req_1",
                workspace_id="ws_1",
                gateway_key_id="key_1",
                user_id="usr_1",
                team_id=None,
                inbound_shape="openai",
                provider="openai",
                model="gpt-4o-mini",
                status="ok",
                http_status=200,
                latency_ms=3,
                input_tokens=13,
                output_tokens=5,
                cost_usd=Decimal("0.000004950"),
                cost_source="computed",
                pricing_version="p1",
                correlation_id="chatcmpl-é",
            ),
            {"workspace_id": "ws_1"},
        ),
        (
            RouteDecided(
                request_id="req_1",
                candidates=["openai:gpt-4o-mini"],
                winner_index=-1,
                reason="quota_exceeded",
                attempts=[{"target": "openai:gpt-4o-mini", "status": "ok", "n": 1}],
                inbound_shape="anthropic",
            ),
            {"workspace_id": "ws_1", "user_id": None, "team_id": "team_1", "gateway_key_id": "k"},
        ),
        (
            GatewayQuotaExceeded(
                gateway_key_id="key_2",
                user_id="usr_2",
                team_id="team_2",
                scope="team_daily",
                limit_usd=Decimal("0.001"),
                current_usd=Decimal("1E-9"),
                inbound_shape="openai",
            ),
            {"workspace_id": "ws_1", "request_id": "req_2"},
        ),
        (  # key_id stands in for gateway_key_id
            GatewayKeyRevoked(key_id="key_3", revoked_at="2026-11-30T00:00:00Z", reason="x"),
            {},
        ),
    ]
    with engine.begin() as c:
        append_events(c, [event_row(p, ts=ts, **ids) for p, ids in cases])
    expected = _read(engine)
    with engine.begin() as c:
        c.execute(delete(events))
    with engine.begin() as c:
        append_event_values(c, [event_values(p, ts, ids) for p, ids in cases])
    assert _read(engine) == expected
    assert expected[0]["payload"]["cost_usd"] == "0.000004950"  # type: ignore[index]
    with engine.connect() as c:
        ids = c.execute(select(events.c.event_id)).scalars().all()
    assert len(set(ids)) == 4 and all(i.startswith("evt_") and len(i) == 30 for i in ids)
