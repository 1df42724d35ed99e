"""Streaming translation: event sequences checked by the SDKs' own stream accumulators."""

import contextlib
import json
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from metis.gateway.translate import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    TranslationError,
)
from metis.gateway.translate.sse import SSEDecoder, encode_data, encode_event

ANTHROPIC_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 50,
                    "output_tokens": 1,
                    "cache_read_input_tokens": 10,
                    "cache_creation_input_tokens": 2,
                },
            },
        },
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me "},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "check."},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


def anthropic_bytes(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(encode_event(n, p) for n, p in events)


def parse_openai_sse(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    dec = SSEDecoder()
    evs = dec.feed(data) + dec.close()
    done = bool(evs) and evs[-1].data == "[DONE]"
    return [json.loads(e.data) for e in evs if e.data != "[DONE]"], done


def test_anthropic_stream_to_openai_chunks_accumulate_in_the_openai_sdk() -> None:
    tr = AnthropicToOpenAIStream(include_usage=True, created=1)
    out = tr.feed(anthropic_bytes(ANTHROPIC_EVENTS)) + tr.close()
    chunks, done = parse_openai_sse(out)
    assert done
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Let me check."
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_1", "get_weather", '{"city": "Paris"}'),
        ("toolu_2", "get_time", "{}"),
    ]
    assert final.usage is not None
    assert final.usage.prompt_tokens == 62
    assert final.usage.completion_tokens == 30
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 10
    # The last chunk before [DONE] is the usage chunk with empty choices.
    assert chunks[-1]["choices"] == []
    assert tr.usage["output_tokens"] == 30 and tr.usage["input_tokens"] == 50
    assert tr.model == "claude-haiku-4-5" and tr.response_id == "msg_1"


def test_anthropic_stream_without_include_usage_has_no_usage_chunk() -> None:
    tr = AnthropicToOpenAIStream(include_usage=False, created=1)
    chunks, done = parse_openai_sse(tr.feed(anthropic_bytes(ANTHROPIC_EVENTS)))
    assert done
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    # usage is still known to the gateway for accounting
    assert tr.usage["output_tokens"] == 30


def test_anthropic_error_event_becomes_openai_error_frame() -> None:
    tr = AnthropicToOpenAIStream(include_usage=False, created=1)
    events = [
        *ANTHROPIC_EVENTS[:4],
        (
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    ]
    chunks, done = parse_openai_sse(tr.feed(anthropic_bytes(events)) + tr.close())
    assert not done
    assert chunks[-1] == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "code": None, "param": None}
    }


def openai_chunks(*, usage: bool = True) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
    }

    def ch(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [
        ch({"role": "assistant", "content": ""}),
        ch({"content": "Hello"}),
        ch({"content": " there."}),
        ch(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]}),
        ch(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            }
        ),
        ch({}, "tool_calls"),
    ]
    if usage:
        out.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 40,
                    "completion_tokens": 12,
                    "total_tokens": 52,
                    "prompt_tokens_details": {"cached_tokens": 8},
                },
            }
        )
    return out


def openai_bytes(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    return b"".join(encode_data(c) for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


_EVENT = TypeAdapter(RawMessageStreamEvent)


def accumulate_anthropic(data: bytes) -> tuple[Any, list[str]]:
    dec = SSEDecoder()
    snapshot = None
    bufs: dict[int, bytes] = {}
    names = []
    for ev in dec.feed(data) + dec.close():
        payload = json.loads(ev.data)
        assert ev.event == payload["type"]
        names.append(ev.event)
        if ev.event == "error":
            continue
        snapshot = accumulate_event(
            event=_EVENT.validate_python(payload), current_snapshot=snapshot, json_bufs=bufs
        )
    return snapshot, names


def test_openai_stream_to_anthropic_events_accumulate_in_the_anthropic_sdk() -> None:
    tr = OpenAIToAnthropicStream()
    out = tr.feed(openai_bytes(openai_chunks())) + tr.close()
    msg, names = accumulate_anthropic(out)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    assert msg.id == "chatcmpl-1" and msg.model == "gpt-4o-mini"
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use", "tool_use"]
    assert msg.content[0].text == "Hello there."
    assert (msg.content[1].id, msg.content[1].name, msg.content[1].input) == (
        "call_1",
        "get_weather",
        {"city": "Rome"},
    )
    assert msg.content[2].input == {}
    assert msg.usage.input_tokens == 32
    assert msg.usage.cache_read_input_tokens == 8
    assert msg.usage.output_tokens == 12
    assert tr.usage["prompt_tokens"] == 40


def test_openai_stream_missing_done_still_closes_after_finish_reason() -> None:
    tr = OpenAIToAnthropicStream()
    out = tr.feed(openai_bytes(openai_chunks(), done=False)) + tr.close()
    _, names = accumulate_anthropic(out)
    assert names[-1] == "message_stop"


def test_openai_stream_truncated_before_finish_is_not_completed() -> None:
    tr = OpenAIToAnthropicStream()
    out = tr.feed(openai_bytes(openai_chunks()[:3], done=False)) + tr.close()
    _, names = accumulate_anthropic(out)
    assert "message_stop" not in names
    assert not tr.done


def test_openai_error_chunk_becomes_anthropic_error_event() -> None:
    tr = OpenAIToAnthropicStream()
    out = tr.feed(openai_bytes([*openai_chunks()[:2], {"error": {"message": "bad"}}], False))
    _, names = accumulate_anthropic(out)
    assert names[-1] == "error"


def test_malformed_stream_data_is_a_translation_error() -> None:
    with pytest.raises(TranslationError):
        OpenAIToAnthropicStream().feed(b"data: {nope\n\n")
    with pytest.raises(TranslationError):
        AnthropicToOpenAIStream(include_usage=True).feed(b"event: x\ndata: [1,2\n\n")
    with pytest.raises(TranslationError):
        AnthropicToOpenAIStream(include_usage=True).feed(b"data: 5\n\n")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), max_size=30))
def test_any_byte_split_gives_the_same_output(cuts: list[int]) -> None:
    """Upstream bytes may arrive cut anywhere (even mid UTF-8 / mid CRLF)."""
    a_src = anthropic_bytes(ANTHROPIC_EVENTS).replace(b"\n", b"\r\n")
    o_src = openai_bytes(openai_chunks())
    for src, make in (
        (a_src, lambda: AnthropicToOpenAIStream(include_usage=True, created=1)),
        (o_src, OpenAIToAnthropicStream),
    ):
        whole = make()
        expected = whole.feed(src) + whole.close()
        split = make()
        got, pos = b"", 0
        for c in cuts:
            got += split.feed(src[pos : pos + c])
            pos += c
        got += split.feed(src[pos:]) + split.close()
        assert got == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "index",
                    "delta",
                    "message",
                    "usage",
                    "choices",
                    "content",
                    "tool_calls",
                    "id",
                    "function",
                    "text",
                    "partial_json",
                    "content_block",
                    "finish_reason",
                    "error",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=8))
def test_stream_translators_never_crash_on_junk(payloads: list[Any]) -> None:
    a = AnthropicToOpenAIStream(include_usage=True, created=1)
    o = OpenAIToAnthropicStream()
    for p in payloads:
        raw = msgspec.json.encode(p)
        for tr in (a, o):
            with contextlib.suppress(TranslationError):
                tr.feed(b"event: content_block_delta\ndata: " + raw + b"\n\n")
    a.close()
    o.close()
