"""AWS Bedrock through the gateway: OpenAI- and Anthropic-shaped calls, signed with SigV4.

The workspace's ``bedrock`` credential (region, access key id, the secret
access key stored encrypted) points at the simulator's Bedrock runtime, which
verifies every signature with botocore's signer. Claude goes through
InvokeModel with an Anthropic body, other models through Converse; an
Anthropic client reaches them natively, an OpenAI client through the
existing translation. Every call: the usage the client saw equals the record
and the simulator's ground truth, priced by genai-prices' AWS price of the
model id called.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import select

from metis.db.tables import events, usage_records
from metis.simulator.bedrock import new_keypair
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

CLAUDE = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA = "amazon.nova-pro-v1:0"
SYSTEM = "You are the ledger's assistant. " * 600  # long enough to cache (4,096+ tokens)


def _add_bedrock(g: GatewayServer, sim: Simulator, secret: str | None = None, **opts: Any) -> str:
    akid, sec = new_keypair()
    return g.add_provider(
        "bedrock",
        sim.url,
        secret or sec,
        options={"region": "us-east-1", "access_key_id": akid, **opts},
    )


@pytest.fixture
def bedrock_gw(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> tuple[GatewayServer, str]:
    g = gateway_factory(simulator.url)
    _add_bedrock(g, simulator)
    _, secret = g.issue_key("dev", user="ana", team="ml")
    return g, secret


def _check(rec: dict[str, Any], call: dict[str, Any], seen: tuple[int, int, int, int]) -> None:
    """``seen``: (input, cached, cache writes, output) in canonical semantics."""
    assert seen == (
        rec["input_tokens"],
        rec["cached_input_tokens"],
        rec["cache_creation_input_tokens"],
        rec["output_tokens"],
    )
    assert seen == (
        call["input_tokens"],
        call["cached_input_tokens"],
        call["cache_creation_input_tokens"],
        call["output_tokens"],
    )
    assert (rec["provider"], rec["model_raw"], rec["status"]) == ("bedrock", call["model"], "ok")
    assert call["provider"] == "aws"
    assert rec["cost_nanousd"] == call["cost_nanousd"] > 0 and rec["cost_source"] == "computed"


def _anthropic_seen(u: Any) -> tuple[int, int, int, int]:
    read = u.cache_read_input_tokens or 0
    write = u.cache_creation_input_tokens or 0
    return u.input_tokens + read + write, read, write, u.output_tokens


def _openai_seen(u: Any) -> tuple[int, int, int, int]:
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    return u.prompt_tokens, cached or 0, 0, u.completion_tokens


@pytest.mark.parametrize("model", [CLAUDE, NOVA])
def test_an_anthropic_client_reaches_bedrock_plain_and_streamed(
    bedrock_gw: tuple[GatewayServer, str], simulator: Simulator, model: str
) -> None:
    g, secret = bedrock_gw
    client = g.anthropic(secret)
    plain = client.messages.create(
        model=f"bedrock/{model}",
        max_tokens=200,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hello, Bedrock."}],
    )
    with client.messages.stream(
        model=f"bedrock/{model}",
        max_tokens=200,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Stream, please."}],
    ) as s:
        streamed = s.get_final_message()
    assert plain.model == streamed.model == model  # the Bedrock model id called
    calls = {c["response_id"]: c for c in simulator.calls()}
    recs = g.records()
    if model == NOVA:  # Converse has no id: the gateway names it after x-amzn-requestid
        assert plain.id.startswith("msg_bdrk_") and len(recs) == 2
        by_order = sorted(recs.values(), key=lambda r: r["window_start"])
        sim_calls = sorted(calls.values(), key=lambda c: c["ts"])
        pairs = list(zip(by_order, sim_calls, strict=True))
        assert [r["correlation_id"] for r in by_order] == [plain.id, streamed.id]
    else:
        assert set(recs) == set(calls) == {plain.id, streamed.id}
        pairs = [(recs[i], calls[i]) for i in (plain.id, streamed.id)]
    for (rec, call), msg in zip(pairs, (plain, streamed), strict=True):
        _check(rec, call, _anthropic_seen(msg.usage))
    # the second call read what the first one wrote (cachePoint / cache_control)
    assert pairs[0][0]["cache_creation_input_tokens"] > 0
    assert pairs[1][0]["cached_input_tokens"] == pairs[0][0]["cache_creation_input_tokens"]


@pytest.mark.parametrize("model", [CLAUDE, NOVA])
def test_an_openai_client_reaches_bedrock_through_the_translation(
    bedrock_gw: tuple[GatewayServer, str], simulator: Simulator, model: str
) -> None:
    g, secret = bedrock_gw
    client = g.openai(secret)
    plain = client.chat.completions.create(
        model=f"bedrock/{model}", messages=[{"role": "user", "content": "Hi there."}]
    )
    chunks = list(
        client.chat.completions.create(
            model=f"bedrock/{model}",
            messages=[{"role": "user", "content": "Stream, please."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = next(c.usage for c in chunks if c.usage is not None)
    recs = sorted(g.records().values(), key=lambda r: r["window_start"])
    calls = sorted(simulator.calls(), key=lambda c: c["ts"])
    assert len(recs) == len(calls) == 2
    assert [r["correlation_id"] for r in recs] == [plain.id, chunks[0].id]
    for rec, call, usage in zip(recs, calls, (plain.usage, streamed), strict=True):
        _check(rec, call, _openai_seen(usage))
        assert rec["inbound_shape"] == "openai"


def test_a_tool_call_through_converse_comes_back_as_an_openai_tool_call(
    bedrock_gw: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = bedrock_gw
    out = g.openai(secret).chat.completions.create(
        model=f"bedrock/{NOVA}",
        messages=[{"role": "user", "content": "Please use tool get_weather for Paris."}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
    )
    (tc,) = out.choices[0].message.tool_calls or []
    assert (tc.function.name, tc.function.arguments) == ("get_weather", '{"city":"sim"}')
    assert out.choices[0].finish_reason == "tool_calls"


def test_anthropic_falls_back_to_claude_on_bedrock(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    metis_env: dict[str, str],
) -> None:
    """A routing fallback from Anthropic to Claude on Bedrock: Anthropic answers 529, the same
    request is served by Bedrock, recorded once, and ``route.decided`` names both."""
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(
        f"schema_version: 1\nfallbacks:\n  claude-haiku-4-5: ['bedrock:{CLAUDE}']\n"
    )
    g = gateway_factory(simulator.url)
    _add_bedrock(g, simulator)
    _, secret = g.issue_key("dev")
    simulator.set_fault("/v1/messages", "529", count=1)
    msg = g.anthropic(secret).messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    (call,) = simulator.calls()
    (rec,) = g.records().values()
    assert msg.id == call["response_id"] == rec["correlation_id"]
    _check(rec, call, _anthropic_seen(msg.usage))
    with g.engine.connect() as c:
        (route,) = c.execute(select(events).where(events.c.type == "route.decided")).mappings()
    payload = route["payload"]
    assert payload["candidates"] == ["anthropic:claude-haiku-4-5", f"bedrock:{CLAUDE}"]
    assert payload["winner_index"] == 1
    assert [a["status"] for a in payload["attempts"]] == ["upstream_error", "ok"]


def test_a_wrong_aws_secret_is_awss_403_in_the_clients_envelope(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    g = gateway_factory(simulator.url)
    _, wrong = new_keypair()  # a real-looking secret of another key id
    _add_bedrock(g, simulator, secret=wrong)
    _, secret = g.issue_key("dev")
    with pytest.raises(anthropic.PermissionDeniedError, match="InvalidSignatureException"):
        g.anthropic(secret).messages.create(
            model=f"bedrock/{CLAUDE}", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError, match="signature we calculated"):
        g.openai(secret).chat.completions.create(
            model=f"bedrock/{NOVA}", messages=[{"role": "user", "content": "x"}]
        )
    assert simulator.calls() == []
    g.flush()
    with g.engine.connect() as c:  # neither failure has a response id: list them, not by id
        statuses = [r.status for r in c.execute(select(usage_records.c.status))]
    assert statuses == ["upstream_error", "upstream_error"]


def test_a_throttled_stream_start_is_a_429_and_tool_choice_none_is_refused(
    bedrock_gw: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = bedrock_gw
    simulator.set_fault(f"/model/{CLAUDE}/invoke", "429", count=1)
    with pytest.raises(anthropic.RateLimitError, match="ThrottlingException"):
        g.anthropic(secret).messages.create(
            model=f"bedrock/{CLAUDE}", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError, match="tool_choice none"):
        g.anthropic(secret).messages.create(
            model=f"bedrock/{NOVA}",
            max_tokens=20,
            tools=[{"name": "t", "input_schema": {"type": "object"}}],
            tool_choice={"type": "none"},
            messages=[{"role": "user", "content": "x"}],
        )
    assert simulator.calls() == []
