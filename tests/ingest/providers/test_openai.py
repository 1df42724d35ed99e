import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from metis.ingest.providers import openai
from metis.ingest.providers.base import PriceResult, UsageItem, assemble

FIX = Path(__file__).parents[2] / "fixtures" / "provider_api"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIX / name).read_text(), parse_float=Decimal)
    return data


def no_price(u: UsageItem) -> PriceResult:
    return PriceResult(None, None, (u.model_raw or "unknown").lower())


def test_completions_tokens_keep_openai_input_semantics() -> None:
    items = openai.normalize_usage(
        "usage.completions",
        [
            load("openai_usage_completions_page1.json"),
            load("openai_usage_completions_page2_DERIVED.json"),
        ],
    )
    assert len(items) == 2
    a, b = items
    assert a.bucket_start == datetime(2024, 11, 1, tzinfo=UTC)
    assert a.bucket_end == datetime(2024, 11, 2, tzinfo=UTC)
    # input_tokens (1000) already includes cached (400) and cache-write (100) tokens
    assert (a.input_tokens, a.cached_input_tokens, a.cache_creation_input_tokens) == (
        1000,
        400,
        100,
    )
    assert a.output_tokens == 500 and a.request_count == 5
    assert (a.input_audio_tokens, a.output_audio_tokens) == (50, 50)
    assert a.token_parts["input"] == 500  # input_uncached_tokens
    assert a.model_raw is None and a.provider_project_id is None
    assert b.model_raw == "gpt-4o-mini-2024-07-18"
    assert (b.provider_project_id, b.provider_api_key_id, b.service_tier, b.batch) == (
        "proj_abc",
        "key_abc",
        "default",
        False,
    )
    assert b.metadata == {"openai_user_id": "user-abc"}
    assert (b.input_tokens, b.cached_input_tokens, b.cache_creation_input_tokens) == (
        5000,
        1800,
        200,
    )


def test_legacy_shape_has_no_cache_write_field() -> None:
    (a,) = openai.normalize_usage(
        "usage.completions", [load("openai_usage_completions_legacy_shape.json")]
    )
    assert (a.input_tokens, a.cached_input_tokens, a.cache_creation_input_tokens) == (1000, 800, 0)
    assert a.token_parts["input"] == 200


def test_embeddings() -> None:
    (e,) = openai.normalize_usage("usage.embeddings", [load("openai_usage_embeddings.json")])
    assert (e.input_tokens, e.output_tokens, e.request_count) == (16, 0, 2)


def test_costs_are_dollars_as_exact_decimal() -> None:
    for name in ("openai_costs.json", "openai_costs_legacy_shape.json"):
        (c,) = openai.normalize_costs([load(name)], [])
        assert c.amount_nanousd == 60_000_000  # $0.06 exactly, no float on the way
        assert c.bucket_start == datetime(2024, 11, 1, tzinfo=UTC)


def test_line_item_parsing() -> None:
    models = {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4o"}
    assert openai.parse_line_item("gpt-4o-2024-08-06, cached input", models) == (
        "gpt-4o-2024-08-06",
        "cached_input",
    )
    assert openai.parse_line_item("gpt-4o, output", models) == ("gpt-4o", "output")
    assert openai.parse_line_item("input_tokens", models) == (None, "all_input")
    assert openai.parse_line_item("web search tool calls", models) == (None, None)
    assert openai.parse_line_item("o3-pro, output", models) == ("o3-pro", "output")


def test_grouped_cost_allocated_to_matching_project_exactly() -> None:
    usage = openai.normalize_usage(
        "usage.completions", [load("openai_usage_completions_page2_DERIVED.json")]
    )
    page = load("openai_costs_grouped_line_item_DERIVED.json")
    page["data"][0]["start_time"] = 1730505600  # the usage page's day
    page["data"][0]["end_time"] = 1730592000
    page["data"][0]["results"][0]["api_key_id"] = "key_abc"
    costs = openai.normalize_costs([page], usage)
    recs, st = assemble(
        credential_id="cred_x",
        workspace_id="ws_x",
        provider="openai",
        usage=usage,
        costs=costs,
        price=no_price,
    )
    assert len(recs) == 1 and st.cost_only_records == 0
    (r,) = recs
    assert r.cost_nanousd == 60_000_000 and r.cost_source == "provider_reported"
    assert r.source == "provider_api_key" and r.source_ref == "cred_x"
    assert r.dedupe_key.startswith("cred_x:usage.completions:1730505600:")


def test_unmatched_cost_becomes_cost_only_record() -> None:
    usage = openai.normalize_usage(
        "usage.completions", [load("openai_usage_completions_page2_DERIVED.json")]
    )
    costs = openai.normalize_costs([load("openai_costs_grouped_line_item_DERIVED.json")], usage)
    recs, st = assemble(
        credential_id="c",
        workspace_id="w",
        provider="openai",
        usage=usage,
        costs=costs,
        price=no_price,
    )
    assert st.cost_only_records == 1 and st.unpriced_models == {"gpt-4o-mini-2024-07-18"}
    by_kind = {bool(r.metadata and r.metadata.get("cost_only")): r for r in recs}
    assert by_kind[True].cost_nanousd == 60_000_000 and by_kind[True].input_tokens == 0
    assert by_kind[False].cost_source == "none" and by_kind[False].cost_nanousd == 0
