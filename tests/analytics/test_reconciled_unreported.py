"""Measures a provider's usage report lacks: the gateway's figure stands in the reconciled view.

Anthropic's usage report has no request count and OpenAI's none of the
reasoning-token split (`metis.ledger.reconcile.PROVIDER_UNREPORTED`); the
stored 0 must not become the reconciled figure, a drift or a negative residue.
"""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from sqlalchemy import Engine, insert

from metis.db.tables import provider_credentials, sync_windows
from tests.analytics import seed
from tests.analytics.seed import T0, rec
from tests.analytics.test_api import _identity, get

CLAUDE = "claude-sonnet-4-5"


def _covered(engine: Engine) -> None:
    """Day T0 of ws_1 covered for anthropic and openai; gateway calls plus provider reports."""
    h = timedelta(hours=1)
    with engine.begin() as c:
        for prov in ("anthropic", "openai"):
            c.execute(insert(provider_credentials).values(
                id=f"cred_{prov}", workspace_id="ws_1", provider=prov, purpose_inference=False,
                purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
            c.execute(insert(sync_windows).values(
                credential_id=f"cred_{prov}", window_start=T0, window_end=T0 + timedelta(days=1),
                completed_at=T0 + timedelta(days=1, hours=2), records=1))  # fmt: skip
        gw = [
            rec(at=T0 + i * h, cost=1_000, key_id="key_a", user_id="usr_a", team_id="team_e",
                provider="anthropic", model=CLAUDE)
            for i in range(3)
        ] + [
            rec(at=T0 + i * h, cost=2_000, key_id="key_b", user_id="usr_b", team_id="team_e",
                model="o3", output_tokens=50, reasoning_tokens=40)
            for i in range(2)
        ]  # fmt: skip
        prov: dict[str, Any] = {"source": "provider_api_key", "status": None, "latency_ms": None}
        claude = rec(cost=5_000, provider="anthropic", model=CLAUDE, input_tokens=500,
                     output_tokens=50, at=T0, **prov)  # fmt: skip
        o3 = rec(cost=4_000, model="o3", input_tokens=200, output_tokens=100, at=T0, **prov)
        prov_rows = [
            msgspec.structs.replace(claude, request_count=0),  # Anthropic: no request count
            msgspec.structs.replace(o3, request_count=2),  # OpenAI: no reasoning split
        ]
        seed.write(c, [*gw, *prov_rows])


def test_unreported_measures_come_from_the_gateway(engine: Engine, api: httpx.Client) -> None:
    _identity(engine)
    _covered(engine)
    by_model = {d["model"]: d for d in get(api, "/analytics/cost", group_by="model")["data"]}
    claude, o3 = by_model[CLAUDE], by_model["o3"]
    assert claude["call_count"] == 3  # the gateway's count, not the report's missing 0
    assert claude["cost_usd"] == Decimal("0.000005")  # cost still from the provider
    assert claude["input_tokens"] == 500  # tokens too (200 unattributed)
    assert o3["reasoning_tokens"] == 80 and o3["call_count"] == 2
    assert o3["cost_usd"] == Decimal("0.000004")
    by_source = get(api, "/analytics/cost", group_by="source")["data"]
    for d in by_source:
        for m in ("reasoning_tokens", "call_count", "input_tokens", "output_tokens"):
            assert d[m] >= 0, (d["source"], m, d[m])
    resid = {d["source"]: d for d in by_source}["unattributed"]
    assert resid["reasoning_tokens"] == 0 and resid["call_count"] == 0
    assert resid["input_tokens"] == 200  # the Claude tokens that bypassed the gateway
    # the cell report: no drift on the measures the report lacks
    r = get(api, "/analytics/reconciliation", **{"from": "2026-11-02", "to": "2026-11-03"})
    cells = {c["model"]: c for c in r["cells"] if c["covered_by_provider"]}
    assert "drift" not in cells[CLAUDE]["flags"] and "drift" not in cells["o3"]["flags"]
    assert cells[CLAUDE]["reconciled"]["request_count"] == 3
    assert cells[CLAUDE]["provider_unreported"] == ["reasoning_tokens", "request_count"]
    assert cells["o3"]["reconciled"]["reasoning_tokens"] == 80
    assert cells["o3"]["drift"]["reasoning_tokens"] == 0
