"""The idempotent write path: replays change nothing, revisions replace values."""

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from metis.db.tables import usage_records, workspaces
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _ws(engine: Engine) -> None:
    with engine.begin() as c:
        if c.execute(select(workspaces.c.id)).first() is None:
            c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))


def rec(key: str, tokens: int = 10, cost: int = 100, hour: int = 0) -> UsageRecord:
    start = T0 + timedelta(hours=hour)
    return UsageRecord(
        workspace_id="ws_1",
        source="provider_api_key",
        source_ref="cred_1",
        dedupe_key=key,
        window_start=start,
        window_end=start + timedelta(hours=1),
        granularity="1h",
        provider="openai",
        model="gpt-4o-mini",
        model_raw="gpt-4o-mini-2024-07-18",
        input_tokens=tokens,
        output_tokens=tokens // 2,
        request_count=1,
        cost_nanousd=cost,
        cost_source="computed",
    )


def snapshot(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as c:
        rows = c.execute(select(usage_records).order_by(usage_records.c.dedupe_key)).mappings()
        return [dict(r) for r in rows]


def test_insert_replay_revise(engine: Engine) -> None:
    _ws(engine)
    with engine.begin() as c:
        counts = upsert_usage(c, [rec("a"), rec("b")])
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)
    first = snapshot(engine)

    with engine.begin() as c:
        counts = upsert_usage(c, [rec("a"), rec("b")])
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 2)
    assert snapshot(engine) == first  # not even updated_at or revision moved

    with engine.begin() as c:
        counts = upsert_usage(c, [rec("a", tokens=20, cost=250), rec("b")])
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)
    after = {r["dedupe_key"]: r for r in snapshot(engine)}
    assert after["a"]["revision"] == 2
    assert after["a"]["input_tokens"] == 20 and after["a"]["cost_nanousd"] == 250
    assert after["a"]["ingested_at"] == first[0]["ingested_at"]
    assert after["b"] == first[1]


def test_same_key_twice_in_one_batch_keeps_the_last(engine: Engine) -> None:
    _ws(engine)
    with engine.begin() as c:
        counts = upsert_usage(c, [rec("a", tokens=1), rec("a", tokens=2), rec("a", tokens=3)])
    assert (counts.inserted, counts.updated) == (1, 2)
    (row,) = snapshot(engine)
    assert row["input_tokens"] == 3 and row["revision"] == 3


batches = st.lists(
    st.builds(
        rec,
        key=st.sampled_from(["a", "b", "c", "d"]),
        tokens=st.integers(0, 5),
        cost=st.integers(0, 3),
        hour=st.integers(0, 30),
    ),
    max_size=12,
)
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _reset(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(delete(usage_records))


def _values(engine: Engine) -> list[tuple[object, ...]]:
    cols = ["dedupe_key", "input_tokens", "cost_nanousd", "window_start", "revision"]
    return [tuple(r[c] for c in cols) for r in snapshot(engine)]


@PROPERTY
@given(batch=batches)
def test_upserting_twice_equals_upserting_once(engine: Engine, batch: list[UsageRecord]) -> None:
    _ws(engine)
    _reset(engine)
    with engine.begin() as c:
        upsert_usage(c, batch)
    once = snapshot(engine)
    with engine.begin() as c:
        counts = upsert_usage(c, batch)
    # Replaying a batch re-applies its internal revisions, so only the final
    # value per key matters: the stored values must equal the first pass.
    strip = [{k: v for k, v in r.items() if k not in ("revision", "updated_at")} for r in once]
    again = [
        {k: v for k, v in r.items() if k not in ("revision", "updated_at")}
        for r in snapshot(engine)
    ]
    assert again == strip
    distinct_last = {r.dedupe_key: r for r in batch}
    if len(distinct_last) == len(batch):
        # no key repeated inside the batch: the replay is a pure no-op
        assert counts.unchanged == len(batch)
        assert snapshot(engine) == once


@PROPERTY
@given(revisions=batches, split=st.integers(0, 12))
def test_any_interleaving_leaves_the_last_revision(
    engine: Engine, revisions: list[UsageRecord], split: int
) -> None:
    _ws(engine)
    _reset(engine)
    with engine.begin() as c:
        upsert_usage(c, revisions[:split])
    with engine.begin() as c:
        upsert_usage(c, revisions[split:])
    expected = {}
    for r in revisions:
        expected[r.dedupe_key] = (r.input_tokens, r.cost_nanousd, r.window_start)
    got = {k: (t, cost, ws) for k, t, cost, ws, _rev in _values(engine)}
    assert got == expected


def test_stored_values_equal_a_plain_sqlalchemy_insert(engine: Engine) -> None:
    """The tuple/driver-level upsert stores byte-for-byte what SQLAlchemy's dict path stores."""
    _ws(engine)
    plain = rec("x", tokens=7)
    rich = msgspec.structs.replace(
        rec("y", tokens=9),
        window_start=datetime(2026, 11, 1, 13, 14, 15, 161718, tzinfo=timezone(timedelta(hours=2))),
        metadata={"tag": "é", "n": [1, 2]},
        batch=True,
        user_id="usr_1",
        status="ok",
        latency_ms=12,
        run_id="run_1",
    )
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with engine.begin() as c:
        for r in (plain, rich):
            row = {**r.value_dict(), "dedupe_key": "sa-" + r.dedupe_key}
            row |= {"ingested_at": now, "updated_at": now, "revision": 1, "run_id": r.run_id}
            row["content_sha256"] = r.content_sha256()
            c.execute(insert(usage_records).values(**row))
        upsert_usage(c, [plain, rich])
    skip = {"id", "dedupe_key", "ingested_at", "updated_at"}
    with engine.connect() as c:
        raw = c.exec_driver_sql("SELECT * FROM usage_records ORDER BY dedupe_key")
        names = list(raw.keys())
        stored = {
            r[names.index("dedupe_key")]: {
                k: v for k, v in zip(names, r, strict=True) if k not in skip
            }
            for r in raw.all()
        }
    assert stored["x"] == stored["sa-x"]
    assert stored["y"] == stored["sa-y"]
    assert stored["y"]["content_sha256"] == rich.content_sha256()


def test_content_hash_is_stable() -> None:
    """Pinned: a changed hash would turn every replay of an existing record into a revision."""
    r = msgspec.structs.replace(
        rec("req_1"),
        window_start=datetime(2026, 11, 30, 12, 34, 56, 789000, tzinfo=UTC),
        metadata={"tag": "é", "n": [1, 2]},
        batch=True,
        run_id="run_x",
    )
    assert r.content_sha256() == (
        "5781acb2de83c32bc0796b805a628add98de2e8444d500482f792f47ed8397f3"
    )  # computed with the implementation before the write path was optimized
