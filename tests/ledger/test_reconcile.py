"""Reconciliation: generated overlapping traffic reconciles to the ground truth, in any order."""

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from metis.db.tables import (
    provider_credentials,
    sync_windows,
    usage_records,
    workspaces,
)
from metis.ledger import rollups
from metis.ledger.reconcile import (
    NO_USAGE_API,
    Totals,
    gateway_url_variants,
    reconciled_aggregate,
    reconciled_cells,
    reconciled_totals,
)
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.timeutil import day_start
from metis.util.urls import VIA_GATEWAY_BASE_URL

GW_URL = "http://127.0.0.1:4000"
D0 = date(2026, 11, 1)
DAYS = [D0, D0 + timedelta(days=1)]
MODELS = ["gpt-4o-mini", "gpt-4o"]
PATHS = ["gateway", "gateway+plugin_corr", "gateway+plugin_url", "plugin_direct", "bypass"]
WS = "ws_r"
CRED = "cred_r"


@dataclass(frozen=True)
class Call:
    i: int
    day: date
    hour: int
    model: str
    path: str
    inp: int
    out: int
    cost: int


calls_st = st.lists(
    st.builds(
        Call,
        i=st.just(0),
        day=st.sampled_from(DAYS),
        hour=st.integers(0, 23),
        model=st.sampled_from(MODELS),
        path=st.sampled_from(PATHS),
        inp=st.integers(0, 5000),
        out=st.integers(0, 2000),
        cost=st.integers(0, 10**7),
    ),
    max_size=14,
).map(
    lambda cs: [
        Call(n, *(getattr(c, f) for f in list(c.__dataclass_fields__)[1:]))
        for n, c in enumerate(cs)
    ]
)


def rec(source: str, key: str, day: date, hour: int, model: str, **kw: Any) -> UsageRecord:
    start = day_start(day) + timedelta(hours=hour)
    gran = kw.pop("granularity", "request")
    end = start + timedelta(hours=1) if gran == "1h" else start
    return UsageRecord(
        workspace_id=WS,
        source=source,
        source_ref="ref",
        dedupe_key=key,
        window_start=start,
        window_end=end,
        granularity=gran,
        provider="openai",
        model=model,
        model_raw=model,
        **kw,
    )


def versions(calls: list[Call], covered: set[date], noise: bool) -> list[list[UsageRecord]]:
    """Per logical record, its versions in the order they must be applied (last is final)."""
    out: list[list[UsageRecord]] = []
    for c in calls:
        m = {
            "input_tokens": c.inp,
            "output_tokens": c.out,
            "cost_nanousd": c.cost,
            "request_count": 1,
        }
        stale = {**m, "input_tokens": c.inp + 7, "cost_nanousd": c.cost + 3}
        if c.path.startswith("gateway"):
            out.append(
                [
                    rec(
                        "gateway",
                        f"gw{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        user_id=f"usr_{c.i % 3}",
                        correlation_id=f"resp-{c.i}",
                        **m,
                    )
                ]
            )
        if c.path == "gateway+plugin_corr":
            out.append(
                [
                    rec(
                        "hermes_plugin",
                        f"p{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        correlation_id=f"resp-{c.i}",
                        base_url="https://api.openai.com/v1",
                        **stale,
                    ),
                    rec(
                        "hermes_plugin",
                        f"p{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        correlation_id=f"resp-{c.i}",
                        base_url="https://api.openai.com/v1",
                        **m,
                    ),
                ]
            )
        if c.path == "gateway+plugin_url":
            out.append(
                [
                    rec(
                        "hermes_plugin",
                        f"p{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        base_url=GW_URL + "/v1",
                        **m,
                    )
                ]
            )
        if c.path == "plugin_direct":
            out.append(
                [
                    rec(
                        "hermes_plugin",
                        f"p{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        correlation_id=f"direct-{c.i}",
                        base_url="https://api.openai.com/v1",
                        **stale,
                    ),
                    rec(
                        "hermes_plugin",
                        f"p{c.i}",
                        c.day,
                        c.hour,
                        c.model,
                        correlation_id=f"direct-{c.i}",
                        base_url="https://api.openai.com/v1",
                        **m,
                    ),
                ]
            )
    # Provider hourly buckets: everything, bypass traffic included; a bucket grows
    # during the day (an earlier, smaller version precedes the final one).
    buckets: dict[tuple[date, str, int], Totals] = {}
    for c in calls:
        k = (c.day, c.model, c.hour)
        buckets[k] = buckets.get(k, Totals()) + Totals(
            input_tokens=c.inp, output_tokens=c.out, cost_nanousd=c.cost, request_count=1
        )
    for (d, model, hour), t in buckets.items():
        if d not in covered and not noise:
            continue
        final = {k: v for k, v in t.measures().items()}
        partial = {k: v // 2 for k, v in final.items()}
        extra = {} if d in covered else {"input_tokens": final["input_tokens"] + 99}
        key = f"prov:{d}:{model}:{hour}"
        vs = [
            rec(
                "provider_api_key",
                key,
                d,
                hour,
                model,
                granularity="1h",
                cost_source="provider_reported",
                **partial,
            )
        ]
        vs.append(
            rec(
                "provider_api_key",
                key,
                d,
                hour,
                model,
                granularity="1h",
                cost_source="provider_reported",
                **{**final, **extra},
            )
        )
        out.append(vs)
    return out


def truth(
    calls: list[Call], covered: set[date]
) -> dict[tuple[str, date], tuple[int, int, int, int]]:
    t: dict[tuple[str, date], tuple[int, int, int, int]] = {}
    for c in calls:
        if c.path == "bypass" and c.day not in covered:
            continue  # nobody but the (absent) provider data saw it
        a = t.get((c.model, c.day), (0, 0, 0, 0))
        t[(c.model, c.day)] = (a[0] + c.inp, a[1] + c.out, a[2] + c.cost, a[3] + 1)
    return t


def schedule(recs: list[list[UsageRecord]], rnd: random.Random, replays: int) -> list[UsageRecord]:
    """A random interleaving of all versions, each logical record's versions kept in order,
    plus random replays of versions already applied (a replay of a stale one is followed by
    the final one again, as a resend of a whole old batch would be)."""
    slots = [i for i, vs in enumerate(recs) for _ in vs]
    rnd.shuffle(slots)
    nxt = [0] * len(recs)
    order: list[UsageRecord] = []
    for s in slots:
        order.append(recs[s][nxt[s]])
        nxt[s] += 1
    for _ in range(replays):
        if recs:
            vs = recs[rnd.randrange(len(recs))]
            order.insert(rnd.randrange(len(order) + 1), vs[-1])
    # Whatever was interleaved, the final versions are resent last at least once
    # where a stale replay could have come after them.
    order.extend(vs[-1] for vs in recs)
    return order


@pytest.fixture
def ws_engine(engine: Engine) -> Engine:
    now = datetime(2026, 11, 3, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id=WS, name="r", created_at=now))
        c.execute(
            insert(provider_credentials).values(
                id=CRED,
                workspace_id=WS,
                provider="openai",
                purpose_inference=False,
                purpose_usage_admin=True,
                mode="admin",
                created_at=now,
            )
        )
    return engine


def cover(c: Any, days: set[date]) -> None:
    for d in days:
        c.execute(
            insert(sync_windows).values(
                credential_id=CRED,
                window_start=day_start(d),
                window_end=day_start(d + timedelta(days=1)),
                completed_at=day_start(d + timedelta(days=1, hours=2)),
                records=1,
            )
        )


@dataclass
class _Win:
    start: datetime
    end: datetime


@dataclass
class _Filters:
    workspace_id: str | None = WS
    user_id: str | None = None
    team_id: str | None = None
    gateway_key_id: str | None = None
    source: str | None = None


WHOLE = _Win(day_start(DAYS[0]), day_start(DAYS[-1] + timedelta(days=1)))
LATER = datetime(2027, 1, 1, tzinfo=UTC)


def grouped(engine: Engine, cols: list[str], **kw: Any) -> dict[tuple[Any, ...], tuple[int, ...]]:
    with engine.connect() as c:
        rows = reconciled_aggregate(c, WHOLE, _Filters(**kw), cols, [GW_URL], now=LATER)
    return {
        tuple(a.dims[x] for x in cols): (
            a.input_tokens,
            a.output_tokens,
            a.cost_nanousd,
            a.request_count,
        )
        for a in rows
    }


def figures(engine: Engine) -> dict[tuple[str, date], tuple[int, int, int, int]]:
    with engine.connect() as c:
        cells = reconciled_cells(c, DAYS[0], DAYS[-1] + timedelta(days=1), WS, [GW_URL])
    return {
        (x.model, x.day): (
            x.reconciled.input_tokens,
            x.reconciled.output_tokens,
            x.reconciled.cost_nanousd,
            x.reconciled.request_count,
        )
        for x in cells
        if not x.reconciled.is_zero()
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    calls=calls_st,
    covered=st.sets(st.sampled_from(DAYS)),
    noise=st.booleans(),
    seed=st.integers(0, 2**32),
    replays=st.integers(0, 5),
)
def test_reconciled_equals_ground_truth_in_any_order(
    ws_engine: Engine,
    calls: list[Call],
    covered: set[date],
    noise: bool,
    seed: int,
    replays: int,
) -> None:
    with ws_engine.begin() as c:  # rollups too: the reconciled view reads them
        for t in (
            usage_records,
            sync_windows,
            *rollups.RECON_TABLES,
            *(t for t, _ in rollups.TABLES),
        ):
            c.execute(delete(t))
    recs = versions(calls, covered, noise)
    rnd = random.Random(seed)
    order = schedule(recs, rnd, replays)
    cut = rnd.randrange(len(order) + 1)
    with ws_engine.begin() as c:  # coverage lands mid-way through the imports
        upsert_usage(c, order[:cut])
    with ws_engine.begin() as c:
        cover(c, covered)
    for i in range(cut, len(order), 3):
        with ws_engine.begin() as c:
            upsert_usage(c, order[i : i + 3])
    want = {k: v for k, v in truth(calls, covered).items() if any(v)}
    got = figures(ws_engine)
    assert got == want
    # The grouped view analytics uses sums to the same figures, whatever the grouping.
    by_cell = {k: v for k, v in grouped(ws_engine, ["model", "usage_date"]).items() if any(v)}
    assert by_cell == want
    by_user = grouped(ws_engine, ["user_id", "source"])
    total = tuple(sum(v[i] for v in want.values()) for i in range(4))
    assert tuple(sum(v[i] for v in by_user.values()) for i in range(4)) == total
    if want:
        assert grouped(ws_engine, [])[()] == total
    # A second, differently ordered re-import of everything changes no figure.
    again = schedule(recs, random.Random(seed + 1), replays)
    with ws_engine.begin() as c:
        upsert_usage(c, again)
    assert figures(ws_engine) == want


def _load(engine: Engine, recs: list[UsageRecord], covered: set[date] = frozenset()) -> None:  # type: ignore[assignment]
    with engine.begin() as c:
        upsert_usage(c, recs)
        cover(c, set(covered))


def test_unattributed_and_drift(ws_engine: Engine) -> None:
    d = D0
    _load(
        ws_engine,
        [
            rec(
                "gateway",
                "g1",
                d,
                1,
                "gpt-4o",
                input_tokens=100,
                cost_nanousd=10,
                request_count=1,
                user_id="usr_a",
            ),
            rec(
                "hermes_plugin",
                "p1",
                d,
                2,
                "gpt-4o",
                input_tokens=50,
                cost_nanousd=5,
                request_count=1,
            ),
            rec(
                "provider_api_key",
                "pv1",
                d,
                0,
                "gpt-4o",
                granularity="1h",
                input_tokens=400,
                cost_nanousd=40,
                request_count=4,
                cost_source="provider_reported",
            ),
            # drift cell: attributed exceeds the provider total
            rec(
                "gateway",
                "g2",
                d,
                1,
                "gpt-4o-mini",
                input_tokens=300,
                cost_nanousd=30,
                request_count=3,
            ),
            rec(
                "provider_api_key",
                "pv2",
                d,
                0,
                "gpt-4o-mini",
                granularity="1h",
                input_tokens=200,
                cost_nanousd=20,
                request_count=2,
                cost_source="provider_reported",
            ),
        ],
        {d},
    )
    with ws_engine.connect() as c:
        cells = {x.model: x for x in reconciled_cells(c, d, d + timedelta(days=1))}
        total = reconciled_totals(c, d, d + timedelta(days=1), WS)
    a = cells["gpt-4o"]
    assert a.reconciled.input_tokens == 400 and a.reconciled.cost_nanousd == 40
    assert a.attributed.input_tokens == 150 and a.unattributed.input_tokens == 250
    assert a.unattributed.cost_nanousd == 25 and a.unattributed.request_count == 2
    assert a.flags == ("provider_covered", "unattributed") and not a.has_drift
    b = cells["gpt-4o-mini"]
    assert b.reconciled.input_tokens == 200 and b.drift.input_tokens == 100
    assert "drift" in b.flags and b.unattributed.is_zero()
    assert total.input_tokens == 600 and total.cost_nanousd == 60


def test_uncovered_cell_and_unknown_provider_cost(ws_engine: Engine) -> None:
    d0, d1 = DAYS
    _load(
        ws_engine,
        [
            rec("gateway", "g1", d0, 1, "gpt-4o", input_tokens=100, cost_nanousd=10),
            rec(
                "provider_api_key",
                "pv0",
                d0,
                0,
                "gpt-4o",
                granularity="1h",
                input_tokens=999,
                cost_nanousd=999,
                cost_source="provider_reported",
            ),
            rec("gateway", "g2", d1, 1, "gpt-4o", input_tokens=100, cost_nanousd=10),
            rec(
                "provider_api_key",
                "pv1",
                d1,
                0,
                "gpt-4o",
                granularity="1h",
                input_tokens=300,
                cost_nanousd=0,
                cost_source="none",
            ),
        ],
        {d1},
    )
    with ws_engine.connect() as c:
        cells = {x.day: x for x in reconciled_cells(c, d0, d1 + timedelta(days=1), WS)}
    assert not cells[d0].covered and cells[d0].reconciled.input_tokens == 100
    assert cells[d0].provider_reported.input_tokens == 999  # kept, shown, not used
    assert cells[d1].reconciled.input_tokens == 300
    assert cells[d1].reconciled.cost_nanousd == 10  # the provider reported no money
    assert "provider_cost_unknown" in cells[d1].flags


def test_a_provider_without_a_usage_api_is_flagged_on_its_uncovered_cells(
    ws_engine: Engine,
) -> None:
    """Groq, Bedrock, Gemini … have no usage API Metis reads: their cells stay on the
    gateway+plugin basis for good and say so; an OpenAI cell not synced yet does not."""
    d = D0
    _load(
        ws_engine,
        [
            rec("gateway", "g1", d, 1, "gpt-4o", input_tokens=100, cost_nanousd=10),
            msgspec.structs.replace(
                rec("gateway", "g2", d, 2, "llama-3.3-70b-versatile", input_tokens=50),
                provider="groq",
            ),
        ],
    )
    with ws_engine.connect() as c:
        cells = {x.provider: x for x in reconciled_cells(c, d, d + timedelta(days=1), WS)}
    assert cells["openai"].flags == ()
    assert cells["groq"].flags == (NO_USAGE_API,) == ("no_provider_usage_api",)
    assert not cells["groq"].covered and cells["groq"].reconciled.input_tokens == 50


def test_gateway_url_variants() -> None:
    v = gateway_url_variants(["http://LOCALHOST:4000/v1/"])
    forms = {
        f"{scheme}://{host}:4000{path}"
        for scheme in ("http", "https")  # an explicit port matches under either scheme
        for host in ("localhost", "127.0.0.1")
        for path in ("", "/v1")
    }
    assert v == sorted({*forms, VIA_GATEWAY_BASE_URL})
    # Without a port the scheme is part of the identity; the declared mark is always in.
    assert gateway_url_variants(["https://metis.example"]) == sorted(
        {"https://metis.example", "https://metis.example/v1", VIA_GATEWAY_BASE_URL}
    )
    assert gateway_url_variants([]) == [VIA_GATEWAY_BASE_URL]


def test_reconciliation_api(ws_engine: Engine, cli: Any, metis_env: dict[str, str]) -> None:
    from metis.server import create_app
    from metis.util.server_thread import ServerThread

    d = D0
    _load(
        ws_engine,
        [
            rec("gateway", "g1", d, 1, "gpt-4o", input_tokens=100, cost_nanousd=1_500_000_000),
            rec(
                "provider_api_key",
                "pv1",
                d,
                0,
                "gpt-4o",
                granularity="1h",
                input_tokens=400,
                cost_nanousd=2_000_000_001,
                cost_source="provider_reported",
            ),
        ],
        {d},
    )
    admin = cli.ok("admin", "token", "create", "--name", "t").stdout.strip().splitlines()[-1]
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url) as http:
        assert http.get("/analytics/reconciliation").status_code == 401
        h = {"Authorization": f"Bearer {admin}"}
        r = http.get(
            "/analytics/reconciliation",
            params={"from": "2026-11-01", "to": "2026-11-02", "workspace": "r"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        assert '"cost_usd":2.000000001' in r.text.replace(" ", "")  # exact, a JSON number
        body = r.json()
        (cell,) = body["cells"]
        assert cell["reconciled"]["input_tokens"] == 400
        assert cell["sources"]["gateway"]["input_tokens"] == 100
        assert cell["unattributed"]["input_tokens"] == 300
        assert cell["flags"] == ["provider_covered", "unattributed"]
        assert body["totals"]["reconciled"]["cost_nanousd"] == 2_000_000_001
        bad = http.get("/analytics/reconciliation", params={"from": "nope"}, headers=h)
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_window"
        bad = http.get("/analytics/reconciliation", params={"workspace": "x;y"}, headers=h)
        assert bad.status_code == 400
        bad = http.get("/analytics/reconciliation?workspace=", headers=h)  # schemathesis: 200
        assert bad.status_code == 400
        for empty in ("from", "to"):  # empty means the default, as documented (and elsewhere)
            assert http.get(f"/analytics/reconciliation?{empty}=", headers=h).status_code == 200


def test_grouped_view_residues_filters_and_edges(ws_engine: Engine) -> None:
    d = D0
    _load(
        ws_engine,
        [
            rec(
                "gateway", "g1", d, 1, "gpt-4o", input_tokens=100, request_count=1, user_id="usr_a"
            ),
            rec(
                "gateway", "g2", d, 13, "gpt-4o", input_tokens=10, request_count=1, user_id="usr_b"
            ),
            rec("hermes_plugin", "p1", d, 14, "gpt-4o", input_tokens=50, request_count=1),
            rec(
                "provider_api_key",
                "pv1",
                d,
                0,
                "gpt-4o",
                granularity="1h",
                input_tokens=400,
                request_count=4,
                cost_source="provider_reported",
            ),
            rec("gateway", "g3", d, 1, "gpt-4o-mini", input_tokens=300, request_count=3),
            rec(
                "provider_api_key",
                "pv2",
                d,
                0,
                "gpt-4o-mini",
                granularity="1h",
                input_tokens=200,
                request_count=2,
                cost_source="provider_reported",
            ),
        ],
        {d},
    )
    whole = _Win(day_start(d), day_start(d + timedelta(days=1)))
    with ws_engine.connect() as c:
        by = {
            (a.dims["user_id"], a.dims["source"]): a.input_tokens
            for a in reconciled_aggregate(
                c, whole, _Filters(), ["user_id", "source"], [GW_URL], now=LATER
            )
        }
        assert by == {
            ("usr_a", "gateway"): 100,
            ("usr_b", "gateway"): 10,
            (None, "gateway"): 300,
            (None, "hermes_plugin"): 50,
            (None, "unattributed"): 240,
            (None, "drift_adjustment"): -100,
        }
        assert sum(by.values()) == 600  # the provider totals of both cells
        only_a = reconciled_aggregate(c, whole, _Filters(user_id="usr_a"), [], [GW_URL], now=LATER)
        assert [a.input_tokens for a in only_a] == [100]
        # A past partial day counts its standing rows from the window only.
        edge = _Win(day_start(d) + timedelta(hours=12), day_start(d + timedelta(days=1)))
        part = reconciled_aggregate(c, edge, _Filters(), ["source"], [GW_URL], now=LATER)
        assert {a.dims["source"]: a.input_tokens for a in part} == {
            "gateway": 10,
            "hermes_plugin": 50,
        }
        # ...but a day reaching "now" reconciles as a whole day.
        so_far = _Win(day_start(d), day_start(d) + timedelta(hours=15))
        today = reconciled_aggregate(c, so_far, _Filters(), [], [GW_URL], now=so_far.end)
        assert today[0].input_tokens == 600
        with pytest.raises(ValueError, match="cannot group"):
            reconciled_aggregate(c, whole, _Filters(), ["metadata"], [GW_URL])


def test_cells_memo_reads_a_window_once_and_ends_with_its_block(ws_engine: Engine) -> None:
    """Inside `cells_memo` a window's cells are read once (no statement the second
    time); after the block a write is seen again."""
    from sqlalchemy import event

    from metis.ledger.reconcile import cells_memo

    d0, _ = DAYS
    _load(ws_engine, [rec("gateway", "g1", d0, 1, "gpt-4o", input_tokens=100, cost_nanousd=10)])
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(ws_engine, "before_cursor_execute", count)
    try:
        with ws_engine.connect() as c, cells_memo():
            first = reconciled_cells(c, d0, d0 + timedelta(days=1), WS)
            n = len(statements)
            assert n > 0
            assert reconciled_cells(c, d0, d0 + timedelta(days=1), WS) == first
            assert len(statements) == n
            # another window is its own entry
            reconciled_cells(c, d0, d0 + timedelta(days=2), WS)
            assert len(statements) > n
    finally:
        event.remove(ws_engine, "before_cursor_execute", count)
    _load(ws_engine, [rec("gateway", "g2", d0, 2, "gpt-4o", input_tokens=1, cost_nanousd=1)])
    with ws_engine.connect() as c:
        (cell,) = reconciled_cells(c, d0, d0 + timedelta(days=1), WS)
    assert cell.reconciled.input_tokens == 101
