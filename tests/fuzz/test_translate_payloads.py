"""Fuzzing the non-streaming translation parsers: client requests and upstream answers.

Both directions of request and response translation read JSON someone else
wrote. From valid payloads mutated with hostile values (and from garbage),
each translator returns a result or raises `TranslationError` (a 400 for a
client request, a 502 for an upstream answer) with a one-line message; the
upstream error re-shaper never raises at all.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis.gateway.translate import (
    TranslationError,
    anthropic_to_openai_request,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
    openai_to_anthropic_response,
)
from metis.gateway.translate.errors_shape import reshape_error, upstream_message
from tests.conftest import BACKEND
from tests.fuzz.hostile import hostile_values, mutated
from tests.fuzz.settings import fuzz_settings

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="database-free; runs on SQLite")

OPENAI_REQUEST = {
    "model": "gpt-4o",
    "max_tokens": 100,
    "temperature": 0.5,
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "stream": False,
}  # fmt: skip
ANTHROPIC_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "system": "be brief",
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
}  # fmt: skip
ANTHROPIC_RESPONSE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2},
}  # fmt: skip
OPENAI_RESPONSE = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Hi", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}  # fmt: skip


def translated_or_refused(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except TranslationError as exc:
        assert exc.message and "\n" not in exc.message
        return None


def payloads(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.one_of(mutated(valid), hostile_values.map(copy.deepcopy))


def test_the_valid_payloads_translate() -> None:
    assert openai_to_anthropic_request(copy.deepcopy(OPENAI_REQUEST), "claude-sonnet-4-5")
    assert anthropic_to_openai_request(copy.deepcopy(ANTHROPIC_REQUEST), "gpt-4o")
    assert anthropic_to_openai_response(copy.deepcopy(ANTHROPIC_RESPONSE), created=0)
    assert openai_to_anthropic_response(copy.deepcopy(OPENAI_RESPONSE))


@given(payloads(OPENAI_REQUEST), payloads(ANTHROPIC_REQUEST))
@fuzz_settings(300)
def test_client_requests(oa: Any, an: Any) -> None:
    translated_or_refused(openai_to_anthropic_request, oa, "claude-sonnet-4-5")
    translated_or_refused(anthropic_to_openai_request, an, "gpt-4o")


@given(payloads(ANTHROPIC_RESPONSE), payloads(OPENAI_RESPONSE))
@fuzz_settings(300)
def test_upstream_answers(an: Any, oa: Any) -> None:
    translated_or_refused(anthropic_to_openai_response, an, created=0)
    translated_or_refused(openai_to_anthropic_response, oa)


@given(st.binary(max_size=300), st.integers(100, 599), st.sampled_from(["openai", "anthropic"]))
@fuzz_settings(200)
def test_upstream_error_bodies(body: bytes, status: int, shape: str) -> None:
    assert isinstance(upstream_message(body), str)
    assert isinstance(reshape_error(body, status, shape, "x"), bytes)
