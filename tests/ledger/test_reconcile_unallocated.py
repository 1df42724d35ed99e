"""An unallocated provider cost row stays on the provider's side of the day (issue 18 #2).

Input: OpenAI's published ``costs`` example (one organisation-level result,
``line_item: null``, $0.06) beside that day's usage, and gateway traffic of the
same day. The day's provider rows add up to the report exactly (nothing is priced
on top); the reconciled day is the report's figure; the gateway's ``gpt-4o-mini``
calls keep their attributed cost, taken out of the unallocated amount.
"""

from datetime import date, timedelta

from sqlalchemy import Engine, func, insert, select

from metis.analytics.params import Filters, Window
from metis.db.tables import sync_windows, usage_records
from metis.ingest.providers import openai
from metis.ingest.providers.base import assemble
from metis.ingest.sync import price_item
from metis.ledger.reconcile import (
    DRIFT_SOURCE,
    UNATTRIBUTED_SOURCE,
    reconciled_aggregate,
    reconciled_cells,
)
from metis.ledger.upsert import upsert_usage
from metis.timeutil import day_start
from tests.ingest.providers.test_openai import _same_day_usage, load
from tests.ledger.test_reconcile import CRED, WS, rec

DAY = date(2024, 11, 1)  # the published examples' day
REPORT = 60_000_000  # $0.06


def _load(engine: Engine, gateway_cost: int, synced_hours: int) -> None:
    usage = _same_day_usage()
    recs, _ = assemble(
        credential_id=CRED,
        workspace_id=WS,
        provider="openai",
        usage=usage,
        costs=openai.normalize_costs([load("openai_costs.json")], usage),
        price=price_item("openai"),
    )
    gw = [
        rec(
            "gateway",
            f"g{i}",
            DAY,
            10 + i,
            "gpt-4o-mini",
            input_tokens=1000,
            output_tokens=200,
            request_count=1,
            cost_nanousd=gateway_cost // 5,
            user_id="usr_ada",
        )
        for i in range(5)
    ]
    with engine.begin() as c:
        upsert_usage(c, [*recs, *gw])
        c.execute(
            insert(sync_windows).values(
                credential_id=CRED,
                window_start=day_start(DAY),
                window_end=day_start(DAY + timedelta(days=1)),
                completed_at=day_start(DAY) + timedelta(hours=synced_hours),
                records=len(recs),
            )
        )


def _by(engine: Engine, col: str) -> dict[object, int]:
    win = Window(day_start(DAY), day_start(DAY + timedelta(days=1)))
    later = day_start(DAY + timedelta(days=3))
    with engine.connect() as c:
        rows = reconciled_aggregate(c, win, Filters(), [col], (), now=later)
    return {a.dims[col]: a.cost_nanousd for a in rows}


def test_closed_day_is_the_report_and_the_gateway_keeps_its_attribution(
    ws_engine: Engine,
) -> None:
    _load(ws_engine, gateway_cost=1_215_000, synced_hours=26)
    with ws_engine.connect() as c:
        stored = c.execute(
            select(func.sum(usage_records.c.cost_nanousd)).where(
                usage_records.c.source == "provider_api_key"
            )
        ).scalar_one()
        cells = {x.model: x for x in reconciled_cells(c, DAY, DAY + timedelta(days=1))}
    assert int(stored) == REPORT  # before issue 18: 61_215_000
    mini, pool = cells["gpt-4o-mini"], cells["unallocated"]
    assert mini.provider_reported.cost_nanousd == 0 and "cost_unallocated" in mini.flags
    assert mini.reconciled.cost_nanousd == 1_215_000 and "drift" not in mini.flags
    assert pool.reconciled.cost_nanousd == REPORT - 1_215_000
    assert sum(x.reconciled.cost_nanousd for x in cells.values()) == REPORT
    assert _by(ws_engine, "user_id") == {"usr_ada": 1_215_000, None: REPORT - 1_215_000}
    assert _by(ws_engine, "source") == {"gateway": 1_215_000, UNATTRIBUTED_SOURCE: 58_785_000}


def test_closed_day_attributed_above_the_pool_keeps_the_providers_total(
    ws_engine: Engine,
) -> None:
    _load(ws_engine, gateway_cost=70_000_000, synced_hours=26)
    with ws_engine.connect() as c:
        cells = {x.model: x for x in reconciled_cells(c, DAY, DAY + timedelta(days=1))}
    assert sum(x.reconciled.cost_nanousd for x in cells.values()) == REPORT
    assert "drift" in cells["gpt-4o-mini"].flags
    assert _by(ws_engine, "source") == {
        "gateway": 70_000_000,
        UNATTRIBUTED_SOURCE: REPORT,
        DRIFT_SOURCE: -70_000_000,
    }


def test_day_in_progress_is_the_larger_of_pool_and_attributed(ws_engine: Engine) -> None:
    _load(ws_engine, gateway_cost=70_000_000, synced_hours=15)
    with ws_engine.connect() as c:
        cells = {x.model: x for x in reconciled_cells(c, DAY, DAY + timedelta(days=1))}
    assert all(x.lagging for x in cells.values() if x.covered)
    assert sum(x.reconciled.cost_nanousd for x in cells.values()) == 70_000_000
    assert cells["unallocated"].reconciled.cost_nanousd == 0
    assert not any("drift" in x.flags for x in cells.values())
