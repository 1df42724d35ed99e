"""Fuzzing the provider admin report parsers (OpenAI usage/costs, Anthropic usage/cost).

The contract (metis.ingest.providers.base): a page is either normalized into
items whose counts are integers in ``[0, MAX_TOKENS]``, whose amounts are exact
nano-USD inside 64 bits and whose bucket times lie between 2000 and 2100, or
it is refused with a `MetisError` naming the report, which the sync records as
the window's error. Nothing else may escape (a KeyError, an OverflowError, an
InvalidOperation), nothing may hang, and garbage (negative or fractional
counts, booleans, NaN money) is never stored as if it were data.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis.errors import MetisError
from metis.ingest.providers import anthropic, openai
from metis.ingest.providers.base import MAX_TOKENS, CostItem, UsageItem, assemble
from metis.ingest.sync import price_item
from metis.money import to_nanousd
from tests.conftest import BACKEND
from tests.fuzz.hostile import hostile_values, mutated
from tests.fuzz.settings import fuzz_settings

# No Metis database is involved: run once, in the SQLite pass of the suite.
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="database-free; runs on SQLite")

FIX = Path(__file__).parent.parent / "fixtures" / "provider_api"
INT64 = 2**63 - 1


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text(), parse_float=Decimal)


OPENAI_USAGE = [
    load(n)
    for n in (
        "openai_usage_completions_page1.json",
        "openai_usage_completions_page2_DERIVED.json",
        "openai_usage_completions_legacy_shape.json",
        "openai_usage_embeddings.json",
    )
]
OPENAI_COSTS = [
    load(n)
    for n in (
        "openai_costs.json",
        "openai_costs_grouped_line_item_DERIVED.json",
        "openai_costs_legacy_shape.json",
    )
]
ANTHROPIC_USAGE = [
    load(n)
    for n in (
        "anthropic_usage_messages.json",
        "anthropic_usage_messages_ungrouped_DERIVED.json",
        "anthropic_usage_messages_v2_all_dimensions.json",
    )
]
ANTHROPIC_COSTS = [
    load(n)
    for n in (
        "anthropic_cost_report.json",
        "anthropic_cost_report_ungrouped_DERIVED.json",
        "anthropic_cost_report_v2.json",
    )
]

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "request_count",
)


def check_usage(items: list[UsageItem]) -> None:
    for u in items:
        for f in TOKEN_FIELDS:
            v = getattr(u, f)
            assert type(v) is int and 0 <= v <= 4 * MAX_TOKENS, (f, v)
        assert u.cached_input_tokens + u.cache_creation_input_tokens <= u.input_tokens
        assert 2000 <= u.bucket_start.year < 2100 and 2000 <= u.bucket_end.year <= 2100
        for v in (u.model_raw, u.provider_project_id, u.provider_api_key_id, u.service_tier):
            assert v is None or isinstance(v, str)
        assert u.batch is None or isinstance(u.batch, bool)


def check_costs(items: list[CostItem]) -> None:
    for c in items:
        assert type(c.amount_nanousd) is int and abs(c.amount_nanousd) < INT64
        assert 2000 <= c.bucket_start.year < 2100


def check_assembled(provider: str, usage: list[UsageItem], costs: list[CostItem]) -> None:
    """Accepted rows also make storable records (the step after the parser)."""
    records, _ = assemble(
        credential_id="cred_fuzz",
        workspace_id="ws_fuzz",
        provider=provider,
        usage=usage,
        costs=costs,
        price=price_item(provider),
    )
    for r in records:
        assert abs(r.cost_nanousd) < INT64
        assert isinstance(r.model, str) and isinstance(r.model_raw, str)


def parse_or_refuse(fn: Any, *args: Any) -> Any:
    """Run a parser: its result, or None when it refused with MetisError (one line)."""
    try:
        return fn(*args)
    except MetisError as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 500
        return None


def test_golden_pages_parse() -> None:
    """The fixtures themselves are accepted (so the properties below test something)."""
    for page in OPENAI_USAGE:
        check_usage(openai.normalize_usage("usage.completions", [page]))
    for page in OPENAI_COSTS:
        check_costs(openai.normalize_costs([page], []))
    for page in ANTHROPIC_USAGE:
        check_usage(anthropic.normalize_usage([page]))
    for page in ANTHROPIC_COSTS:
        check_costs(anthropic.normalize_costs([page]))


@given(
    st.sampled_from(OPENAI_USAGE).flatmap(mutated), st.sampled_from(OPENAI_COSTS).flatmap(mutated)
)
@fuzz_settings(300)
def test_openai_report_pages(usage_page: Any, cost_page: Any) -> None:
    usage = parse_or_refuse(openai.normalize_usage, "usage.completions", [usage_page])
    if usage is not None:
        check_usage(usage)
    costs = parse_or_refuse(openai.normalize_costs, [cost_page], usage or [])
    if costs is not None:
        check_costs(costs)
    if usage is not None and costs is not None:
        check_assembled("openai", usage, costs)


@given(
    st.sampled_from(ANTHROPIC_USAGE).flatmap(mutated),
    st.sampled_from(ANTHROPIC_COSTS).flatmap(mutated),
)
@fuzz_settings(300)
def test_anthropic_report_pages(usage_page: Any, cost_page: Any) -> None:
    usage = parse_or_refuse(anthropic.normalize_usage, [usage_page])
    if usage is not None:
        check_usage(usage)
    costs = parse_or_refuse(anthropic.normalize_costs, [cost_page])
    if costs is not None:
        check_costs(costs)
    if usage is not None and costs is not None:
        check_assembled("anthropic", usage, costs)


@given(hostile_values)
@fuzz_settings(150)
def test_whole_page_is_garbage(page: Any) -> None:
    for fn, args in (
        (openai.normalize_usage, ("usage.embeddings", [page])),
        (openai.normalize_costs, ([page], [])),
        (anthropic.normalize_usage, ([page],)),
        (anthropic.normalize_costs, ([page],)),
    ):
        parse_or_refuse(fn, *args)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("input_tokens", -5, "outside"),
        ("output_tokens", Decimal("2.5"), "expected an integer"),
        ("num_model_requests", True, "expected an integer"),
        ("input_tokens", 10**20, "outside"),
        ("input_cached_tokens", 10**6, "exceed input_tokens"),
        ("model", {"x": 1}, "model: expected a string"),
        ("batch", "yes", "batch: expected true, false or null"),
    ],
)
def test_openai_usage_garbage_is_refused_with_the_field(field: str, value: Any, why: str) -> None:
    page = json.loads(json.dumps(OPENAI_USAGE[0]))
    page["data"][0]["results"][0][field] = value
    with pytest.raises(MetisError, match=why):
        openai.normalize_usage("usage.completions", [page])


def test_integral_decimal_counts_are_integers() -> None:
    """``500.0`` (parsed as Decimal) is the integer 500, not a refusal."""
    page = json.loads(json.dumps(OPENAI_USAGE[0]))
    page["data"][0]["results"][0]["output_tokens"] = Decimal("500.0")
    (u,) = openai.normalize_usage("usage.completions", [page])
    assert u.output_tokens == 500 and type(u.output_tokens) is int


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("abc", "expected a decimal amount"),
        (Decimal("NaN"), "not a finite amount"),
        (True, "expected a decimal amount"),
        ("1e30", "not a finite amount"),
    ],
)
def test_money_garbage_is_refused(value: Any, why: str) -> None:
    o = json.loads(json.dumps(OPENAI_COSTS[0], default=str))
    o["data"][0]["results"][0]["amount"]["value"] = value
    with pytest.raises(MetisError, match=why):
        openai.normalize_costs([o], [])
    a = json.loads(json.dumps(ANTHROPIC_COSTS[0]))
    a["data"][0]["results"][0]["amount"] = value
    with pytest.raises(MetisError, match=why):
        anthropic.normalize_costs([a])


def test_negative_cost_is_a_credit_kept_exactly() -> None:
    o = json.loads(json.dumps(OPENAI_COSTS[0], default=str))
    o["data"][0]["results"][0]["amount"]["value"] = Decimal("-0.000000001")
    (c,) = openai.normalize_costs([o], [])
    assert c.amount_nanousd == -1 == to_nanousd("-0.000000001")


@pytest.mark.parametrize("ts", ["1730419200", 10**12, -1, 1.5])
def test_openai_bucket_time_garbage(ts: Any) -> None:
    page = json.loads(json.dumps(OPENAI_USAGE[0]))
    page["data"][0]["start_time"] = ts
    with pytest.raises(MetisError, match="bucket time"):
        openai.normalize_usage("usage.completions", [page])


@pytest.mark.parametrize("ts", [17, "yesterday", "0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z"])
def test_anthropic_bucket_time_garbage(ts: Any) -> None:
    page = json.loads(json.dumps(ANTHROPIC_USAGE[0]))
    page["data"][0]["starting_at"] = ts
    with pytest.raises(MetisError, match="bucket time"):
        anthropic.normalize_usage([page])
