"""Rollups maintained by upsert_usage equal rollups rebuilt from raw records."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from metis.db.tables import usage_records, usage_rollups_daily, workspaces
from metis.ledger import rollups
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _rollup_rows(engine: Engine, table: Any = usage_rollups_daily) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        q = select(table).order_by(*table.c)
        return [tuple(r) for r in c.execute(q)]


ALL_TABLES = (*(t for t, _ in rollups.TABLES), *rollups.RECON_TABLES)


def _all_rollups(engine: Engine) -> list[list[tuple[Any, ...]]]:
    return [_rollup_rows(engine, t) for t in ALL_TABLES]


def _totals(engine: Engine, table: Any, where: Any = None) -> list[int]:
    """Every measure of ``table`` summed (Python ints: exact at any size)."""
    with engine.connect() as c:
        q = select(*(table.c[m] for m in rollups.MEASURES))
        if where is not None:
            q = q.where(where)
        rows = c.execute(q).all()
    return [sum(int(r[i]) for r in rows) for i in range(len(rollups.MEASURES))]


def _raw_totals(engine: Engine, where: Any = None) -> list[int]:
    """The same measures computed from the raw records (`rollups.contribution`)."""
    r = usage_records.c
    with engine.connect() as c:
        q = select(usage_records.c.dedupe_key, *(r[n] for n in rollups.SOURCE_COLUMNS))
        if where is not None:
            q = q.where(where)
        vecs = [rollups.contribution(row)[1] for row in c.execute(q).mappings()]
    return [sum(v[i] for v in vecs) for i in range(len(rollups.MEASURES))]


def _rec(
    key: int, day: int, user: int | None, tokens: int, cost: int, status: str | None
) -> UsageRecord:
    start = T0 + timedelta(days=day, hours=key % 5)
    return UsageRecord(
        workspace_id="ws_1",
        source="gateway" if key % 2 else "hermes_plugin",
        source_ref="key_1",
        dedupe_key=f"k{key}",
        window_start=start,
        window_end=start,
        granularity="request",
        provider="openai",
        model="gpt-4o" if key % 3 else "gpt-4o-mini",
        model_raw="gpt-4o",
        input_tokens=tokens,
        cached_input_tokens=tokens // 3,
        output_tokens=tokens // 2,
        request_count=1,
        cost_nanousd=cost,
        cost_source="computed",
        user_id=None if user is None else f"usr_{user}",
        gateway_key_id="key_1" if key % 2 else None,
        status=status,
    )


records = st.builds(
    _rec,
    key=st.integers(0, 12),
    day=st.integers(0, 3),
    user=st.one_of(st.none(), st.integers(0, 2)),
    tokens=st.integers(0, 10_000),
    cost=st.integers(0, 10**12),
    status=st.sampled_from([None, "ok", "error", "upstream_error"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(records, max_size=8), min_size=1, max_size=5))
def test_incremental_rollups_equal_rebuild(
    engine: Engine, batches: list[list[UsageRecord]]
) -> None:
    with engine.begin() as c:
        for t in ALL_TABLES:
            c.execute(delete(t))
        c.execute(delete(usage_records))
        c.execute(delete(workspaces))
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))
    for batch in batches:
        with engine.begin() as c:
            upsert_usage(c, batch)
        with engine.begin() as c:  # a replay changes nothing
            upsert_usage(c, batch)
    everything = _all_rollups(engine)
    incremental = everything[0]
    with engine.begin() as c:
        rollups.rebuild(c)
    assert everything == _all_rollups(engine)
    with engine.connect() as c:
        total = c.execute(select(usage_records.c.cost_nanousd)).scalars().all()
    assert sum(r[-1] for r in incremental) == sum(total)
    # Every rollup path sums to the raw rows it covers, every measure: the
    # daily rollups all rows, the reconciliation rollups the non-gateway rows.
    everyone = _raw_totals(engine)
    for t, _ in rollups.TABLES:
        assert _totals(engine, t) == everyone, t.name
    others = _raw_totals(engine, usage_records.c.source != rollups.GATEWAY_SOURCE)
    for t in rollups.RECON_TABLES:
        assert _totals(engine, t) == others, t.name


def test_rebuild_range_keeps_other_days(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))
        upsert_usage(c, [_rec(1, 0, 1, 10, 5, None), _rec(2, 2, None, 20, 7, "error")])
    before = _rollup_rows(engine)
    every = _all_rollups(engine)
    with engine.begin() as c:
        assert rollups.rebuild(c, T0.date() + timedelta(days=2), T0.date() + timedelta(days=3)) == 1
    assert _all_rollups(engine) == every
    err = [r for r in before if r[0] == (T0 + timedelta(days=2)).date()]
    assert err[0][list(usage_rollups_daily.c.keys()).index("error_count")] == 1
    assert err[0][list(usage_rollups_daily.c.keys()).index("user_id")] == ""


def test_cli_rebuild_rollups(cli: Any, engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))
        upsert_usage(c, [_rec(1, 0, 1, 10, 5, None), _rec(2, 2, None, 20, 7, "error")])
        c.execute(delete(usage_rollups_daily))
    assert "2 rollup rows" in cli.ok("db", "rebuild-rollups").stdout
    assert len(_rollup_rows(engine)) == 2
    bad = cli.run("db", "rebuild-rollups", "--from", "yesterday")
    assert bad.exit_code != 0 and "--from must be a date" in bad.stderr


def test_rebuild_keeps_rollups_of_pruned_days(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))
        upsert_usage(c, [_rec(1, 0, 1, 10, 5, None), _rec(2, 2, None, 20, 7, "error")])
        # retention pruned day 0's raw rows; its rollup stays
        c.execute(delete(usage_records).where(usage_records.c.dedupe_key == "k1"))
    before = _all_rollups(engine)
    with engine.begin() as c:
        assert rollups.rebuild(c) == 1
    assert _all_rollups(engine) == before
