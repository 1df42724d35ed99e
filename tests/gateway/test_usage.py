"""Usage normalization per provider family into the canonical token convention.

Each case is a usage object as the provider documents it (OpenAI-compatible
variants, Gemini's ``usageMetadata``); the expected canonical counts follow
DESIGN.md: input includes cache reads and writes, output includes reasoning.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from metis.gateway.streaming import SSEUsageTap
from metis.gateway.usage import Tokens, from_gemini, from_openai, stated_cost


def _t(t: Tokens) -> tuple[int, int, int, int, int]:
    return t.input, t.cached, t.cache_creation, t.output, t.reasoning


def test_deepseek_cache_hits_are_a_part_of_prompt_tokens() -> None:
    u = {
        "prompt_tokens": 1300,
        "completion_tokens": 40,
        "total_tokens": 1340,
        "prompt_cache_hit_tokens": 1024,
        "prompt_cache_miss_tokens": 276,
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    assert _t(from_openai(u)) == (1300, 1024, 0, 40, 12)


def test_openai_details_win_over_deepseek_fields_when_both_are_sent() -> None:
    u = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 64},
        "prompt_cache_hit_tokens": 64,
    }
    assert _t(from_openai(u)) == (100, 64, 0, 1, 0)


def test_openrouter_stated_cost_is_kept_exactly() -> None:
    raw = (
        b'{"prompt_tokens":194,"completion_tokens":2,"total_tokens":196,"cost":0.000123457,'
        b'"is_byok":false,"prompt_tokens_details":{"cached_tokens":100,"cache_write_tokens":50},'
        b'"cost_details":{"upstream_inference_cost":null}}'
    )
    exact = from_openai(msgspec.json.Decoder(float_hook=Decimal).decode(raw))
    assert _t(exact) == (194, 100, 50, 2, 0)
    assert exact.stated_cost_nanousd == 123_457
    as_float = from_openai(msgspec.json.decode(raw))  # a float decodes to the same amount
    assert as_float.stated_cost_nanousd == 123_457


@pytest.mark.parametrize("bad", [-1, "0.1", True, None, Decimal("NaN"), 10**7, float("inf")])
def test_a_malformed_stated_cost_is_ignored(bad: object) -> None:
    assert stated_cost(bad) is None


def test_gemini_usage_metadata_maps_thoughts_to_reasoning_and_cache_to_cached() -> None:
    """Gemini: promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount is
    billed as output but is NOT in candidatesTokenCount; toolUsePromptTokenCount is input."""
    u = {
        "promptTokenCount": 2000,
        "candidatesTokenCount": 30,
        "cachedContentTokenCount": 1024,
        "thoughtsTokenCount": 70,
        "toolUsePromptTokenCount": 5,
        "totalTokenCount": 2105,
    }
    assert _t(from_gemini(u)) == (2005, 1024, 0, 100, 70)


def _events(*objs: object) -> bytes:
    return (
        b"".join(b"data: " + msgspec.json.encode(o) + b"\n\n" for o in objs) + b"data: [DONE]\n\n"
    )


def test_tap_reads_groq_x_groq_usage_when_no_usage_chunk_comes() -> None:
    usage = {"prompt_tokens": 20, "completion_tokens": 9, "queue_time": 0.01}
    stream = _events(
        {
            "id": "chatcmpl-1",
            "model": "llama",
            "choices": [{"index": 0, "delta": {"content": "a"}}],
        },
        {
            "id": "chatcmpl-1",
            "model": "llama",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "x_groq": {"id": "req_1", "usage": usage},
        },
    )
    tap = SSEUsageTap("openai")
    for i in range(0, len(stream), 7):  # split anywhere
        tap.feed(stream[i : i + 7])
    tap.flush()
    assert (tap.response_id, tap.tokens.input, tap.tokens.output) == ("chatcmpl-1", 20, 9)


def test_tap_skips_azures_empty_first_chunk_for_the_response_id() -> None:
    stream = _events(
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [],
        },
        {
            "id": "chatcmpl-az",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": {}}],
        },
        {"id": "chatcmpl-az", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    )
    tap = SSEUsageTap("openai", withhold_usage_chunk=True)
    out = tap.feed(stream) + tap.flush()
    assert (tap.response_id, tap.model) == ("chatcmpl-az", "gpt-4o-mini-2024-07-18")
    assert (tap.tokens.input, tap.tokens.output) == (3, 2)
    assert b'"usage"' not in out and b"prompt_filter_results" in out
