"""Fuzzing usage extraction from inference responses (non-streaming and per event).

`metis.gateway.usage` reads the upstream's ``usage`` object into canonical
tokens for pricing; `metis.gateway.translate.usage` maps it between shapes.
Whatever the object holds, nothing raises, every count is an integer in
``[0, MAX_TOKENS]`` (a malformed count reads as 0) and parts never exceed
their whole after translation.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis.gateway.translate.usage import anthropic_usage_to_openai, openai_usage_to_anthropic
from metis.gateway.usage import MAX_TOKENS, Tokens, from_anthropic, from_openai
from tests.conftest import BACKEND
from tests.fuzz.hostile import hostile_values
from tests.fuzz.settings import fuzz_settings

# No Metis database is involved: run once, in the SQLite pass of the suite.
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="database-free; runs on SQLite")

FIELDS = [
    "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
    "completion_tokens_details", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens",
]  # fmt: skip
count_like = st.one_of(
    hostile_values,
    st.integers(-(2**70), 2**70),
    st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens"]), hostile_values),
)
usage_objects = st.one_of(hostile_values, st.dictionaries(st.sampled_from(FIELDS), count_like))


def check(t: Tokens) -> None:
    for name in ("input", "output", "cached", "cache_creation", "reasoning"):
        v = getattr(t, name)
        assert type(v) is int and 0 <= v <= 3 * MAX_TOKENS, (name, v)


@given(usage_objects, st.lists(usage_objects, max_size=3))
@fuzz_settings(300)
def test_usage_extraction(first: Any, later: list[Any]) -> None:
    check(from_openai(first))
    t = from_anthropic(first)  # message_start, then message_delta updates
    for u in later:
        from_anthropic(u, t)
    check(t)


@given(usage_objects)
@fuzz_settings(300)
def test_usage_translation(u: Any) -> None:
    o = anthropic_usage_to_openai(u)
    assert 0 <= o["prompt_tokens_details"]["cached_tokens"] <= o["prompt_tokens"] <= 3 * MAX_TOKENS
    assert o["total_tokens"] == o["prompt_tokens"] + o["completion_tokens"]
    a = openai_usage_to_anthropic(u)
    assert all(type(v) is int and 0 <= v <= MAX_TOKENS for v in a.values())
