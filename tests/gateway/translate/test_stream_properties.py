"""Properties: a translated stream accumulates to the translated whole response.

For generated answers (text and tool calls in any order, any stop reason and
usage), the upstream stream is built the way the provider sends it (text and
tool arguments cut into random pieces), translated, and accumulated with the
*client's own SDK*; the result must equal the non-streaming translation.
"""

import json
from typing import Any

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
    anthropic_to_openai_response,
    openai_to_anthropic_response,
)
from metis.gateway.translate._check import dumps_str
from metis.gateway.translate.sse import SSEDecoder, encode_data, encode_event

ident = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
args = st.dictionaries(ident, st.integers() | st.text(max_size=6) | st.booleans(), max_size=3)
counts = st.integers(min_value=0, max_value=100_000)


def pieces(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    out, prev = [], 0
    for c in cuts:
        if c < len(text):
            out.append(text[prev:c])
            prev = c
    out.append(text[prev:])
    return [p for p in out if p] or [text]


@st.composite
def anthropic_answers(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    blocks: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            blocks.append({"type": "text", "text": draw(st.text(min_size=1, max_size=30))})
        else:
            blocks.append(
                {"type": "tool_use", "id": f"toolu_{i}", "name": draw(ident), "input": draw(args)}
            )
    usage = {
        "input_tokens": draw(counts),
        "cache_read_input_tokens": draw(counts),
        "cache_creation_input_tokens": draw(counts),
        "output_tokens": draw(counts),
    }
    stop = draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "stop_sequence"]))
    msg = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage,
    }  # fmt: skip
    start_usage = {**usage, "output_tokens": 1}
    events: list[tuple[str, Any]] = [
        ("message_start", {"type": "message_start",
                           "message": {**msg, "content": [], "stop_reason": None,
                                       "usage": start_usage}}),
    ]  # fmt: skip
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(draw, b["text"])]
        else:
            start = {**b, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in pieces(draw, dumps_str(b["input"]))
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": start},
            )
        )
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
                   for d in deltas]  # fmt: skip
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return msg, events


@settings(max_examples=60, deadline=None)
@given(anthropic_answers())
def test_anthropic_stream_to_openai_equals_whole_translation(
    case: tuple[dict[str, Any], list[tuple[str, Any]]],
) -> None:
    msg, events = case
    tr = AnthropicToOpenAIStream(include_usage=True, created=1)
    raw = tr.feed(b"".join(encode_event(n, p) for n, p in events)) + tr.close()
    dec = SSEDecoder()
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for ev in dec.feed(raw):
        if ev.data != "[DONE]":
            state.handle_chunk(ChatCompletionChunk.model_validate(json.loads(ev.data)))
    got = state.current_completion_snapshot.model_dump()
    want = anthropic_to_openai_response(msg, created=1)
    g, w = got["choices"][0], want["choices"][0]
    assert g["finish_reason"] == w["finish_reason"]
    assert (g["message"]["content"] or "") == (w["message"]["content"] or "")
    g_calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
               for c in g["message"]["tool_calls"] or []]  # fmt: skip
    w_calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
               for c in w["message"].get("tool_calls", [])]  # fmt: skip
    assert g_calls == w_calls
    assert got["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
    assert got["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]
    cached = got["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached == want["usage"]["prompt_tokens_details"]["cached_tokens"]


@st.composite
def openai_answers(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    text = draw(st.none() | st.text(min_size=1, max_size=30))
    calls = [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": draw(ident), "arguments": dumps_str(draw(args))}}
        for i in range(draw(st.integers(0, 3)))
    ]  # fmt: skip
    prompt = draw(counts)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": draw(counts),
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
    }
    finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    whole = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage,
    }  # fmt: skip
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}

    def ch(delta: dict[str, Any], fin: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}

    chunks = [ch({"role": "assistant", "content": ""})]
    if text:
        chunks += [ch({"content": p}) for p in pieces(draw, text)]
    for i, c in enumerate(calls):
        parts = pieces(draw, c["function"]["arguments"])
        chunks.append(ch({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                          "function": {"name": c["function"]["name"],
                                                       "arguments": parts[0]}}]}))  # fmt: skip
        chunks += [ch({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                   for p in parts[1:]]  # fmt: skip
    chunks.append(ch({}, finish))
    chunks.append({**base, "choices": [], "usage": usage})
    return whole, chunks


_EVENT = TypeAdapter(RawMessageStreamEvent)


@settings(max_examples=60, deadline=None)
@given(openai_answers())
def test_openai_stream_to_anthropic_equals_whole_translation(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    whole, chunks = case
    tr = OpenAIToAnthropicStream()
    raw = tr.feed(b"".join(encode_data(c) for c in chunks) + b"data: [DONE]\n\n") + tr.close()
    snapshot = None
    bufs: dict[int, bytes] = {}
    for ev in SSEDecoder().feed(raw):
        snapshot = accumulate_event(
            event=_EVENT.validate_python(json.loads(ev.data)),
            current_snapshot=snapshot,
            json_bufs=bufs,
        )
    assert snapshot is not None
    got = snapshot.model_dump(exclude_none=True)
    want = openai_to_anthropic_response(whole)
    assert got["stop_reason"] == want["stop_reason"]
    assert [(b["type"], b.get("text"), b.get("id"), b.get("name"), b.get("input"))
            for b in got["content"]] == [
        (b["type"], b.get("text"), b.get("id"), b.get("name"), b.get("input"))
        for b in want["content"]
    ]  # fmt: skip
    for k in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
        assert got["usage"][k] == want["usage"][k]
