"""Fuzzing the SSE stream parsers: the gateway's usage tap and the translators.

Upstream bytes arrive in arbitrary chunks, so every property is checked with
the stream cut at random points and fed one byte at a time, against random
bytes, truncated streams and well-framed events with hostile JSON inside
(wrong types, negative/huge/fractional counts, NaN, deep nesting, unicode).

- `SSEUsageTap` never raises. Without a chunk to withhold it forwards the
  upstream's bytes unchanged; token counts it captures are integers in
  ``[0, MAX_TOKENS]``; how the stream was cut changes nothing.
- `SSEDecoder` and the two stream translators raise nothing but
  `TranslationError` (the gateway's 502 / stream error), and cutting the
  stream differently yields the same output.
- Each example runs under a deadline: nothing hangs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis.gateway.streaming import MAX_EVENT, SSEUsageTap
from metis.gateway.translate import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from metis.gateway.translate.errors import TranslationError
from metis.gateway.translate.sse import SSEDecoder
from metis.gateway.usage import MAX_TOKENS, Tokens
from tests.conftest import BACKEND
from tests.fuzz.hostile import deep_json, hostile_values, mutated
from tests.fuzz.settings import fuzz_settings

# No Metis database is involved: run once, in the SQLite pass of the suite.
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="database-free; runs on SQLite")

OPENAI_EVENTS = [
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
                  "function": {"name": "f", "arguments": "{\"a\":"}}]}}]},
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
     "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
               "prompt_tokens_details": {"cached_tokens": 4},
               "completion_tokens_details": {"reasoning_tokens": 2}}},
]  # fmt: skip
ANTHROPIC_EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None,
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 3,
                  "cache_creation_input_tokens": 2, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f",
                                               "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"a\":1}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 7}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip


def _json(v: Any) -> bytes:
    """JSON text for hostile payloads too (NaN/Infinity as Python writes them, Decimals as
    numbers, lone surrogates kept escaped, nesting beyond any decoder's limit kept)."""
    return json.dumps(v, default=str, allow_nan=True).encode()


def openai_frames(events: list[Any]) -> bytes:
    return b"".join(b"data: " + _json(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def anthropic_frames(events: list[tuple[Any, Any]]) -> bytes:
    return b"".join(
        b"event: " + str(n).encode("utf-8", "replace") + b"\ndata: " + _json(e) + b"\n\n"
        for n, e in events
    )


def bytewise(data: bytes) -> list[bytes]:
    """One byte per piece: every boundary at once (long streams: 64-byte pieces, since each
    piece re-copies the parser's pending buffer)."""
    step = 1 if len(data) <= 4096 else 64
    return [data[i : i + step] for i in range(0, len(data), step)]


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at up to 12 random points (empty pieces included)."""
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


@st.composite
def openai_streams(draw: st.DrawFn) -> bytes:
    events = [copy.deepcopy(e) for e in OPENAI_EVENTS]
    if draw(st.booleans()):
        events = draw(mutated(events, max_mutations=2))
    data = openai_frames(events if isinstance(events, list) else [events])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # truncated upstream
    if draw(st.booleans()):
        data = data.replace(b"\n", b"\r\n")
    return data


@st.composite
def anthropic_streams(draw: st.DrawFn) -> bytes:
    events = [list(copy.deepcopy(e)) for e in ANTHROPIC_EVENTS]
    if draw(st.booleans()):
        events = draw(mutated(events, max_mutations=2))
    if not isinstance(events, list) or not all(isinstance(e, list) and len(e) == 2 for e in events):
        events = [["message_delta", events]]
    data = anthropic_frames([(n, e) for n, e in events])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


any_stream = st.one_of(
    openai_streams(),
    anthropic_streams(),
    st.binary(max_size=600),
    # nested past the decoders' limit; kept small: the streams are also fed byte by byte
    st.integers(1500, 5000).map(
        lambda n: b'event: message_start\ndata: {"usage": ' + deep_json(n) + b"}\n\n"
    ),
)


def tap_run(shape: str, withhold: bool, pieces: list[bytes]) -> tuple[bytes, Tokens, Any]:
    tap = SSEUsageTap(shape, withhold_usage_chunk=withhold)
    out = b"".join(tap.feed(p) for p in pieces) + tap.flush()
    return out, tap.tokens, (tap.response_id, tap.model)


def check_tokens(t: Tokens) -> None:
    for name in ("input", "output", "cached", "cache_creation", "reasoning"):
        v = getattr(t, name)
        assert type(v) is int and 0 <= v <= 3 * MAX_TOKENS, (name, v)


@given(st.data(), any_stream, st.sampled_from(["openai", "anthropic"]), st.booleans())
@fuzz_settings(300)
def test_usage_tap(data: st.DataObject, stream: bytes, shape: str, withhold: bool) -> None:
    withhold = withhold and shape == "openai"  # only OpenAI streams have a chunk to withhold
    whole = tap_run(shape, withhold, [stream])
    assert whole == tap_run(shape, withhold, data.draw(cuts(stream)))
    assert whole == tap_run(shape, withhold, bytewise(stream))
    out, tokens, _ = whole
    check_tokens(tokens)
    if not withhold or b'"usage"' not in stream:
        assert out.replace(b"\r\n", b"\n") == stream.replace(b"\r\n", b"\n")
    if not withhold:
        assert out == stream  # pass-through is byte-exact


def test_usage_tap_reads_the_valid_streams() -> None:
    """The unmutated streams give their real usage (so the properties test something)."""
    out, t, ids = tap_run("openai", True, [openai_frames(OPENAI_EVENTS)])
    assert (t.input, t.output, t.cached, t.reasoning) == (12, 5, 4, 2) and b'"usage"' not in out
    assert ids == ("chatcmpl-1", "gpt-4o")
    _, t, ids = tap_run("anthropic", False, [anthropic_frames(ANTHROPIC_EVENTS)])
    assert (t.input, t.output, t.cached, t.cache_creation) == (15, 7, 3, 2)
    assert ids == ("msg_1", "claude-sonnet-4-5")


@given(
    st.sampled_from(["prompt_tokens", "completion_tokens"]),
    st.one_of(hostile_values, st.integers(MAX_TOKENS + 1, 2**70), st.integers(max_value=-1)),
)
@fuzz_settings(100)
def test_hostile_usage_counts_read_as_zero(field: str, value: Any) -> None:
    events = copy.deepcopy(OPENAI_EVENTS)
    events[-1]["usage"][field] = value
    _, t, _ = tap_run("openai", True, [openai_frames(events)])
    check_tokens(t)
    got = t.input if field == "prompt_tokens" else t.output
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS
    assert got == (value if ok else 0)


def test_a_stream_without_event_boundaries_does_not_grow_the_buffer() -> None:
    chunk = b"data: " + b"x" * (1024 * 1024)
    for withhold in (False, True):
        tap = SSEUsageTap("openai", withhold_usage_chunk=withhold)
        forwarded = sum(len(tap.feed(chunk)) for _ in range(12))
        assert len(tap._buf) <= MAX_EVENT
        assert forwarded + len(tap.flush()) == 12 * len(chunk)  # nothing lost


def decode_all(pieces: list[bytes]) -> Any:
    dec = SSEDecoder()
    try:
        events = [e for p in pieces for e in dec.feed(p)] + dec.close()
    except TranslationError as exc:
        return ("error", exc.message)
    return events


@given(st.data(), any_stream)
@fuzz_settings(200)
def test_sse_decoder(data: st.DataObject, stream: bytes) -> None:
    whole = decode_all([stream])
    assert whole == decode_all(data.draw(cuts(stream)))
    assert whole == decode_all(bytewise(stream))


def translate_all(make: Any, pieces: list[bytes]) -> Any:
    tr = make()
    out = b""
    try:
        for p in pieces:
            out += tr.feed(p)
        out += tr.close()
    except TranslationError as exc:
        # The gateway ends the stream here; what was produced before depends on where
        # the cut fell, the error itself does not.
        assert exc.message and "\n" not in exc.message
        return ("error", exc.message)
    return out


@given(st.data(), any_stream)
@fuzz_settings(200)
def test_stream_translators(data: st.DataObject, stream: bytes) -> None:
    for make in (
        lambda: AnthropicToOpenAIStream(include_usage=True, created=0),
        OpenAIToAnthropicStream,
    ):
        whole = translate_all(make, [stream])
        assert whole == translate_all(make, data.draw(cuts(stream)))
        assert whole == translate_all(make, bytewise(stream))
