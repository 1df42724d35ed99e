"""Every surface gives the same total for the same window and view (issue 18, "Done when").

Hypothesis generates days of mixed traffic in workspace ``w`` over the last
four UTC days, today included:

- gateway calls (three keys: Ada/eng, Bob/ops, a key without user or team),
  each possibly seen again by a plugin: by the provider's response id
  (``plugin_duplicate``) or sent through this gateway's URL
  (``plugin_via_gateway``);
- bypass traffic: plugin rows of calls made straight to the provider, and
  calls nobody but the provider saw;
- per day, maybe a provider report (usage, through the sync's own
  normalization and commit, `metis.ingest.providers.base.assemble` and
  `metis.ingest.sync._commit_window`) with per-model cost line items, one
  unallocated organisation-level cost row, or no cost rows at all; today's
  report is fetched before the day is over and misses the calls made after it;
- replays (the same records and report again) and revisions (a plugin record
  first stored with wrong figures, today's report growing).

Then, in both views, the default window's total is read from every surface
(`tests.analytics.surfaces`): ``/analytics/cost`` for each ``group_by``,
``/analytics/by_team``, ``/export/usage`` CSV and JSONL grouped and
ungrouped, ``metis report cost`` (JSON and its table), ``metis export usage``
and the dashboard's overview figure. All must be equal to the nano-dollar and
all must say they answered for the same window, the one definition of "the
last 7 days". In the reconciled view that total is also the sum of
``/analytics/reconciliation``'s cells, and every closed day a provider report
covers is exactly the provider's report.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select

from metis.analytics.admin_tokens import create_token
from metis.analytics.params import default_window
from metis.config import get_settings
from metis.credentials import Credential, add_credential, list_credentials
from metis.db.tables import sync_cursors, sync_windows, usage_records
from metis.ingest.providers.base import CostItem, UsageItem, assemble
from metis.ingest.sync import _commit_window, price_item
from metis.ledger import rollups
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.money import from_nanousd
from metis.server import create_app
from metis.timeutil import day_start, utcnow
from metis.util.server_thread import ServerThread
from tests.analytics.surfaces import Surfaces
from tests.conftest import Cli
from tests.plugins.identity import IssuedKey, make_key
from tests.web.conftest import login

GATEWAY_URL = "http://metis.internal:8080"
MODELS = ("gpt-4o", "gpt-4o-mini")
PATHS = ("gateway", "gateway+dup", "gateway+via", "plugin_direct", "bypass")


@dataclass(frozen=True)
class Call:
    day: int  # days before today
    minute: int  # minute of that day
    model: str
    path: str
    key: int  # which gateway key
    inp: int
    out: int
    cost: int


@dataclass(frozen=True)
class DayReport:
    day: int
    covered: bool
    costs: str  # line_items | unallocated | none
    extra_cost: int  # the report's cost beyond the calls (fees, rounding), nano-USD


calls_st = st.lists(
    st.builds(
        Call,
        day=st.integers(0, 3),
        minute=st.integers(0, 1439),
        model=st.sampled_from(MODELS),
        path=st.sampled_from(PATHS),
        key=st.integers(0, 2),
        inp=st.integers(1, 4000),
        out=st.integers(0, 800),
        cost=st.integers(1, 5_000_000),
    ),
    min_size=1,
    max_size=16,
)
reports_st = st.tuples(
    *(
        st.builds(
            DayReport,
            day=st.just(d),
            covered=st.booleans(),
            costs=st.sampled_from(["line_items", "unallocated", "none"]),
            extra_cost=st.integers(0, 3_000_000),
        )
        for d in range(4)
    )
)


@dataclass
class World:
    engine: Engine
    keys: list[IssuedKey]
    cred: Credential
    surfaces: Surfaces


@pytest.fixture
def world(engine: Engine, cli: type[Cli], monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("METIS_GATEWAY_URLS", GATEWAY_URL)
    monkeypatch.setenv("COLUMNS", "250")  # `metis report cost`: one table row per line
    keys = [
        make_key(engine, workspace="w", user="ada", team="eng", name="ada-key"),
        make_key(engine, workspace="w", user="bob", team="ops", name="bob-key"),
        make_key(engine, workspace="w", user=None, team=None, name="ci-key"),
    ]
    with engine.begin() as conn:
        add_credential(
            conn, get_settings(), workspace_id=keys[0].workspace_id, provider="openai",
            purposes=["usage_admin"], mode="admin", secret="sk-admin-surfaces-test-0001",
        )  # fmt: skip
        (cred,) = list_credentials(conn, purpose="usage_admin")
        token = create_token(conn, "surfaces")[1]
    with ServerThread(create_app()) as srv:
        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=srv.url, headers=headers, timeout=60) as api,
            httpx.Client(base_url=srv.url, timeout=60) as ui,
        ):
            assert login(ui, token).status_code == 303
            yield World(engine, keys, cred, Surfaces(api, ui, cli))


def _reset(engine: Engine) -> None:
    with engine.begin() as c:
        rollup_tables = (*(t for t, _ in rollups.TABLES), *rollups.RECON_TABLES)
        for t in (usage_records, *rollup_tables, sync_windows, sync_cursors):
            c.execute(delete(t))


def _at(today: date, call: Call, now: datetime) -> datetime:
    t = day_start(today - timedelta(days=call.day)) + timedelta(minutes=call.minute)
    return min(t, now - timedelta(seconds=1))  # nothing in the future


def _records(w: World, calls: list[Call], today: date, now: datetime) -> list[list[UsageRecord]]:
    """Per stored record, its versions in write order (the last is what must stand)."""
    out: list[list[UsageRecord]] = []
    ws = w.keys[0].workspace_id
    for i, c in enumerate(calls):
        at = _at(today, c, now)
        base: dict[str, Any] = dict(
            workspace_id=ws, window_start=at, window_end=at, granularity="request",
            provider="openai", model=c.model, model_raw=c.model, input_tokens=c.inp,
            output_tokens=c.out, request_count=1, cost_nanousd=c.cost,
            cost_source="computed", correlation_id=f"chatcmpl-{i}",
        )  # fmt: skip
        if c.path.startswith("gateway"):
            k = w.keys[c.key]
            gw = UsageRecord(
                source="gateway", source_ref=k.key_id, dedupe_key=f"req_{i}", status="ok",
                user_id=k.user_id, team_id=k.team_id, gateway_key_id=k.key_id, **base,
            )  # fmt: skip
            out.append([gw, gw])  # written, then replayed by a retried flush
        if c.path in ("gateway+dup", "gateway+via", "plugin_direct"):
            url = f"{GATEWAY_URL}/v1" if c.path == "gateway+via" else "https://api.openai.com/v1"
            corr = base["correlation_id"] if c.path == "gateway+dup" else None
            final = UsageRecord(
                source="hermes_plugin", source_ref="tok_1", dedupe_key=f"plugin-{i}",
                base_url=url, **{**base, "correlation_id": corr},
            )  # fmt: skip
            wrong = UsageRecord(
                source="hermes_plugin", source_ref="tok_1", dedupe_key=f"plugin-{i}",
                base_url=url, **{**base, "correlation_id": corr, "cost_nanousd": c.cost + 7,
                                 "input_tokens": c.inp + 3},
            )  # fmt: skip
            out.append([wrong, final])  # a plugin re-sent a corrected record: a revision
    return out


def _report(
    w: World, calls: list[Call], rep: DayReport, today: date, seen_until: datetime | None
) -> tuple[list[Any], dict[str, int]]:
    """The provider's records for one day (through the sync's assembly) and its figures."""
    d = today - timedelta(days=rep.day)
    start, end = day_start(d), day_start(d + timedelta(days=1))
    per_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # in, out, req, cost
    for c in calls:
        at = _at(today, c, utcnow())
        if c.day != rep.day or (seen_until is not None and at >= seen_until):
            continue
        m = per_model[c.model]
        m[0] += c.inp
        m[1] += c.out
        m[2] += 1
        m[3] += c.cost
    usage = [
        UsageItem(
            stream="usage.completions",
            bucket_start=start,
            bucket_end=end,
            granularity="1d",
            dims={"model": model, "project_id": None, "api_key_id": None},
            model_raw=model,
            input_tokens=v[0],
            output_tokens=v[1],
            request_count=v[2],
            token_parts={
                "input": v[0],
                "cached_input": 0,
                "cache_write": 0,
                "output": v[1],
                "all_input": v[0],
            },
            match={"project_id": None, "api_key_id": None},
        )
        for model, v in sorted(per_model.items())
    ]
    costs: list[CostItem] = []

    def cost_item(amount: int, line: str | None, model: str | None, part: str | None) -> CostItem:
        return CostItem(
            stream="costs", bucket_start=start, bucket_end=end, amount_nanousd=amount,
            dims={"project_id": None, "api_key_id": None, "line_item": line},
            match={"project_id": None, "api_key_id": None}, model=model, token_part=part,
            label=line,
        )  # fmt: skip

    total_cost = sum(v[3] for v in per_model.values()) + rep.extra_cost
    if rep.costs == "line_items" and per_model:
        first = True
        for model, v in sorted(per_model.items()):
            extra = rep.extra_cost if first else 0
            first = False
            inp_part = v[3] // 3
            costs.append(cost_item(inp_part, f"{model}, input", model, "input"))
            costs.append(cost_item(v[3] - inp_part + extra, f"{model}, output", model, "output"))
    elif rep.costs == "unallocated" and total_cost:
        costs.append(cost_item(total_cost, None, None, None))
    records, _ = assemble(
        credential_id=w.cred.id, workspace_id=w.cred.workspace_id, provider="openai",
        usage=usage, costs=costs, price=price_item("openai"), run_id="run_surfaces",
    )  # fmt: skip
    figures = {
        "input_tokens": sum(v[0] for v in per_model.values()),
        "output_tokens": sum(v[1] for v in per_model.values()),
        "cost_nanousd": sum(r.cost_nanousd for r in records),
    }
    if rep.costs != "none" and costs:
        assert figures["cost_nanousd"] == sum(c.amount_nanousd for c in costs)
    return records, figures


def _commit(w: World, rep: DayReport, today: date, records: list[Any]) -> None:
    d = today - timedelta(days=rep.day)
    _commit_window(
        w.engine, w.cred, "run_surfaces", day_start(d), day_start(d + timedelta(days=1)), records
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(calls=calls_st, reports=reports_st, seed=st.integers(0, 2**16))
def test_every_surface_gives_the_same_total(
    world: World, calls: list[Call], reports: tuple[DayReport, ...], seed: int
) -> None:
    w = world
    _reset(w.engine)
    now = utcnow()
    today = now.date()
    versions = _records(w, calls, today, now)
    random.Random(seed).shuffle(versions)  # any arrival order
    with w.engine.begin() as conn:
        for vs in versions:
            for rec in vs:
                upsert_usage(conn, [rec])
    closed: dict[date, dict[str, int]] = {}
    for rep in reports:
        if not rep.covered:
            continue
        if rep.day == 0:
            # today: an early sync, then a later one that still misses the last calls
            cut = now - timedelta(minutes=random.Random(seed).randint(0, 600))
            early, _ = _report(w, calls, rep, today, cut - timedelta(hours=2))
            _commit(w, rep, today, early)
            later, _ = _report(w, calls, rep, today, cut)
            _commit(w, rep, today, later)
        else:
            records, figures = _report(w, calls, rep, today, None)
            _commit(w, rep, today, records)
            _commit(w, rep, today, records)  # a replayed sync changes nothing
            closed[today - timedelta(days=rep.day)] = figures

    want = default_window(now).as_json()
    totals: dict[str, Decimal] = {}
    for view in ("raw", "reconciled"):
        got = w.surfaces.all(view)
        for name, (window, _) in got.items():
            assert window == want, (view, name, window)
        values = {name: total for name, (_, total) in got.items()}
        assert len(set(values.values())) == 1, (view, values)
        totals[view] = next(iter(values.values()))
    # the reconciled total is the sum of the reconciliation cells
    recon = w.surfaces.api.get("/analytics/reconciliation").json()
    assert totals["reconciled"] == from_nanousd(recon["totals"]["reconciled"]["cost_nanousd"])
    # the ungrouped raw export is every stored row
    raw_rows = w.surfaces.api.get("/export/usage", params={"view": "raw"}).text
    assert len(raw_rows.splitlines()) == _stored_rows(w.engine)
    # closed days a provider report covers are exactly the provider's report
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cell in recon["cells"]:
        for m in ("input_tokens", "output_tokens", "cost_nanousd"):
            per_day[cell["day"]][m] += cell["reconciled"][m]
    by_day = {
        d["day"]: d["cost_usd"]
        for d in w.surfaces.api.get(
            "/analytics/cost", params={"group_by": "day", "view": "reconciled"}
        ).json(parse_float=Decimal)["data"]
    }
    for day, figures in closed.items():
        got = {m: per_day[day.isoformat()].get(m, 0) for m in figures}
        assert got == figures, (day, got, figures)
        assert by_day.get(day.isoformat(), Decimal(0)) == from_nanousd(figures["cost_nanousd"])


def _stored_rows(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(usage_records)).scalar_one())
