import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from metis.ingest.providers import anthropic
from metis.ingest.providers.base import PriceResult, UsageItem, assemble, largest_remainder

FIX = Path(__file__).parents[2] / "fixtures" / "provider_api"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIX / name).read_text(), parse_float=Decimal)
    return data


def no_price(u: UsageItem) -> PriceResult:
    return PriceResult(None, None, (u.model_raw or "unknown").lower())


def test_usage_report_to_canonical_tokens() -> None:
    for name in (
        "anthropic_usage_messages.json",
        "anthropic_usage_messages_v2_all_dimensions.json",
    ):
        (u,) = anthropic.normalize_usage([load(name)])
        # 1500 uncached + 200 cache read + 500 (5m) + 1000 (1h) cache writes
        assert u.input_tokens == 3200
        assert u.cached_input_tokens == 200 and u.cache_creation_input_tokens == 1500
        assert u.output_tokens == 500 and u.request_count == 0
        assert u.metadata["web_search_requests"] == 10 and u.metadata["requests_reported"] is False
        assert u.provider_workspace_id == "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
        assert u.provider_api_key_id == "apikey_01Rj2N8SVvo6BePZj99NhmiT"
        assert u.service_tier == "standard" and u.batch is False
        assert u.bucket_start == datetime(2025, 8, 1, tzinfo=UTC)


def test_ungrouped_and_empty_bucket() -> None:
    items = anthropic.normalize_usage([load("anthropic_usage_messages_ungrouped_DERIVED.json")])
    assert len(items) == 1 and items[0].model_raw is None and items[0].service_tier is None
    assert items[0].batch is None


def test_cost_amount_is_cents_string() -> None:
    (c,) = anthropic.normalize_costs([load("anthropic_cost_report.json")])
    assert c.amount_nanousd == 1_237_891_200  # "123.78912" cents = $1.2378912
    assert c.model == "claude-sonnet-4-20250514" and c.token_part == "uncached_input_tokens"
    (u,) = anthropic.normalize_costs([load("anthropic_cost_report_ungrouped_DERIVED.json")])
    assert u.amount_nanousd == 15_000_000_000 and u.model is None


def test_cost_by_token_type_lands_on_its_tokens_exactly() -> None:
    usage = anthropic.normalize_usage([load("anthropic_usage_messages.json")])
    twin = load("anthropic_usage_messages.json")
    r = twin["data"][0]["results"][0]
    r["api_key_id"] = "apikey_other"
    r["uncached_input_tokens"] = 500
    usage += anthropic.normalize_usage([twin])
    costs = anthropic.normalize_costs([load("anthropic_cost_report.json")])
    recs, st = assemble(
        credential_id="c",
        workspace_id="w",
        provider="anthropic",
        usage=usage,
        costs=costs,
        price=no_price,
    )
    assert st.cost_only_records == 0
    by_key = {x.provider_api_key_id: x for x in recs}
    # uncached-input cost split 1500:500 over the two keys; sum exact
    assert by_key["apikey_01Rj2N8SVvo6BePZj99NhmiT"].cost_nanousd == 928_418_400
    assert by_key["apikey_other"].cost_nanousd == 309_472_800
    assert sum(x.cost_nanousd for x in recs) == 1_237_891_200
    assert {x.cost_source for x in recs} == {"provider_reported"}


def test_largest_remainder_is_exact() -> None:
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(largest_remainder(1_000_000_007, [3, 7, 11, 13])) == 1_000_000_007
    assert largest_remainder(-5, [1, 1]) == [-3, -2]


def test_dedupe_keys_stable_and_distinct() -> None:
    usage = anthropic.normalize_usage([load("anthropic_usage_messages.json")])
    a, _ = assemble(
        credential_id="c",
        workspace_id="w",
        provider="anthropic",
        usage=usage,
        costs=[],
        price=no_price,
    )
    b, _ = assemble(
        credential_id="c",
        workspace_id="w",
        provider="anthropic",
        usage=usage,
        costs=[],
        price=no_price,
    )
    assert a[0].dedupe_key == b[0].dedupe_key
    assert a[0].content_sha256() == b[0].content_sha256()


def test_unallocated_cost_and_priority_tier_same_rule_as_openai() -> None:
    """Issue 18 #2 for Anthropic: an ungrouped cost report (no model, no token type)
    beside the published usage of the same day stays a cost-only row and nothing is
    priced on top; Priority Tier usage (never in the cost report) is priced, labelled."""
    from metis.ingest.sync import price_item

    page = load("anthropic_usage_messages.json")
    priority = json.loads(json.dumps(page["data"][0]["results"][0]))
    priority["service_tier"] = "priority"
    page["data"][0]["results"].append(priority)
    usage = anthropic.normalize_usage([page])
    costs = anthropic.normalize_costs([load("anthropic_cost_report_ungrouped_DERIVED.json")])
    recs, st = assemble(
        credential_id="c",
        workspace_id="w",
        provider="anthropic",
        usage=usage,
        costs=costs,
        price=price_item("anthropic"),
    )
    by_tier = {r.service_tier: r for r in recs if not r.metadata.get("cost_only")}
    (only,) = [r for r in recs if r.metadata.get("cost_only")]
    assert (only.model, only.cost_nanousd) == ("unallocated", 15_000_000_000)  # "1500" cents
    standard, prio = by_tier["standard"], by_tier["priority"]
    assert (standard.cost_source, standard.cost_nanousd) == ("provider_reported", 0)
    assert standard.metadata["cost_unallocated"] is True
    assert prio.cost_source == "computed" and prio.cost_nanousd > 0 and prio.pricing_version
    # the rows the report covers add up to the report exactly
    reported = [r for r in recs if r.cost_source == "provider_reported"]
    assert sum(r.cost_nanousd for r in reported) == 15_000_000_000
    assert st.computed == 1 and st.cost_unallocated == 1
