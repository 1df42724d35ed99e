"""Usage objects -> canonical tokens per provider family, and 1-hour cache writes priced
at their own rate.

Each case is a usage object as the provider documents it (OpenAI-compatible
variants, Gemini's ``usageMetadata``, Anthropic's cache writes by TTL); the
expected canonical counts follow DESIGN.md: input includes cache reads and
writes, output includes reasoning.

Anthropic reports cache writes by TTL (``cache_creation.ephemeral_5m_input_tokens``
/ ``ephemeral_1h_input_tokens``); a 1-hour write costs 2x input against 1.25x
for 5 minutes, so a gateway that priced every write at the 5-minute rate
under-priced 1-hour writes by 37.5% (issue 19). The end-to-end test sends a
1-hour cached system prompt through a real gateway to the simulator with the
official SDK, plain and streamed, and compares money exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from metis.gateway.streaming import SSEUsageTap
from metis.gateway.usage import Tokens, from_anthropic, from_gemini, from_openai, stated_cost
from metis.pricing import price
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator


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


MODEL = "claude-sonnet-4-5"


def test_from_anthropic_reads_the_ttl_split() -> None:
    t = from_anthropic(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 7,
        }
    )
    assert (t.input, t.cached, t.cache_creation, t.cache_write_1h) == (315, 5, 300, 200)
    # message_delta (cumulative counts, no split) keeps message_start's split
    from_anthropic({"output_tokens": 9, "cache_creation_input_tokens": 300}, t)
    assert (t.cache_creation, t.cache_write_1h, t.output) == (300, 200, 9)
    # a split larger than the total is clamped; garbage reads as 0
    bad = from_anthropic(
        {
            "input_tokens": 1,
            "cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_1h_input_tokens": 80},
        }
    )
    assert bad.cache_write_1h == 50
    junk = from_anthropic({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": -3}})
    assert junk.cache_write_1h == 0 and junk.cache_creation == 0
    # a split without the total: the total is the split's sum
    only = from_anthropic(
        {
            "input_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
        }
    )
    assert (only.cache_creation, only.cache_write_1h, only.input) == (10, 6, 11)
    assert Tokens().cache_write_1h == 0


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


@pytest.mark.parametrize("stream", [False, True])
def test_one_hour_cache_writes_are_priced_at_the_one_hour_rate(
    g: GatewayServer, simulator: Simulator, stream: bool
) -> None:
    _, secret = g.issue_key()
    client = g.anthropic(secret)
    system: Any = [
        {
            "type": "text",
            "text": "You are a meticulous assistant. " * 400,  # well above 1,024 tokens
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    kw: Any = {
        "model": MODEL,
        "max_tokens": 20,
        "system": system,
        "messages": [{"role": "user", "content": "hello"}],
    }
    if stream:
        with client.messages.stream(**kw) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(**kw)
    u = msg.usage
    assert u.cache_creation is not None
    w1h = u.cache_creation.ephemeral_1h_input_tokens
    assert w1h > 0 and w1h == u.cache_creation_input_tokens
    g.flush()
    with g.engine.connect() as c:
        [rec] = c.execute(select(usage_records)).mappings().all()
    [call] = simulator.calls()
    total_in = u.input_tokens + u.cache_creation_input_tokens + (u.cache_read_input_tokens or 0)
    expect = price(
        "anthropic",
        MODEL,
        input_tokens=total_in,
        output_tokens=u.output_tokens,
        cached_input_tokens=u.cache_read_input_tokens or 0,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        cache_write_1h_tokens=w1h,
        at=rec["window_start"],
    ).cost_nanousd
    as_5m = price(
        "anthropic",
        MODEL,
        input_tokens=total_in,
        output_tokens=u.output_tokens,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        at=rec["window_start"],
    ).cost_nanousd
    assert expect is not None and as_5m is not None
    assert rec["cost_nanousd"] == expect == call["cost_nanousd"]
    assert expect > as_5m  # 2x input against 1.25x: the 5-minute rate under-priced it
    assert rec["cache_creation_input_tokens"] == u.cache_creation_input_tokens
