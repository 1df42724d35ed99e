"""The model-limits table behind reservations without an output budget.

A too-small maximum output would let a call overshoot its cap unseen, so every
listed entry must be a model genai-prices prices, and never above its context
window (output is part of it); a model not listed falls back to its context
window, and an unknown one to the documented conservative default.
"""

from __future__ import annotations

from metis.gateway.model_limits import (
    FALLBACK_TOKENS,
    MAX_OUTPUT,
    context_window,
    max_output_tokens,
)
from metis.pricing import normalize_model, top_prices


def test_every_listed_model_is_priced_and_within_its_context_window() -> None:
    for (provider, model), out in MAX_OUTPUT.items():
        assert top_prices(provider, model) is not None, (provider, model)
        assert normalize_model(provider, model) == model, (provider, model)
        assert 0 < out <= context_window(provider, model), (provider, model, out)


def test_snapshots_and_aliases_resolve_to_their_familys_entry() -> None:
    assert max_output_tokens("openai", "gpt-4o-2024-08-06") == 16_384
    assert max_output_tokens("openai", "gpt-5") == 128_000
    assert max_output_tokens("anthropic", "claude-sonnet-4-5-20250929") == 64_000


def test_unlisted_and_unknown_models_fall_back_conservatively() -> None:
    assert max_output_tokens("openai", "no-such-model-xyz") == FALLBACK_TOKENS
    assert context_window("anthropic", "no-such-model-xyz") == FALLBACK_TOKENS
    # a priced model absent from the table: its whole context window
    assert ("openai", "gpt-5.5") not in MAX_OUTPUT
    cw = context_window("openai", "gpt-5.5")
    assert max_output_tokens("openai", "gpt-5.5") == cw < FALLBACK_TOKENS
