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


def _same_day_usage() -> list[UsageItem]:
    """OpenAI's published usage examples, all on the day of the published costs example.

    ``page1`` (ungrouped, no model) and ``embeddings`` are that day already; the
    grouped ``gpt-4o-mini`` result of page 2 is moved onto it (the published
    example puts it on the next day).
    """
    page2 = load("openai_usage_completions_page2_DERIVED.json")
    page2["data"][0]["start_time"], page2["data"][0]["end_time"] = 1730419200, 1730505600
    return [
        *openai.normalize_usage(
            "usage.completions", [load("openai_usage_completions_page1.json"), page2]
        ),
        *openai.normalize_usage("usage.embeddings", [load("openai_usage_embeddings.json")]),
    ]


def test_unallocated_org_cost_beside_usage_is_the_day_total_exactly() -> None:
    """Issue 18 #2: OpenAI's published ``costs`` example (one organisation-level result,
    ``line_item: null``, $0.06) beside usage of the same day.

    Before: the $0.06 went to the model-less usage row and ``gpt-4o-mini`` was priced
    again on top ($0.061215 for the day). Now the day is exactly the report's $0.06:
    the amount no model can be matched to stays a cost-only row, and no usage row of
    a day the cost report covers is priced.
    """
    from metis.ingest.sync import price_item

    usage = _same_day_usage()
    costs = openai.normalize_costs([load("openai_costs.json")], usage)
    recs, st = assemble(
        credential_id="cred_x",
        workspace_id="ws_x",
        provider="openai",
        usage=usage,
        costs=costs,
        price=price_item("openai"),  # genai-prices does know gpt-4o-mini
    )
    assert sum(r.cost_nanousd for r in recs) == 60_000_000
    assert not [r for r in recs if r.cost_source == "computed"]
    (only,) = [r for r in recs if r.metadata.get("cost_only")]
    assert (only.model, only.cost_nanousd, only.input_tokens) == ("unallocated", 60_000_000, 0)
    assert only.cost_source == "provider_reported"
    mini = next(r for r in recs if r.model_raw == "gpt-4o-mini-2024-07-18")
    assert (mini.cost_nanousd, mini.cost_source) == (0, "provider_reported")
    assert mini.metadata["cost_unallocated"] is True and mini.input_tokens == 5000
    assert st.cost_only_records == 1 and st.cost_unallocated == 3 and st.computed == 0


def test_computed_prices_only_fill_days_the_cost_report_does_not_cover() -> None:
    """The same usage with no cost row for its day (today, before costs settle): priced,
    and labelled ``computed``."""
    from metis.ingest.sync import price_item

    recs, st = assemble(
        credential_id="cred_x",
        workspace_id="ws_x",
        provider="openai",
        usage=_same_day_usage(),
        costs=[],
        price=price_item("openai"),
    )
    mini = next(r for r in recs if r.model_raw == "gpt-4o-mini-2024-07-18")
    assert mini.cost_source == "computed" and mini.pricing_version
    assert mini.cost_nanousd == 1_215_000  # the $0.001215 that used to land on top
    assert st.computed >= 1 and st.cost_unallocated == 0
