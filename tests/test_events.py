from decimal import Decimal

from sqlalchemy import Engine, select

from metis.db.tables import events
from metis.events import GatewayKeyIssued, append_event


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
