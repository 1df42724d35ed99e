"""The worst-case estimate of a call whose usage could not be read (`metis.gateway.estimate`)."""

from __future__ import annotations

from metis.gateway.estimate import estimate
from metis.gateway.usage import Tokens
from metis.gateway.worst_case import OVERHEAD_TOKENS, WorstCase, bounds, cost


def test_nothing_read_is_the_reservation() -> None:
    wc = WorstCase(output_budget=100, choices=3)
    tokens, est = estimate("openai", "gpt-4o-mini", 500, wc, Tokens(), name="openai")
    assert (tokens.input, tokens.output) == (500 + OVERHEAD_TOKENS, 300)
    assert est == cost("openai", "gpt-4o-mini", 500, wc, name="openai")


def test_input_a_stream_reported_replaces_the_input_bound() -> None:
    wc = WorstCase(output_budget=120)
    seen = Tokens(input=37, output=1, cached=30, reported=True)
    tokens, est = estimate("anthropic", "claude-haiku-4-5", 900, wc, seen, name="anthropic")
    assert (tokens.input, tokens.output, tokens.cached) == (37, 120, 30)
    reservation = cost("anthropic", "claude-haiku-4-5", 900, wc, name="anthropic")
    assert est is not None and reservation is not None and est < reservation


def test_no_budget_is_the_models_maximum_output_and_unpriced_is_none() -> None:
    tokens, est = estimate(None, "no-such-model-x", 10, WorstCase(), Tokens())
    assert tokens.output == bounds(None, "no-such-model-x", 10, WorstCase()).output_tokens > 0
    assert est is None
