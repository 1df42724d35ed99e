"""Gateway latency histograms: buckets within their bound, maintained by the write path
exactly as a rebuild computes them, and counting every gateway call that has a latency."""

import math
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, insert, select

from metis.analytics.latency import nearest_rank
from metis.db.tables import usage_records, usage_rollups_latency, workspaces
from metis.ledger import latency_rollups as lr
from metis.ledger import rollups
from metis.ledger.prune import prune
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

T0 = datetime(2026, 11, 1, tzinfo=UTC)
QS = (0.5, 0.9, 0.95, 0.99, 1.0)


def _within(figure: int | None, exact: int) -> bool:
    assert figure is not None
    return abs(Fraction(figure - exact)) <= lr.RELATIVE_ERROR * exact


def test_every_latency_up_to_200k_ms_is_within_the_bound_of_its_bucket_value() -> None:
    for ms in range(0, 200_001):
        b = lr.bucket_of(ms)
        lo, hi = lr.bucket_range(b)
        assert lo <= ms <= hi
        assert _within(lr.bucket_value(b), ms), ms
    assert lr.bucket_value(lr.bucket_of(0)) == 0 == lr.bucket_of(-5) - lr.ZERO_BUCKET
    # Below 58 ms every bucket holds one integer: the figure is exact.
    assert all(lr.bucket_value(lr.bucket_of(ms)) == ms for ms in range(58))
    assert lr.bucket_range(lr.bucket_of(58)) == (58, 59)


@given(st.integers(1, 2**31 - 1))
def test_large_latencies_are_within_the_bound(ms: int) -> None:
    assert _within(lr.bucket_value(lr.bucket_of(ms)), ms)


def _lognormal(rng: random.Random, n: int) -> list[int]:
    return [int(rng.lognormvariate(math.log(800), 0.9)) for _ in range(n)]


def _heavy_tail(rng: random.Random, n: int) -> list[int]:
    return [min(2**31 - 1, int(50 * rng.paretovariate(1.1))) for _ in range(n)]


DISTRIBUTIONS: dict[str, Callable[[random.Random, int], list[int]]] = {
    "lognormal": _lognormal,
    "heavy_tail": _heavy_tail,
    "constant": lambda rng, n: [1234] * n,
    "zeros": lambda rng, n: [0] * n,
    "zeros_and_slow": lambda rng, n: [0 if rng.random() < 0.6 else 30_000 + i for i in range(n)],
    "small_integers": lambda rng, n: [rng.randint(1, 120) for _ in range(n)],
    "bimodal": lambda rng, n: [rng.choice((40, 9_000)) + rng.randint(0, 50) for _ in range(n)],
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("n", [1, 7, 100, 20_000])
def test_histogram_percentiles_are_within_the_bound_of_exact_nearest_rank(
    name: str, n: int
) -> None:
    vals = DISTRIBUTIONS[name](random.Random(f"{name}-{n}"), n)
    hist = Counter(lr.bucket_of(v) for v in vals)
    exact = sorted(vals)
    for q in QS:
        assert _within(lr.percentile(hist, q), nearest_rank(exact, q) or 0), (name, q)
    assert _within(lr.highest(hist), exact[-1])
    assert lr.percentile({}, 0.5) is None and lr.highest({}) is None


# ------------------------------------------------------------- maintained by the write path


def _rec(
    key: int, day: int, latency: int | None, model: int = 0, source: str = "gateway"
) -> UsageRecord:
    start = T0 + timedelta(days=day, hours=key % 7)
    return UsageRecord(
        workspace_id="ws_1",
        source=source,
        source_ref="key_1",
        dedupe_key=f"k{key}",
        window_start=start,
        window_end=start,
        granularity="request",
        provider="openai",
        model=("gpt-4o", "gpt-4o-mini", "o3")[model],
        model_raw="gpt-4o",
        input_tokens=10,
        output_tokens=5,
        request_count=1,
        cost_nanousd=100,
        cost_source="computed",
        gateway_key_id="key_1",
        status="ok",
        latency_ms=latency,
    )


def _hist(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        cols = [usage_rollups_latency.c[d] for d in (*lr.DIMS, "call_count")]
        return [tuple(r) for r in c.execute(select(*cols).order_by(*cols))]


def _reset(engine: Engine) -> None:
    with engine.begin() as c:
        for t in (*(t for t, _ in rollups.TABLES), *rollups.RECON_TABLES):
            c.execute(delete(t))
        c.execute(delete(usage_rollups_latency))
        c.execute(delete(usage_records))
        c.execute(delete(workspaces))
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=T0))


def _expected(records: dict[tuple[str, str], UsageRecord]) -> list[tuple[Any, ...]]:
    """The histogram rows the stored records should give, computed in Python."""
    c: Counter[tuple[Any, ...]] = Counter()
    for r in records.values():
        if r.source == "gateway" and r.latency_ms is not None:
            c[(r.usage_date, r.workspace_id, r.provider, r.model, lr.bucket_of(r.latency_ms))] += 1
    return sorted((*k, n) for k, n in c.items())


latencies = st.one_of(st.none(), st.integers(0, 120), st.integers(0, 10**7))
records = st.builds(
    _rec,
    key=st.integers(0, 15),
    day=st.integers(0, 3),
    latency=latencies,
    model=st.integers(0, 2),
    source=st.sampled_from(["gateway", "gateway", "hermes_plugin"]),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(records, max_size=10), min_size=1, max_size=5))
def test_incremental_histograms_equal_rebuild_after_inserts_revisions_and_replays(
    engine: Engine, batches: list[list[UsageRecord]]
) -> None:
    """Records are inserted, revised (latency, model or day changed under the same source
    and dedupe key) and replayed; the histograms always equal the stored rows' buckets."""
    _reset(engine)
    stored: dict[tuple[str, str], UsageRecord] = {}
    for batch in [*batches, *batches]:  # the second pass replays every batch
        with engine.begin() as c:
            upsert_usage(c, batch)
        for r in batch:
            stored[(r.source, r.dedupe_key)] = r
        assert _hist(engine) == _expected(stored)
    incremental = _hist(engine)
    with engine.begin() as c:
        rollups.rebuild(c)
    assert _hist(engine) == incremental


def test_a_revision_moves_exactly_one_call_and_a_replay_changes_nothing(engine: Engine) -> None:
    _reset(engine)
    with engine.begin() as c:
        upsert_usage(c, [_rec(1, 0, 500), _rec(2, 0, 500), _rec(3, 1, None)])
    d0 = T0.date()
    b500, b900 = lr.bucket_of(500), lr.bucket_of(900)
    assert _hist(engine) == [(d0, "ws_1", "openai", "gpt-4o", b500, 2)]
    with engine.begin() as c:
        upsert_usage(c, [_rec(1, 0, 500), _rec(2, 0, 500)])  # replay
    assert _hist(engine) == [(d0, "ws_1", "openai", "gpt-4o", b500, 2)]
    with engine.begin() as c:
        upsert_usage(c, [_rec(2, 0, 900)])  # revised latency
    assert _hist(engine) == [
        (d0, "ws_1", "openai", "gpt-4o", b500, 1),
        (d0, "ws_1", "openai", "gpt-4o", b900, 1),
    ]
    with engine.begin() as c:
        upsert_usage(c, [_rec(1, 0, None), _rec(3, 1, 0)])  # latency gone; one arrives
    assert _hist(engine) == [
        (d0, "ws_1", "openai", "gpt-4o", b900, 1),
        (d0 + timedelta(days=1), "ws_1", "openai", "gpt-4o", lr.ZERO_BUCKET, 1),
    ]


def test_call_counts_equal_the_raw_gateway_rows_with_a_latency(engine: Engine) -> None:
    _reset(engine)
    rng = random.Random(7)
    recs = [
        _rec(i, rng.randint(0, 6), rng.choice([None, *_lognormal(rng, 5)]), rng.randint(0, 2),
             rng.choice(["gateway", "gateway", "hermes_plugin", "provider_api_key"]))
        for i in range(3000)
    ]  # fmt: skip
    recs = [
        UsageRecord(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "dedupe_key": f"d{i}"})
        for i, r in enumerate(recs)
    ]
    with engine.begin() as c:
        upsert_usage(c, recs)
    with engine.connect() as c:
        u, t = usage_records.c, usage_rollups_latency.c
        raw = c.execute(
            select(u.usage_date, u.model, func.count())
            .where(u.source == "gateway", u.latency_ms.is_not(None))
            .group_by(u.usage_date, u.model)
            .order_by(u.usage_date, u.model)
        ).all()
        rolled = c.execute(
            select(t.usage_date, t.model, func.sum(t.call_count))
            .group_by(t.usage_date, t.model)
            .order_by(t.usage_date, t.model)
        ).all()
    assert [tuple(r) for r in raw] == [(d, m, int(n)) for d, m, n in rolled]
    assert sum(n for *_, n in raw) == sum(
        1 for r in recs if r.source == "gateway" and r.latency_ms is not None
    )


def test_rebuild_of_a_range_and_retention_keep_other_days(engine: Engine) -> None:
    _reset(engine)
    with engine.begin() as c:
        upsert_usage(c, [_rec(i, i % 4, 100 + i) for i in range(12)])
    before = _hist(engine)
    with engine.begin() as c:
        c.execute(delete(usage_rollups_latency))
        rollups.rebuild(c, T0.date() + timedelta(days=1), T0.date() + timedelta(days=3))
    kept = {T0.date() + timedelta(days=k) for k in (1, 2)}
    assert _hist(engine) == [r for r in before if r[0] in kept]
    with engine.begin() as c:
        rollups.rebuild(c)
    assert _hist(engine) == before
    # Retention deletes raw rows, never histograms; a rebuild then leaves pruned days alone.
    res = prune(engine, retention_days=3, now=T0 + timedelta(days=5))
    assert res.cutoff == T0.date() + timedelta(days=2) and res.records == 6
    with engine.begin() as c:
        rollups.rebuild(c)
    assert _hist(engine) == before


def test_metis_db_rebuild_rollups_restores_the_histograms(cli: Any, engine: Engine) -> None:
    _reset(engine)
    with engine.begin() as c:
        upsert_usage(c, [_rec(i, i % 3, 200 * i, i % 2) for i in range(9)])
    before = _hist(engine)
    with engine.begin() as c:
        c.execute(delete(usage_rollups_latency))
    cli.ok("db", "rebuild-rollups")
    assert _hist(engine) == before and len(before) == 9
