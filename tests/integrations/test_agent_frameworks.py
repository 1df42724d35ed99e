"""Agent frameworks on their default OpenAI path (the Responses API) through ``metis serve``.

The OpenAI Agents SDK (its default `OpenAIProvider`) and pydantic-ai (an
``openai:`` model string) run a tool-using agent against the gateway, which
forwards to the provider simulator. The ledger must equal what the simulator
served, call by call, and the usage each framework reports. Tracing and
instrumentation are off: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator


def ledger_equals_simulator(g: GatewayServer, simulator: Simulator) -> list[dict[str, Any]]:
    g.flush()
    with g.engine.connect() as c:
        recs = {r["correlation_id"]: dict(r) for r in c.execute(select(usage_records)).mappings()}
    calls = {c["response_id"]: c for c in simulator.calls()}
    assert set(recs) == set(calls) and len(calls) >= 2  # a tool turn, then the answer
    for rid, call in calls.items():
        rec = recs[rid]
        assert rid.startswith("resp_")  # the Responses API, not chat completions
        for f in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
            assert rec[f] == call[f], f
        assert rec["cost_nanousd"] == call["cost_nanousd"] > 0
        assert rec["status"] == "ok" and rec["inbound_shape"] == "openai"
    return list(recs.values())


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


def test_openai_agents_sdk_default_provider(
    g: GatewayServer, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    from agents import Agent, RunConfig, Runner, function_tool
    from agents.models.openai_provider import OpenAIProvider
    from openai import AsyncOpenAI

    _, secret = g.issue_key(user="alice", team="eng")
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    agent = Agent(name="weather", instructions="Answer briefly.", tools=[get_weather])

    async def run() -> Any:
        client = AsyncOpenAI(api_key=secret, base_url=g.url + "/v1", max_retries=0)
        try:
            cfg = RunConfig(
                model_provider=OpenAIProvider(openai_client=client),  # use_responses: default
                tracing_disabled=True,
            )
            return await Runner.run(agent, "Please use tool get_weather for Paris.", run_config=cfg)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert calls == ["sim"]  # the simulator's arguments from the tool's schema
    assert result.final_output
    recs = ledger_equals_simulator(g, simulator)
    usage = result.context_wrapper.usage
    assert usage.requests == len(recs)
    assert usage.input_tokens == sum(r["input_tokens"] for r in recs)
    assert usage.output_tokens == sum(r["output_tokens"] for r in recs)
    assert {r["user_id"] for r in recs} != {None}


def test_pydantic_ai_openai_model_string(
    g: GatewayServer, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_ai import Agent

    _, secret = g.issue_key(user="bob")
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", g.url + "/v1")
    agent = Agent("openai:gpt-4o-mini", instructions="Answer briefly.")
    seen: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"It is sunny in {city}."

    async def run() -> Any:
        async with agent:  # closes the provider's HTTP client at the end
            return await agent.run("Please use tool get_weather for Paris.")

    result = asyncio.run(run())
    assert seen == ["sim"] and result.output
    recs = ledger_equals_simulator(g, simulator)
    usage = result.usage
    assert usage.requests == len(recs)
    assert usage.input_tokens == sum(r["input_tokens"] for r in recs)
    assert usage.output_tokens == sum(r["output_tokens"] for r in recs)
