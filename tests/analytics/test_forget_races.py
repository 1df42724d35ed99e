"""Forget covers what is still on its way (issue 18 #5).

Input that showed it: a call by user U, then at once ``POST
/analytics/user/U/forget``: the answer said ``usage_records_pseudonymized: 0``,
the database still held a usage row and two events with U's id, and
``group_by=user`` still listed U; in another run a call made after forget was
answered 200 and recorded under the real id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import Engine, or_, select

from metis.analytics.admin_tokens import create_token
from metis.db.tables import events, spend_counters, usage_records
from metis.events import LLMCallCompleted, event_values
from metis.identity.users import get_user
from metis.ledger.counters import Delta
from metis.ledger.record import UsageRecord
from metis.ledger.writer import PendingEvent, _WriterConnection
from tests.plugins.servers import GatewayServer


def _admin(engine: Engine, gw: GatewayServer) -> httpx.Client:
    with engine.begin() as c:
        token = create_token(c, "t")[1]
    return httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _traces_of(engine: Engine, uid: str) -> tuple[int, int]:
    with engine.connect() as c:
        recs = c.execute(select(usage_records.c.id).where(usage_records.c.user_id == uid)).all()
        evs = c.execute(select(events.c.payload).where(events.c.user_id == uid)).all()
        payloads = c.execute(select(events.c.payload)).scalars().all()
    assert all(uid not in json.dumps(p) for p in payloads)
    return len(recs), len(evs)


def test_forget_right_after_a_call_and_a_call_after_forget(
    gateway: GatewayServer, engine: Engine
) -> None:
    _, secret = gateway.issue_key("u-key", user="uma", team="eng")
    with engine.connect() as c:
        uid = get_user(c, "uma").id
    client = gateway.openai(secret)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    # no flush: the record and its events sit in the write-behind buffer
    api = _admin(engine, gateway)
    r = api.post(f"/analytics/user/{uid}/forget")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage_records_pseudonymized"] == 1 and body["keys_revoked"] == 1
    assert body["events_pseudonymized"] >= 2  # llm.call_completed and route.decided
    # the user's key fails from the very next request (no key-cache poll needed)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    gateway.flush()
    assert _traces_of(engine, uid) == (0, 0)
    users = api.get("/analytics/cost", params={"group_by": "user"}).json()["data"]
    assert uid not in {u["user_id"] for u in users}
    assert sum(1 for u in users if u["user_id"]) == 1  # the call still counts, under a pseudonym
    with engine.connect() as c:
        counters = c.execute(
            select(spend_counters.c.scope_id).where(spend_counters.c.scope_id == uid)
        ).all()
    assert counters == []
    api.close()


def test_rows_written_after_forget_get_a_pseudonym(engine: Engine, gateway: GatewayServer) -> None:
    """A call in flight during the forget completes afterwards: the write path stamps it
    with a pseudonym (its record, its events and its spend counters)."""
    gateway.issue_key("v-key", user="vic", team="eng")
    with engine.connect() as c:
        uid = get_user(c, "vic").id
    api = _admin(engine, gateway)
    assert api.post(f"/analytics/user/{uid}/forget").status_code == 200
    at = datetime.now(UTC)
    rec = UsageRecord(
        workspace_id=gateway.workspace_id, source="gateway", source_ref="key_v",
        dedupe_key="req_inflight", window_start=at, window_end=at, granularity="request",
        provider="openai", model="gpt-4o", model_raw="gpt-4o", input_tokens=5,
        output_tokens=5, request_count=1, cost_nanousd=123, user_id=uid,
    )  # fmt: skip
    ev = LLMCallCompleted(
        request_id="req_inflight", workspace_id=gateway.workspace_id, gateway_key_id="key_v",
        user_id=uid, team_id=None, inbound_shape="openai", provider="openai", model="gpt-4o",
        status="ok", http_status=200, latency_ms=5,
    )  # fmt: skip
    pending = PendingEvent(ev, at, {"workspace_id": gateway.workspace_id})
    writer = _WriterConnection(engine)
    try:
        writer.write_rows(
            [rec],
            [event_values(pending.payload, pending.ts, pending.ids)],
            {("user_daily", uid, at.strftime("%Y-%m-%d")): Delta(spent=123)},
        )
    finally:
        writer.discard()
    assert _traces_of(engine, uid) == (0, 0)
    with engine.connect() as c:
        row = c.execute(
            select(usage_records.c.user_id).where(usage_records.c.dedupe_key == "req_inflight")
        ).scalar_one()
        (payload,) = c.execute(
            select(events.c.payload).where(events.c.request_id == "req_inflight")
        ).scalars()
        n = c.execute(
            select(spend_counters.c.scope_id).where(
                or_(spend_counters.c.scope_id == uid, spend_counters.c.scope_id == row)
            )
        ).all()
    assert row.startswith("usr_") and row != uid and payload["user_id"].startswith("usr_")
    assert payload["user_id"] != uid and len(n) == 1 and n[0][0] != uid
    api.close()


def test_forget_of_an_idle_user_still_answers(gateway: GatewayServer, engine: Engine) -> None:
    gateway.issue_key("w-key", user="wes")
    with engine.connect() as c:
        uid = get_user(c, "wes").id
    api = _admin(engine, gateway)
    body: dict[str, Any] = api.post(f"/analytics/user/{uid}/forget").json()
    assert body["usage_records_pseudonymized"] == 0 and body["keys_revoked"] == 1
    api.close()
