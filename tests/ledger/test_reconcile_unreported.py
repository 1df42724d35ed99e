"""Covered cells and the measures a provider's report lacks (`PROVIDER_UNREPORTED`).

Rollups and the raw reference must agree, and neither may turn the report's
missing figure (stored as 0) into the reconciled value, a drift or a residue.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from metis.db.tables import provider_credentials, sync_windows, workspaces
from metis.ledger.reconcile import (
    DRIFT_SOURCE,
    UNATTRIBUTED_SOURCE,
    reconciled_aggregate,
    reconciled_cells,
    unreported_measures,
)
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.timeutil import day_start
from tests.ledger.test_reconcile import LATER, _Filters, _Win

WS = "ws_r"
D = date(2026, 11, 1)


def _rec(source: str, key: str, provider: str, model: str, **kw: Any) -> UsageRecord:
    at = day_start(D) + timedelta(hours=1)
    return UsageRecord(
        workspace_id=WS, source=source, source_ref="ref", dedupe_key=key, window_start=at,
        window_end=at, granularity="request" if source != "provider_api_key" else "1d",
        provider=provider, model=model, model_raw=model, **kw,
    )  # fmt: skip


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    now = datetime(2026, 11, 3, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id=WS, name="r", created_at=now))
        for prov in ("anthropic", "openai"):
            c.execute(insert(provider_credentials).values(
                id=f"cred_{prov}", workspace_id=WS, provider=prov, purpose_inference=False,
                purpose_usage_admin=True, mode="admin", created_at=now))  # fmt: skip
            c.execute(insert(sync_windows).values(
                credential_id=f"cred_{prov}", window_start=day_start(D),
                window_end=day_start(D + timedelta(days=1)),
                completed_at=day_start(D + timedelta(days=1, hours=2)), records=1))  # fmt: skip
        recs = [
            _rec("gateway", f"g{i}", "anthropic", "claude-sonnet-4-5", input_tokens=100,
                 request_count=1, reasoning_tokens=5, cost_nanousd=10) for i in range(3)
        ] + [
            _rec("hermes_plugin", "p1", "anthropic", "claude-sonnet-4-5", input_tokens=50,
                 request_count=1, cost_nanousd=5),
            _rec("provider_api_key", "pa", "anthropic", "claude-sonnet-4-5", input_tokens=400,
                 request_count=0, cost_nanousd=60, cost_source="provider_reported"),
            _rec("gateway", "o1", "openai", "o3", input_tokens=100, output_tokens=90,
                 reasoning_tokens=70, request_count=1, cost_nanousd=20),
            _rec("provider_api_key", "po", "openai", "o3", input_tokens=100, output_tokens=90,
                 request_count=1, cost_nanousd=20, cost_source="provider_reported"),
        ]  # fmt: skip
        upsert_usage(c, recs)
    return engine


@pytest.mark.parametrize("from_raw", [False, True])
def test_cells_take_unreported_measures_from_attributed(loaded: Engine, from_raw: bool) -> None:
    with loaded.connect() as c:
        cells = {x.model: x for x in reconciled_cells(c, D, D + timedelta(days=1), WS, (),
                                                      from_raw=from_raw)}  # fmt: skip
    claude, o3 = cells["claude-sonnet-4-5"], cells["o3"]
    assert claude.reconciled.request_count == 4  # 3 gateway + 1 plugin, not the report's 0
    assert claude.reconciled.reasoning_tokens == 15
    assert claude.reconciled.cost_nanousd == 60 and claude.reconciled.input_tokens == 400
    assert claude.unattributed.input_tokens == 50 and claude.unattributed.request_count == 0
    assert not claude.has_drift and claude.flags == ("provider_covered", "unattributed")
    assert o3.reconciled.reasoning_tokens == 70 and o3.reconciled.request_count == 1
    assert not o3.has_drift and o3.flags == ("provider_covered",)


@pytest.mark.parametrize("from_raw", [False, True])
def test_grouped_view_has_no_residue_for_unreported(loaded: Engine, from_raw: bool) -> None:
    win = _Win(day_start(D), day_start(D + timedelta(days=1)))
    with loaded.connect() as c:
        rows = reconciled_aggregate(c, win, _Filters(), ["model", "source"], (), LATER,
                                    from_raw=from_raw)  # fmt: skip
    got = {(a.dims["model"], a.dims["source"]): a for a in rows}
    assert (("o3", DRIFT_SOURCE)) not in got and ("claude-sonnet-4-5", DRIFT_SOURCE) not in got
    resid = got[("claude-sonnet-4-5", UNATTRIBUTED_SOURCE)]
    assert resid.input_tokens == 50 and resid.request_count == 0 and resid.reasoning_tokens == 0
    for a in rows:
        assert a.request_count >= 0 and a.reasoning_tokens >= 0


def test_unreported_measures_table() -> None:
    assert unreported_measures("anthropic") == {"request_count", "reasoning_tokens"}
    assert unreported_measures("openai") == {"reasoning_tokens"}
    assert unreported_measures("somebody-else") == frozenset()
