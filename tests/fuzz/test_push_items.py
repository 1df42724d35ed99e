"""Fuzzing push ingestion items (``POST /v1/ingest/usage`` / ``metis ingest push``).

Each item of a batch is validated alone: whatever a field holds, the item is
either stored (with counts and cost inside the ledger's 64-bit columns) or
rejected with reasons naming the field. The batch never fails as a whole, and
nothing raises out of `ingest_items` (which the HTTP layer would turn into a 500).
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from metis.db.tables import usage_records, workspaces
from metis.ingest.push import PushTarget, ingest_items
from metis.workspaces import add_workspace
from tests.fuzz.conftest import SeededServer
from tests.fuzz.hostile import hostile_values, mutated
from tests.fuzz.settings import fuzz_settings

INT64 = 2**63 - 1
BASE = {
    "idempotency_key": "req-1",
    "time": "2026-11-02T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1000,
    "cached_input_tokens": 200,
    "output_tokens": 50,
    "reasoning_tokens": 10,
    "cost_usd": "0.0123",
    "session_id": "s1",
    "user": "alice",
    "metadata": {"agent": "hermes"},
}
FIELDS = [*sorted(BASE), "window_start", "window_end", "granularity", "base_url", "extra"]


@st.composite
def items(draw: st.DrawFn) -> Any:
    """A valid item with a few fields replaced, removed or added with hostile values."""
    item: dict[str, Any] = copy.deepcopy(BASE)
    item["idempotency_key"] = f"k{draw(st.integers(0, 10**6))}"
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(FIELDS))
        if draw(st.integers(0, 4)) == 0:
            item.pop(name, None)
        else:
            item[name] = copy.deepcopy(draw(hostile_values))
    return item


@given(
    st.lists(
        st.one_of(items(), mutated(BASE), hostile_values.map(copy.deepcopy)), min_size=1, max_size=5
    )
)
@fuzz_settings(150, deadline_ms=5000)
def test_hostile_items_are_stored_or_rejected_one_by_one(
    engine: Engine, raw_items: list[Any]
) -> None:
    wid = _workspace(engine)
    with engine.begin() as conn:
        result = ingest_items(conn, PushTarget(wid, "hermes_plugin", "itok_fuzz"), raw_items)
    seen = len(result.accepted) + len(result.unchanged) + len(result.revised)
    assert seen + len(result.rejected) == len(raw_items)
    for r in result.rejected:
        assert r.reasons and all(isinstance(x, str) and x for x in r.reasons)
    with engine.connect() as conn:
        worst = conn.execute(
            select(
                func.max(usage_records.c.cost_nanousd),
                func.min(usage_records.c.input_tokens),
                func.min(usage_records.c.cost_nanousd),
            )
        ).one()
    if worst[0] is not None:
        assert worst[0] <= INT64 and worst[1] >= 0 and worst[2] >= 0


def _workspace(engine: Engine) -> str:
    with engine.begin() as conn:
        wid = conn.execute(select(workspaces.c.id).where(workspaces.c.name == "ws-fuzz")).scalar()
        return str(wid) if wid else add_workspace(conn, "ws-fuzz").id


def test_counts_whose_cost_overflows_are_rejected_not_a_500(seeded_server: SeededServer) -> None:
    """Found by fuzzing: 1e15 input and output tokens of a priced model used to compute a
    cost beyond 64 bits, and the insert failed with a 500."""
    item = {**BASE, "input_tokens": 10**15, "output_tokens": 10**15}
    del item["cost_usd"], item["cached_input_tokens"], item["reasoning_tokens"]
    r = httpx.post(
        f"{seeded_server.url}/v1/ingest/usage",
        headers={"Authorization": f"Bearer {seeded_server.ingest_token}"},
        json={"items": [item, {**BASE, "idempotency_key": "fine"}]},
        timeout=30,
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == ["fine"]
    (rej,) = body["rejected"]
    assert rej["index"] == 0 and "exceeds $1e9" in rej["reasons"][0]
