"""Non-streaming responses and usage mapping; outputs validate against the SDKs' models."""

from typing import Any

import anthropic.types
import openai.types.chat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metis.gateway.translate import (
    TranslationError,
    anthropic_to_openai_response,
    anthropic_usage_to_openai,
    openai_to_anthropic_response,
    openai_usage_to_anthropic,
)

ANTHROPIC_MSG = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 5,
    },
}

OPENAI_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hi.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 135,
        "completion_tokens": 20,
        "total_tokens": 155,
        "prompt_tokens_details": {"cached_tokens": 30},
    },
}


def test_anthropic_message_to_openai_completion() -> None:
    out = anthropic_to_openai_response(ANTHROPIC_MSG, created=1)
    parsed = openai.types.chat.ChatCompletion.model_validate(out)
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_1"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city":"Paris"}'  # type: ignore[union-attr]
    assert parsed.model == "claude-haiku-4-5"
    assert parsed.id == "msg_01"
    # prompt_tokens includes cache reads and writes; cached_tokens is the reads.
    assert parsed.usage is not None
    assert parsed.usage.prompt_tokens == 135
    assert parsed.usage.completion_tokens == 20
    assert parsed.usage.total_tokens == 155
    assert parsed.usage.prompt_tokens_details is not None
    assert parsed.usage.prompt_tokens_details.cached_tokens == 30


def test_openai_completion_to_anthropic_message() -> None:
    out = openai_to_anthropic_response(OPENAI_COMPLETION)
    msg = anthropic.types.Message.model_validate(out)
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hi."
    assert msg.content[1].type == "tool_use"
    assert msg.content[1].input == {"a": 1}
    # Anthropic input_tokens excludes cache reads.
    assert msg.usage.input_tokens == 105
    assert msg.usage.cache_read_input_tokens == 30
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg.usage.output_tokens == 20


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop: str | None, finish: str) -> None:
    msg = {**ANTHROPIC_MSG, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert anthropic_to_openai_response(msg)["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
    ],
)
def test_finish_reason_mapping(finish: str, stop: str) -> None:
    resp: dict[str, Any] = {**OPENAI_COMPLETION}
    resp["choices"] = [{**OPENAI_COMPLETION["choices"][0], "finish_reason": finish}]  # type: ignore[index]
    assert openai_to_anthropic_response(resp)["stop_reason"] == stop


def test_text_only_and_empty_answers() -> None:
    msg = {**ANTHROPIC_MSG, "content": [], "stop_reason": "end_turn"}
    out = anthropic_to_openai_response(msg)
    assert out["choices"][0]["message"]["content"] == ""
    assert "tool_calls" not in out["choices"][0]["message"]
    resp = {
        **OPENAI_COMPLETION,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}
        ],
    }
    assert openai_to_anthropic_response(resp)["content"] == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"choices": []},
        {"choices": "x"},
        {"id": 1, "choices": [{"message": {}}]},
        {"id": "x", "model": "m", "choices": [{"message": {"tool_calls": [{"function": {}}]}}]},
    ],
)
def test_malformed_openai_upstream_body_is_a_translation_error(body: Any) -> None:
    with pytest.raises(TranslationError):
        openai_to_anthropic_response(body)


@pytest.mark.parametrize(
    "body", [None, {"content": "x"}, {"id": "m", "model": "m", "content": [{"type": "text"}]}]
)
def test_malformed_anthropic_upstream_body_is_a_translation_error(body: Any) -> None:
    with pytest.raises(TranslationError):
        anthropic_to_openai_response(body)


counts = st.integers(min_value=0, max_value=10**9)


@settings(deadline=None)
@given(counts, counts, counts, counts)
def test_usage_anthropic_to_openai_and_back_preserves_tokens(
    inp: int, out: int, read: int, write: int
) -> None:
    a = {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }
    o = anthropic_usage_to_openai(a)
    assert o["prompt_tokens"] == inp + read + write
    assert o["prompt_tokens_details"]["cached_tokens"] == read
    assert o["total_tokens"] == inp + read + write + out
    back = openai_usage_to_anthropic(o)
    # OpenAI cannot say which input tokens were cache writes: they fold into input_tokens.
    assert back["input_tokens"] == inp + write
    assert back["cache_read_input_tokens"] == read
    assert back["output_tokens"] == out


@settings(deadline=None)
@given(counts, counts, counts)
def test_usage_openai_to_anthropic_and_back_is_exact(prompt: int, completion: int, c: int) -> None:
    cached = min(c, prompt)
    o = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    a = openai_usage_to_anthropic(o)
    assert a["input_tokens"] + a["cache_read_input_tokens"] == prompt
    back = anthropic_usage_to_openai(a)
    assert back["prompt_tokens"] == prompt
    assert back["completion_tokens"] == completion
    assert back["prompt_tokens_details"]["cached_tokens"] == cached


@settings(deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=10,
    )
)
def test_usage_mapping_never_crashes(junk: Any) -> None:
    for u in (
        junk,
        {"prompt_tokens": junk, "prompt_tokens_details": junk},
        {"input_tokens": junk, "cache_read_input_tokens": junk},
    ):
        assert anthropic_usage_to_openai(u)["prompt_tokens"] >= 0
        assert openai_usage_to_anthropic(u)["input_tokens"] >= 0
