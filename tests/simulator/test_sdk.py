"""The official openai/anthropic SDKs complete calls against the simulator and read usage."""

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.plugins.simulator import Simulator

CLAUDE = "claude-haiku-4-5-20251001"  # not in the SDK's DEPRECATED_MODELS (warnings are errors)
LONG = "word " * 4000  # ~5000 tokens: above every cache minimum (Claude Haiku 4.5: 4096)


_open: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def oai(sim: Simulator, key: str | None = None) -> openai.OpenAI:
    c = openai.OpenAI(base_url=sim.openai_base_url, api_key=key or sim.openai_key, max_retries=0)
    _open.append(c)
    return c


def ant(sim: Simulator, key: str | None = None) -> anthropic.Anthropic:
    c = anthropic.Anthropic(
        base_url=sim.anthropic_base_url, api_key=key or sim.anthropic_key, max_retries=0
    )
    _open.append(c)
    return c


def test_openai_chat_non_stream_and_stream_agree(simulator: Simulator) -> None:
    c = oai(simulator)
    msgs: Any = [{"role": "user", "content": "hello there"}]
    r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    assert u is not None and u.prompt_tokens > 0 and u.completion_tokens >= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens == 0
    assert len((r.choices[0].message.content or "").split()) == u.completion_tokens

    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini", messages=msgs, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(ch.usage is None for ch in chunks[:-1])
    assert chunks[-1].usage.model_dump() == u.model_dump()
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"

    truth = simulator.ground_truth()
    assert truth["total"]["requests"] == 2
    assert truth["total"]["input_tokens"] == 2 * u.prompt_tokens
    assert truth["total"]["output_tokens"] == 2 * u.completion_tokens
    assert truth["rows"][0]["api_key_id"] == simulator.openai_key_id(simulator.openai_key)


def test_openai_stream_without_include_usage_has_no_usage_chunk(simulator: Simulator) -> None:
    chunks = list(
        oai(simulator).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(ch.usage is None for ch in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert simulator.ground_truth()["total"]["requests"] == 1  # billed all the same


def test_openai_cache_and_reasoning_and_max_tokens(simulator: Simulator) -> None:
    c = oai(simulator)
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}])
    u = r.usage
    assert u is not None and u.prompt_tokens >= 1024
    assert u.prompt_tokens_details is not None
    assert u.prompt_tokens_details.cached_tokens == (u.prompt_tokens // 2) // 128 * 128 > 0
    r = c.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "q"}])
    assert r.usage is not None and r.usage.completion_tokens_details is not None
    reasoning = r.usage.completion_tokens_details.reasoning_tokens or 0
    assert 0 < reasoning < r.usage.completion_tokens
    r = c.chat.completions.create(
        model="gpt-4o-mini", max_completion_tokens=3, messages=[{"role": "user", "content": "q"}]
    )
    assert r.choices[0].finish_reason == "length" and r.usage is not None
    assert r.usage.completion_tokens == 3


def test_openai_tool_call_round_trip(simulator: Simulator) -> None:
    c = oai(simulator)
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                    "required": ["city", "unit"],
                },
            },
        }
    ]
    msgs: Any = [{"role": "user", "content": "Please use tool get_weather for Paris"}]
    r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=tools)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city":"sim","unit":"c"}'  # type: ignore[union-attr]
    chunks = list(
        c.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=tools, stream=True)
    )
    args = "".join(
        ch.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index,union-attr]
        for ch in chunks
        if ch.choices and ch.choices[0].delta.tool_calls
    )
    assert args == '{"city":"sim","unit":"c"}'
    msgs += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=tools)
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content
    # no trigger phrase, no forcing -> plain text; tool_choice=required forces
    plain: Any = [{"role": "user", "content": "hi"}]
    assert (
        c.chat.completions.create(model="gpt-4o-mini", messages=plain, tools=tools)
        .choices[0]
        .finish_reason
        == "stop"
    )
    assert (
        c.chat.completions.create(
            model="gpt-4o-mini", messages=plain, tools=tools, tool_choice="required"
        )
        .choices[0]
        .finish_reason
        == "tool_calls"
    )


def test_openai_embeddings_float_and_base64(simulator: Simulator) -> None:
    c = oai(simulator)
    e = c.embeddings.create(model="text-embedding-3-small", input=["abcd", "abcdefgh"])
    assert [d.index for d in e.data] == [0, 1] and len(e.data[0].embedding) == 1536
    assert e.usage.prompt_tokens == 3 == e.usage.total_tokens
    f = c.embeddings.create(
        model="text-embedding-3-small", input="abcd", dimensions=8, encoding_format="float"
    )
    assert len(f.data[0].embedding) == 8
    models = [m.id for m in c.models.list()]
    assert "gpt-4o-mini" in models and "text-embedding-3-small" in models


def test_openai_errors(simulator: Simulator) -> None:
    with pytest.raises(openai.AuthenticationError) as ei:
        oai(simulator, "not-a-key").models.list()
    assert ei.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        oai(simulator, simulator.openai_admin_key).models.list()
    with pytest.raises(openai.NotFoundError) as nf:
        oai(simulator).chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        oai(simulator).chat.completions.create(model="gpt-4o-mini", messages=[])
    assert simulator.ground_truth()["total"]["requests"] == 0


def test_anthropic_messages_non_stream_and_stream(simulator: Simulator) -> None:
    c = ant(simulator)
    m = c.messages.create(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "hello"}]
    )
    assert m.type == "message" and m.id.startswith("msg_") and m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens >= 8
    assert m.usage.cache_read_input_tokens == 0 and m.usage.cache_creation_input_tokens == 0
    with c.messages.stream(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": "hello"}]
    ) as s:
        kinds = [ev.type for ev in s]
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.usage.output_tokens == m.usage.output_tokens
    assert final.usage.input_tokens == m.usage.input_tokens
    assert final.content[0].text == m.content[0].text  # type: ignore[union-attr]
    m3 = c.messages.create(
        model=CLAUDE, max_tokens=2, messages=[{"role": "user", "content": "hello"}]
    )
    assert m3.stop_reason == "max_tokens" and m3.usage.output_tokens == 2
    assert simulator.ground_truth()["providers"]["anthropic"]["requests"] == 3


def test_anthropic_cache_write_then_read(simulator: Simulator) -> None:
    c = ant(simulator)
    system: Any = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    msgs: Any = [{"role": "user", "content": "question"}]
    first = c.messages.create(model=CLAUDE, max_tokens=50, system=system, messages=msgs)
    second = c.messages.create(model=CLAUDE, max_tokens=50, system=system, messages=msgs)
    w = first.usage.cache_creation_input_tokens or 0
    assert w >= 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == w
    assert second.usage.cache_read_input_tokens == w
    assert second.usage.cache_creation_input_tokens == 0
    # Anthropic input_tokens excludes cache reads/writes
    assert first.usage.input_tokens == second.usage.input_tokens < w
    total_in = first.usage.input_tokens + w
    truth = simulator.ground_truth()["providers"]["anthropic"]
    assert truth["input_tokens"] == 2 * total_in  # canonical: includes cache tokens
    assert truth["cached_input_tokens"] == w and truth["cache_creation_input_tokens"] == w
    # another key (workspace) does not share the cache
    other = ant(simulator, simulator.anthropic_key_2).messages.create(
        model=CLAUDE, max_tokens=50, system=system, messages=msgs
    )
    assert other.usage.cache_read_input_tokens == 0


def test_anthropic_tool_use_round_trip(simulator: Simulator) -> None:
    c = ant(simulator)
    tools: Any = [
        {
            "name": "lookup",
            "description": "x",
            "input_schema": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        }
    ]
    msgs: Any = [{"role": "user", "content": "use tool lookup please"}]
    m = c.messages.create(model=CLAUDE, max_tokens=100, tools=tools, messages=msgs)
    assert m.stop_reason == "tool_use"
    block = m.content[0]
    assert block.type == "tool_use" and block.name == "lookup" and block.input == {"q": "sim"}
    with c.messages.stream(model=CLAUDE, max_tokens=100, tools=tools, messages=msgs) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"q": "sim"}
    msgs += [
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "42"}],
        },
    ]
    m2 = c.messages.create(model=CLAUDE, max_tokens=100, tools=tools, messages=msgs)
    assert m2.stop_reason == "end_turn" and m2.content[0].type == "text"
    forced = c.messages.create(
        model=CLAUDE,
        max_tokens=100,
        tools=tools,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert forced.stop_reason == "tool_use"


def test_anthropic_errors(simulator: Simulator) -> None:
    with pytest.raises(anthropic.AuthenticationError) as ei:
        ant(simulator, simulator.openai_key).messages.create(
            model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert ei.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    with pytest.raises(anthropic.AuthenticationError):
        ant(simulator, simulator.anthropic_admin_key).models.list()
    with pytest.raises(anthropic.NotFoundError):
        ant(simulator).messages.create(
            model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    models = [m.id for m in ant(simulator).models.list()]
    assert CLAUDE in models


def test_determinism_across_instances(simulator_factory: Any) -> None:
    a, b, c = simulator_factory(seed=1), simulator_factory(seed=1), simulator_factory(seed=2)
    msgs: Any = [{"role": "user", "content": "same question"}]
    outs = [oai(s).chat.completions.create(model="gpt-4o-mini", messages=msgs) for s in (a, b, c)]
    assert outs[0].choices[0].message.content == outs[1].choices[0].message.content
    assert outs[0].usage == outs[1].usage
    # a different seed gives a different answer (64-bit hash: collision practically impossible)
    assert outs[0].choices[0].message.content != outs[2].choices[0].message.content


def test_openai_n_choices(simulator: Simulator) -> None:
    c = oai(simulator)
    msgs: Any = [{"role": "user", "content": "several answers"}]
    one = c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    three = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, n=3)
    assert [ch.index for ch in three.choices] == [0, 1, 2]
    assert three.choices[0].message.content == one.choices[0].message.content
    assert len({ch.message.content for ch in three.choices}) == 3
    words = sum(len((ch.message.content or "").split()) for ch in three.choices)
    assert three.usage is not None and three.usage.completion_tokens == words
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # type: ignore[union-attr]
    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini",
            messages=msgs,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = ["", "", ""]
    for ch in chunks:
        for choice in ch.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [ch.message.content for ch in three.choices]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == three.usage.completion_tokens
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-4o-mini", messages=msgs, n=0)
    assert simulator.ground_truth()["total"]["output_tokens"] == (
        one.usage.completion_tokens + 2 * three.usage.completion_tokens  # type: ignore[union-attr]
    )
