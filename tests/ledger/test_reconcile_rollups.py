"""The reconciled view answered from rollups equals classifying the raw rows at query time.

Random overlapping traffic (gateway rows, plugin rows sharing their correlation
ids or sent through the gateway's URL, provider rows with and without money,
two workspaces), written in random batches in any order, with revisions that
move a record to another correlation id, URL, model, day or user, and replays.
After every batch the rollup-backed answers (`reconciled_cells`, both
`reconciled_aggregate`s) must equal the raw-row reference (``from_raw=True``),
and the incrementally maintained ``usage_rollups_reconcile`` must equal a
rebuild from raw rows.
"""

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from metis.analytics.privacy import forget_user
from metis.db.tables import (
    provider_credentials,
    sync_windows,
    usage_records,
    usage_rollups_reconcile,
    users,
    workspaces,
)
from metis.ledger import reconcile, rollups
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.timeutil import day_start

GW = "http://127.0.0.1:4000"
D0 = date(2026, 11, 1)
DAYS = [D0, D0 + timedelta(days=1), D0 + timedelta(days=2)]
WSS = ["ws_a", "ws_b"]
SOURCES = ["gateway", "gateway", "hermes_plugin", "other_plugin", "provider_api_key"]
URLS = [None, GW + "/v1", "http://localhost:4000", "https://api.openai.com/v1"]
LATER = datetime(2027, 1, 1, tzinfo=UTC)


@dataclass
class _Win:
    start: datetime
    end: datetime


@dataclass
class _Filters:
    workspace_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    gateway_key_id: str | None = None
    source: str | None = None


@st.composite
def record(draw: Any) -> UsageRecord:
    source = draw(st.sampled_from(SOURCES))
    day = draw(st.sampled_from(DAYS))
    start = day_start(day) + timedelta(hours=draw(st.integers(0, 23)))
    provider = draw(st.sampled_from(["openai", "anthropic"]))
    plugin = source not in ("gateway", "provider_api_key")
    return UsageRecord(
        workspace_id=draw(st.sampled_from(WSS)),
        source=source,
        source_ref="ref",
        dedupe_key=f"k{draw(st.integers(0, 15))}",  # collisions: revisions and replays
        window_start=start,
        window_end=start,
        granularity="request" if source != "provider_api_key" else "1h",
        provider=provider,
        model=draw(st.sampled_from(["m1", "m2"])),
        model_raw="m",
        input_tokens=draw(st.integers(0, 1000)),
        output_tokens=draw(st.integers(0, 100)),
        request_count=draw(st.integers(0, 3)),
        cost_nanousd=draw(st.integers(0, 10**9)),
        cost_source=draw(st.sampled_from(["computed", "none", "provider_reported"])),
        user_id=draw(st.sampled_from([None, "usr_1", "usr_2"])),
        team_id=draw(st.sampled_from([None, "team_1"])),
        gateway_key_id=draw(st.sampled_from([None, "key_1"])) if source == "gateway" else None,
        correlation_id=draw(st.sampled_from([None, "c1", "c2", "c3"])),
        base_url=draw(st.sampled_from(URLS)) if plugin else None,
        status=draw(st.sampled_from([None, "ok", "error"])),
    )


def _reset(engine: Engine) -> None:
    with engine.begin() as c:
        tables = (usage_records, sync_windows, provider_credentials, users, workspaces)
        for t in (*rollups.RECON_TABLES, *(t for t, _ in rollups.TABLES), *tables):
            c.execute(delete(t))
        for w in WSS:
            c.execute(insert(workspaces).values(id=w, name=w, created_at=LATER))
            for prov in ("openai", "anthropic"):
                c.execute(
                    insert(provider_credentials).values(
                        id=f"cred_{w}_{prov}",
                        workspace_id=w,
                        provider=prov,
                        purpose_inference=False,
                        purpose_usage_admin=True,
                        mode="admin",
                        created_at=LATER,
                    )
                )


def _cover(engine: Engine, covered: list[tuple[str, str, date, int]]) -> None:
    with engine.begin() as c:
        for w, prov, d, hours in covered:
            c.execute(
                insert(sync_windows).values(
                    credential_id=f"cred_{w}_{prov}",
                    window_start=day_start(d),
                    window_end=day_start(d + timedelta(days=1)),
                    completed_at=day_start(d) + timedelta(hours=hours),
                    records=1,
                )
            )


def _recon_rows(engine: Engine, t: Any = usage_rollups_reconcile) -> list[tuple[Any, ...]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(select(t).order_by(*t.c))]


def _aggs(rows: list[Any], cols: list[str]) -> dict[tuple[Any, ...], tuple[int, ...]]:
    out = {}
    for a in rows:
        vals = tuple(getattr(a, m) for m in rollups.MEASURES)
        if any(vals):
            out[tuple(a.dims[x] for x in cols)] = vals
    return out


# (grouping, narrowing filter) pairs the grouped views are compared on.
CASES: list[tuple[list[str], dict[str, str]]] = [
    ([], {}),
    (["user_id", "source"], {}),
    (["model", "usage_date", "workspace_id", "provider"], {}),
    (["team_id", "gateway_key_id"], {"user_id": "usr_1"}),
    (["user_id"], {"source": "hermes_plugin"}),
    (["model", "usage_date"], {"source": "unattributed"}),
    (["model"], {"source": "drift_adjustment"}),
]


def _check(engine: Engine, urls: list[str], full: bool = True) -> None:
    start, end = DAYS[0], DAYS[-1] + timedelta(days=1)
    with engine.connect() as c:
        for ws in (None, "ws_a") if full else (None,):
            fast = reconcile.reconciled_cells(c, start, end, ws, urls)
            raw = reconcile.reconciled_cells(c, start, end, ws, urls, from_raw=True)
            assert fast == raw
        if not full:
            return
        # whole days, and a window with partial edge days (those read raw rows in both paths)
        wins = [
            _Win(day_start(start), day_start(end)),
            _Win(day_start(start) + timedelta(hours=5), day_start(end) - timedelta(hours=3)),
        ]
        for win in wins:
            for cols, narrow in CASES:
                args = (c, win, _Filters(**narrow), cols, urls)
                got = reconcile.reconciled_aggregate(*args, now=LATER)
                want = reconcile.reconciled_aggregate(*args, now=LATER, from_raw=True)
                assert _aggs(got, cols) == _aggs(want, cols), (cols, narrow)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(st.lists(record(), max_size=10), min_size=1, max_size=4),
    covered=st.lists(
        st.tuples(
            st.sampled_from(WSS),
            st.sampled_from(["openai", "anthropic"]),
            st.sampled_from(DAYS),
            st.sampled_from([12, 26]),  # partial-day and settled syncs
        ),
        max_size=4,
        unique_by=lambda t: t[:3],
    ),
    via=st.booleans(),
)
def test_rollup_reconciliation_equals_raw_classification(
    engine: Engine,
    batches: list[list[UsageRecord]],
    covered: list[tuple[str, str, date, int]],
    via: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(reconcile.GATEWAY_URLS_ENV, GW if via else "")  # views read it
    _reset(engine)
    _cover(engine, covered)
    urls = [GW] if via else []
    for batch in batches:
        with engine.begin() as c:
            upsert_usage(c, batch)
        _check(engine, urls, full=False)
    with engine.begin() as c:  # a replay of everything changes nothing
        upsert_usage(c, [r for b in batches for r in b])
    incremental = [_recon_rows(engine, t) for t in rollups.RECON_TABLES]
    with engine.begin() as c:
        rollups.rebuild(c)
    assert [_recon_rows(engine, t) for t in rollups.RECON_TABLES] == incremental
    _check(engine, urls)


def test_gateway_twin_arriving_later_moves_the_plugin_row(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case the write path must handle outside the batch: the plugin row was stored first."""
    monkeypatch.delenv(reconcile.GATEWAY_URLS_ENV, raising=False)
    _reset(engine)
    base: dict[str, Any] = {
        "workspace_id": "ws_a",
        "source_ref": "r",
        "window_start": day_start(D0),
        "window_end": day_start(D0),
        "granularity": "request",
        "provider": "openai",
        "model": "m1",
        "model_raw": "m1",
        "request_count": 1,
        "correlation_id": "chatcmpl-1",
    }
    plugin = UsageRecord(source="hermes_plugin", dedupe_key="p", cost_nanousd=5, **base)
    gateway = UsageRecord(source="gateway", dedupe_key="g", cost_nanousd=5, **base)
    with engine.begin() as c:
        upsert_usage(c, [plugin])
    assert [r[-1] for r in _recon_rows(engine)] == [5]
    classes = [r[9] for r in _recon_rows(engine)]
    assert classes == [rollups.KLASS_PLUGIN]
    with engine.begin() as c:
        upsert_usage(c, [gateway])
    assert [r[9] for r in _recon_rows(engine)] == [rollups.KLASS_DUPLICATE]
    # the gateway row changes its correlation id: the plugin row stands again
    moved = UsageRecord(
        source="gateway", dedupe_key="g", cost_nanousd=5, **{**base, "correlation_id": "x"}
    )
    with engine.begin() as c:
        upsert_usage(c, [moved])
    assert [r[9] for r in _recon_rows(engine)] == [rollups.KLASS_PLUGIN]
    _check(engine, [])


@pytest.mark.postgres_only
def test_twins_written_concurrently_on_postgresql(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway row and its plugin twin in two open transactions: the later one sees the first."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers; the lock under test is PostgreSQL's")
    monkeypatch.delenv(reconcile.GATEWAY_URLS_ENV, raising=False)
    _reset(engine)
    base: dict[str, Any] = {
        "workspace_id": "ws_a",
        "source_ref": "r",
        "window_start": day_start(D0),
        "window_end": day_start(D0),
        "granularity": "request",
        "provider": "openai",
        "model": "m1",
        "model_raw": "m1",
        "correlation_id": "chatcmpl-race",
        "cost_nanousd": 3,
    }
    conn = engine.connect()
    tx = conn.begin()
    upsert_usage(conn, [UsageRecord(source="gateway", dedupe_key="g", **base)])
    done = threading.Event()

    def plugin_writer() -> None:
        with engine.begin() as c:
            upsert_usage(c, [UsageRecord(source="hermes_plugin", dedupe_key="p", **base)])
        done.set()

    t = threading.Thread(target=plugin_writer)
    t.start()
    assert not done.wait(0.5)  # waits for the gateway writer's (workspace, correlation) lock
    tx.commit()
    conn.close()
    t.join(10)
    assert done.is_set()
    assert [r[9] for r in _recon_rows(engine)] == [rollups.KLASS_DUPLICATE]
    _check(engine, [])


def test_forget_pseudonymizes_the_reconciliation_rollup(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(reconcile.GATEWAY_URLS_ENV, raising=False)
    _reset(engine)
    with engine.begin() as c:
        c.execute(
            insert(users).values(
                id="usr_1", alias="a", display_name="a", created_at=LATER, disabled=False
            )
        )
        upsert_usage(
            c,
            [
                UsageRecord(
                    workspace_id="ws_a",
                    source="hermes_plugin",
                    source_ref="r",
                    dedupe_key="p",
                    window_start=day_start(D0),
                    window_end=day_start(D0),
                    granularity="request",
                    provider="openai",
                    model="m1",
                    model_raw="m1",
                    cost_nanousd=9,
                    user_id="usr_1",
                )
            ],
        )
    with engine.begin() as c:
        forget_user(c, "usr_1")
    rows = _recon_rows(engine)
    assert len(rows) == 1 and rows[0][5] not in ("usr_1", "") and rows[0][-1] == 9
    _check(engine, [])
