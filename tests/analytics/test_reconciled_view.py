"""The default (reconciled) view: one true total per cell, attribution kept."""

from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy import Engine, insert

from metis.db.tables import provider_credentials, sync_windows
from tests.analytics import seed
from tests.analytics.seed import T0, rec
from tests.analytics.test_api import _three_keys, get


def _covered_day(engine: Engine) -> None:
    """Day T0 of ws_1/openai is covered by a provider sync reporting $10 for gpt-4o."""
    with engine.begin() as c:
        c.execute(insert(provider_credentials).values(
            id="cred_p", workspace_id="ws_1", provider="openai", purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
        c.execute(insert(sync_windows).values(
            credential_id="cred_p", window_start=T0, window_end=T0 + timedelta(days=1),
            completed_at=T0 + timedelta(days=1, hours=2), records=1))  # fmt: skip
        seed.write(c, [
            rec(at=T0, cost=10_000_000_000, source="provider_api_key", status=None,
                latency_ms=None, input_tokens=5000, output_tokens=500),
            # a plugin row for a call the gateway also recorded (same provider response id)
            rec(at=T0 + timedelta(hours=1), cost=333_333_333, source="hermes_plugin",
                status=None, correlation_id="chatcmpl-dup"),
            # a plugin row on another (uncovered) day and model: stands as is
            rec(at=T0 + timedelta(days=2), cost=40, source="hermes_plugin", status=None,
                model="claude-sonnet-4-5", provider="anthropic"),
        ])  # fmt: skip


def test_reconciled_by_team_and_cost(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    with engine.begin() as c:  # give one gateway row the provider response id
        seed.write(c, [rec(at=T0 + timedelta(hours=1), cost=0, key_id="key_a",
                           user_id="usr_a", team_id="team_e", correlation_id="chatcmpl-dup",
                           output_tokens=0, input_tokens=0)])  # fmt: skip
    _covered_day(engine)
    body = get(api, "/analytics/by_team")
    assert body["view"] == "reconciled"
    teams = {t["team_id"]: t for t in body["data"]}
    assert teams["team_o"]["cost_usd"] == Decimal("5")
    assert teams["team_e"]["cost_usd"] == Decimal("3.000000001")
    # null bucket: the untagged key's 7 nano-USD + unattributed (10 - 8.000000008) + plugin 40
    assert teams[None]["cost_usd"] == Decimal("0.000000007") + Decimal("1.999999992") + Decimal(
        "0.00000004"
    )
    total = get(api, "/analytics/cost", group_by="source")
    assert total["total"]["cost_usd"] == Decimal("10.00000004")  # provider truth + other day
    by_source = {d["source"]: d["cost_usd"] for d in total["data"]}
    assert by_source == {
        "gateway": Decimal("8.000000008"),
        "unattributed": Decimal("1.999999992"),
        "hermes_plugin": Decimal("0.00000004"),
        # the gateway counted more calls than the provider's one request: a
        # request-count drift, no money
        "drift_adjustment": Decimal("0"),
    }
    for t in body["data"]:
        assert sum(u["cost_usd"] for u in t["by_user"]) == t["cost_usd"]
    # the raw view sums every source's rows side by side
    raw = get(api, "/analytics/cost", group_by="source", view="raw")
    assert raw["total"]["cost_usd"] == Decimal("18.333333381")
    # a user filter shows that user's attributed rows only (no residual)
    alice = get(api, "/analytics/cost", group_by="user", user="alice")
    assert alice["total"]["cost_usd"] == Decimal("0.999999999")


def test_reconciled_drift_keeps_provider_total(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    with engine.begin() as c:
        c.execute(insert(provider_credentials).values(
            id="cred_p", workspace_id="ws_1", provider="openai", purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
        c.execute(insert(sync_windows).values(
            credential_id="cred_p", window_start=T0, window_end=T0 + timedelta(days=1),
            completed_at=T0 + timedelta(days=1), records=1))  # fmt: skip
        seed.write(c, [rec(at=T0, cost=6_000_000_000, source="provider_api_key", status=None,
                           input_tokens=5000, output_tokens=500)])  # fmt: skip
    body = get(api, "/analytics/cost", group_by="team")
    assert body["total"]["cost_usd"] == Decimal("6")  # the provider total stands
    assert sum(d["cost_usd"] for d in body["data"]) == Decimal("6")
