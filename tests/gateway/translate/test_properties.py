"""Properties: request round trips keep the conversation; junk never crashes."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from metis.gateway.translate import (
    TranslationError,
    anthropic_to_openai_request,
    anthropic_to_openai_response,
    openai_to_anthropic_request,
    openai_to_anthropic_response,
)
from metis.gateway.translate._check import dumps_str

text = st.text(min_size=1, max_size=20)
ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10)
args = st.dictionaries(ident, st.integers() | st.text(max_size=5) | st.booleans(), max_size=3)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": draw(text)})
    for turn in range(draw(st.integers(min_value=1, max_value=4))):
        msgs.append({"role": "user", "content": draw(text)})
        if draw(st.booleans()):
            n = draw(st.integers(min_value=1, max_value=3))
            calls = [
                {
                    "id": f"call_{turn}_{i}",
                    "type": "function",
                    "function": {"name": draw(ident), "arguments": dumps_str(draw(args))},
                }
                for i in range(n)
            ]
            content = draw(st.none() | text)
            msgs.append({"role": "assistant", "content": content, "tool_calls": calls})
            for c in calls:
                msgs.append({"role": "tool", "tool_call_id": c["id"], "content": draw(text)})
            msgs.append({"role": "assistant", "content": draw(text)})
        else:
            msgs.append({"role": "assistant", "content": draw(text)})
    msgs.append({"role": "user", "content": draw(text)})
    return {"model": "gpt-4o", "messages": msgs, "max_tokens": draw(st.integers(1, 10_000))}


def _norm(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge each run of tool messages followed by a user turn the way a round trip does."""
    out: list[dict[str, Any]] = []
    for m in messages:
        m = dict(m)
        if m["role"] == "assistant" and m.get("content") is None:
            m["content"] = None if m.get("tool_calls") else ""
        out.append(m)
    return out


@settings(max_examples=80, deadline=None)
@given(conversations())
def test_openai_request_round_trip_keeps_the_conversation(body: dict[str, Any]) -> None:
    there = openai_to_anthropic_request(body, "claude-x")
    back = anthropic_to_openai_request(there, "gpt-4o", max_tokens_field="max_tokens")
    assert back["max_tokens"] == body["max_tokens"]
    assert _norm(back["messages"]) == _norm(body["messages"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "role",
                    "content",
                    "messages",
                    "type",
                    "text",
                    "tool_calls",
                    "function",
                    "name",
                    "arguments",
                    "id",
                    "tool_call_id",
                    "tools",
                    "tool_choice",
                    "max_tokens",
                    "system",
                    "input",
                    "tool_use_id",
                    "image_url",
                    "url",
                    "source",
                    "choices",
                    "message",
                    "usage",
                    "model",
                    "stop",
                    "stream",
                    "parameters",
                    "input_schema",
                ]
            ),
            c,
            max_size=6,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_translators_never_crash_on_junk(junk: Any) -> None:
    for fn in (
        lambda b: openai_to_anthropic_request(b, "m"),
        lambda b: anthropic_to_openai_request(b, "m"),
        anthropic_to_openai_response,
        openai_to_anthropic_response,
    ):
        try:
            out = fn(junk)
        except TranslationError as exc:
            assert exc.message
        else:
            assert isinstance(out, dict)


@st.composite
def anthropic_conversations(draw: st.DrawFn) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(min_value=1, max_value=4))):
        msgs.append({"role": "user", "content": [{"type": "text", "text": draw(text)}]})
        blocks: list[dict[str, Any]] = []
        if draw(st.booleans()):
            blocks.append({"type": "text", "text": draw(text)})
        ids = [f"toolu_{turn}_{i}" for i in range(draw(st.integers(0, 2)))]
        blocks += [{"type": "tool_use", "id": i, "name": draw(ident), "input": draw(args)}
                   for i in ids]  # fmt: skip
        if not blocks:
            blocks.append({"type": "text", "text": draw(text)})
        msgs.append({"role": "assistant", "content": blocks})
        if ids:
            results = [{"type": "tool_result", "tool_use_id": i, "content": draw(text)}
                       for i in ids]  # fmt: skip
            follow = [{"type": "text", "text": draw(text)}] if draw(st.booleans()) else []
            msgs.append({"role": "user", "content": results + follow})
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": draw(text)}]})
    msgs.append({"role": "user", "content": [{"type": "text", "text": draw(text)}]})
    body: dict[str, Any] = {"model": "claude-x", "messages": msgs, "max_tokens": 100}
    if draw(st.booleans()):
        body["system"] = draw(text)
    return body


@settings(max_examples=80, deadline=None)
@given(anthropic_conversations())
def test_anthropic_request_round_trip_keeps_the_conversation(body: dict[str, Any]) -> None:
    there = anthropic_to_openai_request(body, "gpt-4o")
    back = openai_to_anthropic_request(there, "claude-x")
    assert back["max_tokens"] == body["max_tokens"]
    assert back.get("system") == body.get("system")
    assert back["messages"] == body["messages"]
