"""How many tokens a model can take in and write out: the bounds a reservation needs.

A request that names no output budget (Codex never sends ``max_output_tokens``;
OpenAI chat clients often send no ``max_tokens``) can make the provider bill
up to the model's own maximum output, so the cap reservation needs that
maximum (DESIGN.md "Worst case is computed per shape"). genai-prices, the
price source, carries each model's *context window* (its ``context_window``:
the most tokens one model invocation can hold, input and output together)
but no output limit, so:

1. `MAX_OUTPUT` below: the documented maximum output of the models Metis
   knows, keyed by genai-prices' model id (the id every snapshot and alias
   of a family normalizes to, `metis.pricing.normalize_model`). Sources: the
   providers' model pages (Anthropic: platform.claude.com/docs/en/about-claude/models/overview
   and each model's page, "Max output"; OpenAI: platform.openai.com/docs/models/<id>,
   "Max output tokens"; Google: ai.google.dev/gemini-api/docs/models, each
   model's "Output token limit"). Where a family's snapshots differ, the largest.
   ``claude-3-7-sonnet`` counts its 128K beta (``output-128k-2025-02-19``,
   which the gateway forwards), not its default 64K.
2. A model not listed: its context window from genai-prices. Output is part
   of the context window, so this is a sound bound, only a loose one (Metis
   would rather reserve too much than let a call overshoot a cap unseen).
3. Neither known: `FALLBACK_TOKENS`, the largest context window of any model
   genai-prices lists (2M tokens).

A wrong (too small) entry in `MAX_OUTPUT` would break the cap bound, so only
values the provider documents are listed; a new model falls back to its
context window until it is added here (tests/gateway/test_model_limits.py
checks every entry against the context window and that every priced model
resolves).
"""

from __future__ import annotations

import functools

from metis.pricing import normalize_model

FALLBACK_TOKENS = 2_097_152
"""Bound for a model with neither a listed maximum output nor a known context window."""

_ANTHROPIC_128K = (
    "claude-3-7-sonnet-latest",  # 64K by default, 128K with the output-128k beta
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-sonnet-4-6",
    "claude-opus-5",
    "claude-opus-5-5",
    "claude-sonnet-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-fable-5",
    "claude-fable-5-1",
    "claude-fable-5-2",
)

MAX_OUTPUT: dict[tuple[str, str], int] = {
    ("google", "gemini-3-pro-preview"): 65_536,
    ("google", "gemini-2.5-pro"): 65_536,
    ("google", "gemini-2.5-flash"): 65_536,
    ("google", "gemini-2.5-flash-lite"): 65_536,
    ("google", "gemini-2.0-flash"): 8_192,
    ("google", "gemini-2.0-flash-lite"): 8_192,
    **{("anthropic", m): 128_000 for m in _ANTHROPIC_128K},
    ("anthropic", "claude-opus-4-5"): 64_000,
    ("anthropic", "claude-sonnet-4-5"): 64_000,
    ("anthropic", "claude-haiku-4-5"): 64_000,
    ("anthropic", "claude-sonnet-4-0"): 64_000,
    ("anthropic", "claude-opus-4-1"): 32_000,
    ("anthropic", "claude-opus-4-0"): 32_000,
    ("anthropic", "claude-3-5-sonnet"): 8_192,
    ("anthropic", "claude-3-5-haiku-latest"): 8_192,
    ("anthropic", "claude-3-opus-latest"): 4_096,
    ("anthropic", "claude-3-sonnet"): 4_096,
    ("anthropic", "claude-3-haiku"): 4_096,
    ("openai", "gpt-4o"): 16_384,
    ("openai", "gpt-4o-2024-05-13"): 4_096,
    ("openai", "chatgpt-4o-latest"): 16_384,
    ("openai", "gpt-4o-mini"): 16_384,
    ("openai", "gpt-4o-audio-preview"): 16_384,
    ("openai", "gpt-4o-mini-audio-preview"): 16_384,
    ("openai", "gpt-4o-search-preview"): 16_384,
    ("openai", "gpt-4.1"): 32_768,
    ("openai", "gpt-4.1-mini"): 32_768,
    ("openai", "gpt-4.1-nano"): 32_768,
    ("openai", "gpt-4-turbo"): 4_096,
    ("openai", "gpt-4"): 8_192,
    ("openai", "gpt-3.5-turbo"): 4_096,
    ("openai", "o1"): 100_000,
    ("openai", "o1-pro"): 100_000,
    ("openai", "o1-mini"): 65_536,
    ("openai", "o1-preview"): 32_768,
    ("openai", "o3"): 100_000,
    ("openai", "o3-pro"): 100_000,
    ("openai", "o3-mini"): 100_000,
    ("openai", "o4-mini"): 100_000,
    ("openai", "o3-deep-research"): 100_000,
    ("openai", "o4-mini-deep-research"): 100_000,
    ("openai", "codex-mini"): 100_000,
    ("openai", "gpt-5"): 128_000,
    ("openai", "gpt-5-mini"): 128_000,
    ("openai", "gpt-5-nano"): 128_000,
    ("openai", "gpt-5-pro"): 272_000,
    ("openai", "gpt-5.1"): 128_000,
    ("openai", "gpt-5.2"): 128_000,
    ("openai", "gpt-5.4"): 128_000,
}
"""Documented maximum output tokens by (provider, genai-prices model id); see the module doc."""


@functools.lru_cache(maxsize=4096)
def context_window(provider: str | None, model: str) -> int:
    """The model's context window (genai-prices), else `FALLBACK_TOKENS`."""
    from metis.pricing import _lookup

    found = _lookup(provider, model)
    cw = found[1].context_window if found is not None else None
    return cw if isinstance(cw, int) and cw > 0 else FALLBACK_TOKENS


@functools.lru_cache(maxsize=4096)
def max_output_tokens(provider: str | None, model: str) -> int:
    """The most output tokens one invocation of ``model`` can write (see the module doc)."""
    listed = MAX_OUTPUT.get((provider or "", normalize_model(provider, model)))
    return listed if listed is not None else context_window(provider, model)
