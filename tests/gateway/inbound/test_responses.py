"""``POST /v1/responses`` through the full server to the simulator, with the official SDK.

Usage the SDK sees == the usage record == what the simulator served (and
billed); caps reserve on ``max_output_tokens``; a client that leaves mid-stream
still leaves its record; routing rules rewrite, fall back within OpenAI, and
skip (with the reason) a target of the other shape.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from metis.db.tables import events, usage_records
from metis.pricing import price
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


def records(g: GatewayServer) -> dict[str, dict[str, Any]]:
    """Usage records by correlation id (the upstream response id)."""
    g.flush()
    with g.engine.connect() as c:
        return {r["correlation_id"]: dict(r) for r in c.execute(select(usage_records)).mappings()}


def route_events(g: GatewayServer) -> list[dict[str, Any]]:
    g.flush()
    with g.engine.connect() as c:
        q = select(events.c.payload).where(events.c.type == "route.decided").order_by(events.c.ts)
        return [r[0] for r in c.execute(q)]


def assert_record_is(rec: dict[str, Any], resp: Any, sim_call: dict[str, Any]) -> None:
    """The record holds exactly the usage the SDK saw and the simulator billed, priced."""
    u = resp.usage
    assert rec["input_tokens"] == u.input_tokens == sim_call["input_tokens"]
    assert rec["output_tokens"] == u.output_tokens == sim_call["output_tokens"]
    assert rec["cached_input_tokens"] == u.input_tokens_details.cached_tokens
    assert rec["cached_input_tokens"] == sim_call["cached_input_tokens"]
    assert rec["reasoning_tokens"] == u.output_tokens_details.reasoning_tokens
    assert rec["reasoning_tokens"] == sim_call["reasoning_tokens"]
    assert rec["model_raw"] == resp.model
    assert rec["inbound_shape"] == "openai" and rec["provider"] == "openai"
    expect = price(
        "openai",
        resp.model,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cached_input_tokens=u.input_tokens_details.cached_tokens,
        reasoning_tokens=u.output_tokens_details.reasoning_tokens,
        at=rec["window_start"],
    )
    assert rec["cost_nanousd"] == expect.cost_nanousd == sim_call["cost_nanousd"] > 0
    assert rec["cost_source"] == "computed"


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


def sim_calls(simulator: Simulator) -> dict[str, dict[str, Any]]:
    return {c["response_id"]: c for c in simulator.calls()}


def test_plain_streamed_tool_and_reasoning_usage_equals_record(
    g: GatewayServer, simulator: Simulator
) -> None:
    key_id, secret = g.issue_key(user="alice", team="eng")
    client = g.openai(secret)
    plain = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="hello gateway", instructions="be brief"
    )
    rid = plain.headers["x-metis-request-id"]
    r1 = plain.parse()
    with client.responses.stream(model="gpt-4o-mini", input="stream through metis") as st:
        text = "".join(e.delta for e in st if e.type == "response.output_text.delta")
        r2 = st.get_final_response()
    assert text == r2.output_text
    r3 = client.responses.create(model="gpt-4o-mini", input="please use tool", tools=TOOLS)
    assert r3.output[0].type == "function_call"
    r4 = client.responses.create(
        model="gpt-4o-mini",
        previous_response_id=r3.id,
        input=[{"type": "function_call_output", "call_id": r3.output[0].call_id, "output": "9C"}],
        tools=TOOLS,
    )
    r5 = client.responses.create(
        model="o4-mini", input="reason about it " * 300, include=["reasoning.encrypted_content"]
    )
    assert r5.usage is not None and r5.usage.output_tokens_details.reasoning_tokens > 0
    assert r5.usage.input_tokens_details.cached_tokens > 0
    recs = records(g)
    calls = sim_calls(simulator)
    assert set(recs) == set(calls) == {r.id for r in (r1, r2, r3, r4, r5)}
    for r in (r1, r2, r3, r4, r5):
        assert_record_is(recs[r.id], r, calls[r.id])
        assert recs[r.id]["gateway_key_id"] == key_id
        assert recs[r.id]["user_id"] and recs[r.id]["team_id"]
    assert recs[r1.id]["request_id"] == rid and recs[r1.id]["status"] == "ok"
    total = sum(r["cost_nanousd"] for r in recs.values())
    assert total == simulator.ground_truth()["total"]["cost_nanousd"]
    assert [e["candidates"] for e in route_events(g)] == [["openai:gpt-4o-mini"]] * 4 + [
        ["openai:o4-mini"]
    ]


def test_client_gone_mid_stream_still_records_usage(gateway: GatewayServer) -> None:
    """The stub streams 50 deltas 20 ms apart for a "SLOW" prompt; the client leaves early."""
    from tests.gateway.stub_upstream import Stats

    finished = Stats.stream_finished
    _, secret = gateway.issue_key()
    body = b'{"model":"gpt-4o-mini","input":"SLOW stream please","stream":true}'
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + secret.encode() + b"\r\n"
            b"content-length: %d\r\n\r\n" % len(body) + body
        )
        got = b""
        while b"response.output_text.delta" not in got:
            got += s.recv(65536)
    # The client is gone; the gateway reads the stream to its end and records its usage.
    deadline = time.monotonic() + 20
    recs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not recs:
        time.sleep(0.2)
        recs = records(gateway)
    [rec] = recs.values()
    assert Stats.stream_finished == finished + 1
    assert rec["status"] == "client_disconnected"
    assert (rec["input_tokens"], rec["output_tokens"]) == (len(body) // 10, 50)
    assert rec["correlation_id"].startswith("resp_") and rec["cost_nanousd"] > 0


def test_cap_reserves_on_max_output_tokens_and_refuses_uncappable_background(
    g: GatewayServer, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metis.gateway import caps
    from metis.gateway.worst_case import WorstCase

    seen: list[int] = []
    reserve = g.gw.counters.reserve

    async def spy(scopes: Any, est: int, **kw: Any) -> Any:  # observes, then reserves as usual
        seen.append(est)
        return await reserve(scopes, est, **kw)

    monkeypatch.setattr(g.gw.counters, "reserve", spy)
    _, secret = g.issue_key(daily_cap_usd="5")
    client = g.openai(secret)
    for max_out in (100_000, 300):
        raw = client.responses.with_raw_response.create(
            model="o4-mini", input="hi", max_output_tokens=max_out
        )
        assert raw.parse().status == "completed"
        body_len = len(raw.http_request.content)
        wc = WorstCase(output_budget=max_out, budget_per_round=False)
        assert seen[-1] == caps.estimate("openai", "o4-mini", body_len, wc)
    assert seen[0] > seen[1] * 50  # the output budget is the reservation's bulk
    raw = client.responses.with_raw_response.create(model="o4-mini", input="no budget given")
    # No budget (Codex never sends one): the model's documented maximum output, 100,000.
    wc = WorstCase(output_budget=100_000, budget_per_round=False)
    assert seen[-1] == caps.estimate("openai", "o4-mini", len(raw.http_request.content), wc)
    with pytest.raises(openai.PermissionDeniedError, match="background"):
        client.responses.create(model="o4-mini", input="hi", background=True)
    assert len(simulator.calls()) == 3
    # Without a hard cap a background response is forwarded as sent.
    _, free = g.issue_key("free")
    bg = g.openai(free).responses.create(model="o4-mini", input="hi", background=True)
    assert bg.status == "queued" and len(simulator.calls()) == 4


RULES = """\
schema_version: 1
rules:
  - name: alias
    when: {model: smart}
    use: openai:gpt-4o
    reason: alias smart
  - name: to-claude
    when: {model: gpt-4.1}
    use: anthropic:claude-haiku-4-5
    fallbacks: [openai:gpt-4.1-mini]
    reason: try claude first
fallbacks:
  o3-mini: [openai:gpt-4o-mini]
"""


@pytest.fixture
def routed(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    metis_env: dict[str, str],
) -> Iterator[GatewayServer]:
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(RULES)
    yield gateway_factory(simulator.url)


def test_routing_rewrites_falls_back_and_skips_other_shapes(
    routed: GatewayServer, simulator: Simulator
) -> None:
    _, secret = routed.issue_key()
    client = routed.openai(secret)
    a = client.responses.create(model="smart", input="hi")
    assert a.model.startswith("gpt-4o-2")  # rewritten to gpt-4o, answered as its snapshot
    simulator.set_fault("/v1/responses", "503", count=1)
    b = client.responses.create(model="o3-mini", input="hi")
    assert b.model.startswith("gpt-4o-mini")
    c = client.responses.create(model="gpt-4.1", input="hi")
    assert c.model.startswith("gpt-4.1-mini")  # claude skipped, the OpenAI fallback answered
    ev = route_events(routed)
    assert [e["winner_index"] for e in ev] == [0, 1, 1]
    skipped = ev[2]["attempts"][0]
    assert skipped["target"] == "anthropic:claude-haiku-4-5"
    assert skipped["status"] == "unsupported_target"
    assert "responses" in skipped["reason"] and "no translation" in skipped["reason"]
    assert ev[1]["attempts"][0]["status"] == "upstream_error"
    recs = records(routed)
    assert set(recs) == {a.id, b.id, c.id}  # one record per request: the answer's
    for r in (a, b, c):
        assert recs[r.id]["model_raw"] == r.model and recs[r.id]["provider"] == "openai"
    assert not [x for x in simulator.calls() if x["model"].startswith("claude")]
