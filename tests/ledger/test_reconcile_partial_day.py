"""A day still in progress is a lower bound (issue 18 #3, docs/reconciliation.md).

The input that showed it: five ``gpt-4o`` calls through the gateway after the day's
last provider sync. Before, today's reconciled figure froze at the provider's, the
provider row went negative against the gateway's and the cell was flagged ``drift``.
"""

from datetime import date, datetime, timedelta

from sqlalchemy import Engine, insert

from metis.analytics.params import Filters, Window
from metis.db.tables import sync_windows
from metis.ledger.reconcile import (
    DRIFT_SOURCE,
    UNATTRIBUTED_SOURCE,
    lagging_days,
    reconciled_aggregate,
    reconciled_cells,
    reconciled_totals,
)
from metis.ledger.upsert import upsert_usage
from metis.timeutil import day_start
from tests.ledger.test_reconcile import CRED, WS, rec

D = date(2026, 11, 2)


def _day(engine: Engine, synced_at: datetime, gateway_calls: int) -> None:
    with engine.begin() as c:
        c.execute(
            insert(sync_windows).values(
                credential_id=CRED,
                window_start=day_start(D),
                window_end=day_start(D + timedelta(days=1)),
                completed_at=synced_at,
                records=1,
            )
        )
        # what the provider had reported at the sync: 3 calls, and one bypass call's output
        upsert_usage(
            c,
            [
                rec(
                    "provider_api_key",
                    "pv",
                    D,
                    0,
                    "gpt-4o",
                    granularity="1h",
                    input_tokens=300,
                    output_tokens=90,
                    request_count=3,
                    cost_nanousd=3000,
                    cost_source="provider_reported",
                ),
                *(
                    rec(
                        "gateway",
                        f"g{i}",
                        D,
                        9 + i,
                        "gpt-4o",
                        input_tokens=100,
                        output_tokens=20,
                        request_count=1,
                        cost_nanousd=1000,
                        user_id="usr_ada",
                    )
                    for i in range(gateway_calls)
                ),
            ],
        )


def test_calls_after_the_sync_move_todays_figure_and_are_not_drift(ws_engine: Engine) -> None:
    synced = day_start(D) + timedelta(hours=14, minutes=5)
    _day(ws_engine, synced, gateway_calls=3 + 5)  # 3 before the sync, 5 after it
    with ws_engine.connect() as c:
        (cell,) = reconciled_cells(c, D, D + timedelta(days=1))
        total = reconciled_totals(c, D, D + timedelta(days=1))
        lag = lagging_days(c, D, D + timedelta(days=1))
        win = Window(day_start(D), day_start(D + timedelta(days=1)))
        by_source = {
            a.dims["source"]: a
            for a in reconciled_aggregate(c, win, Filters(), ["source"], (), now=synced)
        }
    assert cell.lagging and "provider_lagging" in cell.flags
    assert "drift" not in cell.flags and cell.drift.is_zero()
    # per measure the larger of provider-so-far and attributed
    assert cell.reconciled.input_tokens == 800 and cell.reconciled.cost_nanousd == 8000
    assert cell.reconciled.request_count == 8
    assert cell.reconciled.output_tokens == 160  # attributed 8 x 20 > provider 90
    assert cell.provider_synced_at == synced and lag == [(WS, "openai", D, synced)]
    assert total.cost_nanousd == 8000
    assert set(by_source) == {"gateway"} and by_source["gateway"].cost_nanousd == 8000
    assert DRIFT_SOURCE not in by_source


def test_the_provider_still_counts_where_it_saw_more(ws_engine: Engine) -> None:
    synced = day_start(D) + timedelta(hours=14)
    _day(ws_engine, synced, gateway_calls=2)  # the provider saw a third (bypass) call
    with ws_engine.connect() as c:
        (cell,) = reconciled_cells(c, D, D + timedelta(days=1))
    assert cell.lagging and cell.reconciled.input_tokens == 300
    assert cell.reconciled.cost_nanousd == 3000 and cell.unattributed.cost_nanousd == 1000
    assert "unattributed" in cell.flags and "drift" not in cell.flags


def test_a_closed_day_takes_the_providers_figure_and_flags_drift(ws_engine: Engine) -> None:
    _day(ws_engine, day_start(D + timedelta(days=1, hours=2)), gateway_calls=8)
    with ws_engine.connect() as c:
        (cell,) = reconciled_cells(c, D, D + timedelta(days=1))
        win = Window(day_start(D), day_start(D + timedelta(days=1)))
        later = day_start(D + timedelta(days=3))
        rows = reconciled_aggregate(c, win, Filters(), ["source"], (), now=later)
        lag = lagging_days(c, D, D + timedelta(days=1))
    assert not cell.lagging and "drift" in cell.flags and lag == []
    assert cell.reconciled.cost_nanousd == 3000 and cell.drift.cost_nanousd == 5000
    by_source = {a.dims["source"]: a.cost_nanousd for a in rows}
    assert by_source == {"gateway": 8000, DRIFT_SOURCE: -5000}
    assert UNATTRIBUTED_SOURCE not in by_source
