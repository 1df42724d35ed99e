"""Property: any sequence of pushed batches (replays, revisions, bad items) leaves exactly
the last valid version of each key stored, and every item is classified correctly."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from metis.db.tables import usage_records, workspaces
from metis.ingest.push import PushTarget, ingest_items
from metis.timeutil import utcnow

KEYS = ["a", "b", "c", "d"]


@st.composite
def an_item(draw: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "idempotency_key": draw(st.sampled_from(KEYS)),
        "time": "2026-11-01T10:00:00Z",
        "provider": "openai",
        "model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini"])),
        "input_tokens": draw(st.integers(0, 3)) * 100,
        "output_tokens": draw(st.integers(0, 2)) * 10,
        "cost_usd": draw(st.sampled_from(["0.001", "0.002"])),
    }
    bad = draw(st.sampled_from([None, None, None, "neg", "extra", "type", "future"]))
    if bad == "neg":
        item["output_tokens"] = -1
    elif bad == "extra":
        item["colour"] = "red"
    elif bad == "type":
        item["input_tokens"] = "lots"
    elif bad == "future":
        item["time"] = "2999-01-01T00:00:00Z"
    return item


def _valid(item: dict[str, Any]) -> bool:
    return (
        item["output_tokens"] >= 0
        and "colour" not in item
        and isinstance(item["input_tokens"], int)
        and item["time"].startswith("2026")
    )


def _value(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item["model"], item["input_tokens"], item["output_tokens"], item["cost_usd"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(an_item(), max_size=6), min_size=1, max_size=5))
def test_push_sequence_keeps_last_valid_version(
    engine: Engine, batches: list[list[dict[str, Any]]]
) -> None:
    with engine.begin() as c:
        c.execute(delete(usage_records))
        if c.execute(select(workspaces.c.id).where(workspaces.c.id == "ws_p")).first() is None:
            c.execute(insert(workspaces).values(id="ws_p", name="p", created_at=utcnow()))
    target = PushTarget("ws_p", "hermes_plugin", "itok_x")
    stored: dict[str, tuple[Any, ...]] = {}
    revisions: dict[str, int] = {}
    for batch in batches:
        with engine.begin() as c:
            res = ingest_items(c, target, batch)
        want: dict[str, list[str]] = {"accepted": [], "unchanged": [], "revised": []}
        rejected = []
        for i, item in enumerate(batch):
            k = item["idempotency_key"]
            if not _valid(item):
                rejected.append(i)
                continue
            v = _value(item)
            if k not in stored:
                want["accepted"].append(k)
                revisions[k] = 1
            elif stored[k] == v:
                want["unchanged"].append(k)
            else:
                want["revised"].append(k)
                revisions[k] += 1
            stored[k] = v
        assert res.accepted == want["accepted"]
        assert res.unchanged == want["unchanged"]
        assert res.revised == want["revised"]
        assert [r.index for r in res.rejected] == rejected
        assert all(r.reasons for r in res.rejected)
    with engine.connect() as c:
        rows = c.execute(
            select(
                usage_records.c.dedupe_key,
                usage_records.c.model,
                usage_records.c.input_tokens,
                usage_records.c.output_tokens,
                usage_records.c.cost_nanousd,
                usage_records.c.revision,
            )
        ).all()
    got = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
    assert got == {
        k: (m, i, o, 1_000_000 if cost == "0.001" else 2_000_000)
        for k, (m, i, o, cost) in stored.items()
    }
    assert {r[0]: r[5] for r in rows} == revisions
