"""metis.pricing: exact nano-USD from canonical token counts via genai-prices."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from metis import pricing
from metis.money import to_nanousd

AT = datetime(2025, 6, 1, tzinfo=UTC)


def test_version_names_the_package() -> None:
    assert pricing.PRICING_VERSION.startswith("genai-prices-")
    assert pricing.PRICING_VERSION.split("-")[-1][0].isdigit()


def test_plain_input_output_exact() -> None:
    # gpt-4o-mini: $0.15 / MTok in, $0.60 / MTok out.
    p = pricing.price("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=10, at=AT)
    assert p.cost_source == "computed"
    assert p.pricing_version == pricing.PRICING_VERSION
    assert p.cost_nanousd == 150_000 + 6_000
    assert p.model_normalized == "gpt-4o-mini"


def test_cached_tokens_are_part_of_input() -> None:
    # claude-sonnet-4-5: $3 in, $0.30 cache read, $3.75 cache write, $15 out per MTok.
    all_cached = pricing.price(
        "anthropic", "claude-sonnet-4-5", input_tokens=1000, cached_input_tokens=1000, at=AT
    )
    assert all_cached.cost_nanousd == 300_000  # 1000 cache reads, no plain input
    mixed = pricing.price(
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=3000,
        cached_input_tokens=1000,
        cache_creation_input_tokens=1000,
        output_tokens=100,
        at=AT,
    )
    # 1000 plain * 3 + 1000 read * 0.3 + 1000 write * 3.75 + 100 out * 15, per MTok
    assert mixed.cost_nanousd == 3_000_000 + 300_000 + 3_750_000 + 1_500_000


def test_matches_genai_prices_directly() -> None:
    got = pricing.price(
        "openai", "gpt-4o", input_tokens=12345, cached_input_tokens=2048, output_tokens=777, at=AT
    )
    ref = calc_price(
        Usage(input_tokens=12345, cache_read_tokens=2048, output_tokens=777),
        "gpt-4o",
        provider_id="openai",
        genai_request_timestamp=AT,
    )
    assert got.cost_nanousd == to_nanousd(ref.total_price)
    assert isinstance(ref.total_price, Decimal)


def test_dated_model_normalizes() -> None:
    p = pricing.price("openai", "gpt-4o-mini-2024-07-18", input_tokens=1, at=AT)
    assert p.model_normalized == "gpt-4o-mini"
    assert pricing.normalize_model("openai", "GPT-4o-mini-2024-07-18") == "gpt-4o-mini"


def test_unknown_model_is_none_not_zero() -> None:
    p = pricing.price("openai", "no-such-model-xyz", input_tokens=1000, output_tokens=5)
    assert p.cost_nanousd is None
    assert p.cost_source == "none"
    assert p.pricing_version is None
    assert p.model_normalized == "no-such-model-xyz"
    assert not pricing.has_price("openai", "no-such-model-xyz")
    assert pricing.has_price("anthropic", "claude-3-5-haiku-latest")


def test_unknown_provider_is_none() -> None:
    assert pricing.price("nope-provider", "gpt-4o", input_tokens=1).cost_source == "none"


def test_inconsistent_parts_rejected() -> None:
    with pytest.raises(ValueError, match="exceed input_tokens"):
        pricing.price("openai", "gpt-4o", input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ValueError, match="reasoning_tokens exceed"):
        pricing.price("openai", "o3-mini", output_tokens=1, reasoning_tokens=2)


def test_one_hour_cache_writes_at_their_own_price() -> None:
    # claude-sonnet-4-5: cache write $3.75 (5 minutes) and $6 (1 hour) per MTok.
    five = pricing.price(
        "anthropic", "claude-sonnet-4-5", input_tokens=1000, cache_creation_input_tokens=1000, at=AT
    )
    mixed = pricing.price(
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=3000,
        cache_creation_input_tokens=3000,
        cache_write_1h_tokens=1000,
        at=AT,
    )
    assert five.cost_nanousd == 3_750_000
    assert mixed.cost_nanousd == 2 * 3_750_000 + 6_000_000
    with pytest.raises(ValueError, match="cache_write_1h_tokens exceed"):
        pricing.price(
            "anthropic",
            "claude-sonnet-4-5",
            input_tokens=10,
            cache_creation_input_tokens=1,
            cache_write_1h_tokens=2,
        )


def test_reasoning_tokens_priced_as_output() -> None:
    with_r = pricing.price(
        "openai", "o3-mini", input_tokens=100, output_tokens=500, reasoning_tokens=400, at=AT
    )
    without = pricing.price("openai", "o3-mini", input_tokens=100, output_tokens=500, at=AT)
    assert with_r.cost_nanousd == without.cost_nanousd


def test_zero_usage_costs_zero() -> None:
    assert pricing.price("openai", "gpt-4o-mini").cost_nanousd == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fast_path_equals_genai_prices_for_every_model(provider: str) -> None:
    from genai_prices import data_snapshot

    [prov] = [p for p in data_snapshot.get_snapshot().providers if p.id == provider]
    usages = [
        (1000, 0, 0, 0, 10),
        (123_457, 100_000, 0, 0, 999),
        (50_000, 1_000, 2_000, 0, 3),
        (50_000, 1_000, 2_000, 500, 3),
        (90_000, 0, 70_000, 70_000, 0),
        (300_001, 0, 0, 0, 0),
    ]
    checked = 0
    for m in prov.models:
        if not pricing.has_price(provider, m.id):
            continue  # ids that do not match themselves (e.g. "ft:…" patterns)
        for inp, cached, write, write_1h, out in usages:
            ref = calc_price(
                Usage(
                    input_tokens=inp,
                    cache_read_tokens=cached or None,
                    cache_write_tokens=write or None,
                    cache_write_1h_tokens=write_1h or None,
                    output_tokens=out,
                ),
                m.id,
                provider_id=provider,
                genai_request_timestamp=AT,
            )
            got = pricing.price(
                provider,
                m.id,
                input_tokens=inp,
                cached_input_tokens=cached,
                cache_creation_input_tokens=write,
                cache_write_1h_tokens=write_1h,
                output_tokens=out,
                at=AT,
            )
            assert got.cost_nanousd == to_nanousd(ref.total_price), (m.id, inp, cached, write)
            checked += 1
    assert checked > 20


def test_top_prices_from_the_prices_file_cover_every_entry_that_can_price_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cap reservation prices a prices-file model at the top of every entry `price` could
    use: before the model's own entry takes effect, the provider's ``*`` entry prices it (a
    reservation from the model's own, later and cheaper entry undershot today's bill 500x);
    a model priced only from a later date is unpriced now (refused under a cap)."""
    from metis import prices_file
    from metis.gateway.worst_case import WorstCase, bounds, cost

    f = tmp_path / "prices.yaml"
    f.write_text(
        "schema_version: 1\nprices:\n"
        "  - {provider: my-vllm, model: '*', input_per_mtok: '50', output_per_mtok: '100'}\n"
        "  - {provider: my-vllm, model: llama-big, from: 2099-06-01, input_per_mtok: '0.1', "
        "output_per_mtok: '0.2'}\n"
        "  - {provider: later, model: m, from: 2099-01-01, input_per_mtok: '1', "
        "output_per_mtok: '2'}\n"
    )
    monkeypatch.setenv("METIS_PRICES_FILE", str(f))
    prices_file.reset_cache()
    try:
        top = pricing.top_prices(None, "llama-big", "my-vllm")
        assert top == pricing.TopPrices(Decimal(50), Decimal(100), Decimal(0))
        wc = WorstCase(output_budget=64)
        b = bounds(None, "llama-big", 600, wc)
        billed = pricing.price(
            None, "llama-big", input_tokens=b.input_tokens, output_tokens=64, name="my-vllm"
        )
        reserved = cost(None, "llama-big", 600, wc, name="my-vllm")
        assert billed.cost_nanousd is not None and reserved is not None
        assert billed.cost_nanousd <= reserved  # today's bill is the "*" entry's
        assert pricing.top_prices(None, "m", "later") is None
        assert cost(None, "m", 600, wc, name="later") is None
        assert pricing.price(None, "m", input_tokens=10, name="later").cost_nanousd is None
        # ... and its calls count as unpriced (the gateway's metric asks with the call's time)
        assert not pricing.has_price(None, "m", name="later", at=datetime.now(UTC))
        assert pricing.has_price(None, "m", name="later")  # at some time: from 2099
    finally:
        prices_file.reset_cache()
