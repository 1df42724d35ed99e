"""The simulator's Responses API against the official openai SDK: shapes, usage, ground truth."""

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from metis.simulator.openai_responses import MIN_OUTPUT_TOKENS
from tests.plugins.simulator import Simulator

LONG = "word " * 1200  # ~1500 tokens: above the cache minimum

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


@pytest.fixture
def client(simulator: Simulator) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(
        base_url=simulator.openai_base_url, api_key=simulator.openai_key, max_retries=0
    )
    yield c
    c.close()


def _call(simulator: Simulator, response_id: str) -> dict[str, Any]:
    [c] = [c for c in simulator.calls() if c["response_id"] == response_id]
    return c


def test_plain_response_object_and_exact_usage(simulator: Simulator, client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input="hello there", instructions="be brief")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4o-mini-2024-07-18"  # the dated snapshot, as the API answers
    [msg] = r.output
    assert msg.type == "message" and msg.role == "assistant"
    u = r.usage
    assert u is not None
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens == 0
    assert u.output_tokens_details.reasoning_tokens == 0
    assert len(r.output_text.split()) == u.output_tokens  # one word per visible token
    # 3 + instructions (4 + 2) + one user message (4 + 3 tokens of "hello there")
    assert u.input_tokens == 3 + 4 + 2 + 4 + 3
    call = _call(simulator, r.id)
    assert (call["input_tokens"], call["output_tokens"], call["kind"]) == (
        u.input_tokens,
        u.output_tokens,
        "completions",
    )
    assert simulator.ground_truth()["total"]["requests"] == 1


def test_stream_event_sequence_and_usage_equal_plain(
    simulator: Simulator, client: openai.OpenAI
) -> None:
    plain = client.responses.create(model="gpt-4o-mini", input="stream me")
    events = list(client.responses.create(model="gpt-4o-mini", input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.usage is None  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == final.output_text == plain.output_text  # same conversation, same answer
    assert final.usage == plain.usage
    assert _call(simulator, final.id)["output_tokens"] == final.usage.output_tokens


def test_function_tool_call_and_previous_response_context(
    simulator: Simulator, client: openai.OpenAI
) -> None:
    r1 = client.responses.create(
        model="gpt-4o-mini", input="please use tool get_weather", tools=TOOLS
    )
    [fc] = r1.output
    assert fc.type == "function_call" and fc.name == "get_weather"
    assert fc.arguments == '{"city":"sim","unit":"c"}'  # validates against the strict schema
    assert r1.usage is not None
    streamed = list(
        client.responses.create(
            model="gpt-4o-mini", input="please use tool get_weather", tools=TOOLS, stream=True
        )
    )
    args = "".join(
        e.delta
        for e in streamed
        if e.type == "response.function_call_arguments.delta"  # type: ignore[union-attr]
    )
    assert args == fc.arguments
    assert "response.function_call_arguments.done" in [e.type for e in streamed]
    follow = [{"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}]
    r2 = client.responses.create(
        model="gpt-4o-mini", previous_response_id=r1.id, input=follow, tools=TOOLS
    )
    assert r2.output[0].type == "message" and r2.previous_response_id == r1.id
    own = client.responses.create(model="gpt-4o-mini", input=follow, tools=TOOLS, store=False)
    assert r2.usage is not None and own.usage is not None
    # The earlier turn is the context: its input and output count again.
    assert r2.usage.input_tokens == own.usage.input_tokens + r1.usage.total_tokens
    with pytest.raises(openai.BadRequestError, match="not found"):
        client.responses.create(model="gpt-4o-mini", previous_response_id=own.id, input="x")


def test_reasoning_model_items_and_tokens(simulator: Simulator, client: openai.OpenAI) -> None:
    r = client.responses.create(
        model="o4-mini", input="think hard", include=["reasoning.encrypted_content"]
    )
    rs, msg = r.output
    assert rs.type == "reasoning" and rs.encrypted_content and msg.type == "message"
    u = r.usage
    assert u is not None
    assert 0 < u.output_tokens_details.reasoning_tokens < u.output_tokens
    visible = u.output_tokens - u.output_tokens_details.reasoning_tokens
    assert len(r.output_text.split()) == visible
    assert _call(simulator, r.id)["reasoning_tokens"] == u.output_tokens_details.reasoning_tokens
    plain = client.responses.create(model="o4-mini", input="think hard")
    assert plain.output[0].encrypted_content is None  # type: ignore[union-attr]


def test_cached_tokens_and_max_output_tokens(simulator: Simulator, client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input=LONG)
    assert r.usage is not None
    p = r.usage.input_tokens
    assert r.usage.input_tokens_details.cached_tokens == (p // 2) // 128 * 128 > 0
    assert (
        _call(simulator, r.id)["cached_input_tokens"] == r.usage.input_tokens_details.cached_tokens
    )
    cut = client.responses.create(
        model="gpt-4o-mini",
        input="hi",
        max_output_tokens=MIN_OUTPUT_TOKENS,
        extra_headers={"x-sim-output-tokens": "40"},
    )
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage is not None and cut.usage.output_tokens == MIN_OUTPUT_TOKENS
    events = list(
        client.responses.create(
            model="gpt-4o-mini",
            input="hi",
            max_output_tokens=MIN_OUTPUT_TOKENS,
            extra_headers={"x-sim-output-tokens": "40"},
            stream=True,
        )
    )
    assert events[-1].type == "response.incomplete"
    with pytest.raises(openai.BadRequestError, match="max_output_tokens"):
        client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=5)


class Step(BaseModel):
    explanation: str
    output: int


class Plan(BaseModel):
    title: str
    steps: list[Step]
    priority: int | None
    kind: str


def test_structured_output_parses(client: openai.OpenAI) -> None:
    r = client.responses.parse(model="gpt-4o-mini", input="plan it", text_format=Plan)
    assert isinstance(r.output_parsed, Plan)
    chat = client.chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "plan it"}], response_format=Plan
    )
    parsed = chat.choices[0].message.parsed
    assert isinstance(parsed, Plan)
    assert chat.usage is not None
    content = chat.choices[0].message.content or ""
    assert chat.usage.completion_tokens == (len(content) + 3) // 4


def test_stored_responses(simulator: Simulator, client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input="keep me")
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.usage == r.usage
    replay = list(client.responses.retrieve(r.id, stream=True))
    assert replay[-1].type == "response.completed"
    items = client.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(r.id)
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    unstored = client.responses.create(model="gpt-4o-mini", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    bg = client.responses.create(model="gpt-4o-mini", input="later", background=True)
    assert bg.status == "queued" and bg.usage is None and bg.output == []
    done = client.responses.retrieve(bg.id)
    assert done.status == "completed" and done.usage is not None
    assert client.responses.cancel(bg.id).status == "completed"  # already finished
    # Billed once each, at creation (retrieving, replaying, deleting cost nothing).
    assert simulator.ground_truth()["total"]["requests"] == 3
    simulator.reset()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(bg.id)


def test_errors_and_other_tool_types(simulator: Simulator, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.responses.create(model="claude-haiku-4-5", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=simulator.openai_base_url, api_key="nope", max_retries=0
        ).responses.create(model="gpt-4o-mini", input="x")
    r = httpx.post(
        simulator.openai_base_url + "/responses",
        json={"model": "gpt-4o-mini", "input": "x", "tools": [{"name": "no type"}]},
        headers={"authorization": f"Bearer {simulator.openai_key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].type"
    # Tools the simulator does not run (Codex sends custom and web search tools) are accepted.
    ok = client.responses.create(
        model="gpt-5",
        input="use tool please",
        tools=[
            {"type": "custom", "name": "apply_patch", "description": "patch"},
            {"type": "web_search"},
            *TOOLS,
        ],
    )
    assert [o.type for o in ok.output] == ["function_call"]


def test_admin_usage_reports_responses_like_chat(
    simulator: Simulator, client: openai.OpenAI
) -> None:
    r = client.responses.create(model="gpt-4o-mini", input=LONG)
    c = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.usage is not None and c.usage is not None
    page = httpx.get(
        simulator.openai_base_url + "/organization/usage/completions",
        params={"start_time": int(r.created_at) // 86400 * 86400, "bucket_width": "1d"},
        headers={"authorization": f"Bearer {simulator.openai_admin_key}"},
    ).json()
    assert "data" in page, page
    results = [x for b in page["data"] for x in b["results"]]
    assert sum(x["num_model_requests"] for x in results) == 2
    assert sum(x["input_tokens"] for x in results) == r.usage.input_tokens + c.usage.prompt_tokens
    assert sum(x["input_cached_tokens"] for x in results) == (
        r.usage.input_tokens_details.cached_tokens
    )
    assert sum(x["output_tokens"] for x in results) == (
        r.usage.output_tokens + c.usage.completion_tokens
    )
    truth = simulator.ground_truth()["total"]
    assert truth["input_tokens"] == r.usage.input_tokens + c.usage.prompt_tokens
