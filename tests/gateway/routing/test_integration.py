"""Routing + translation end to end: official SDKs -> gateway -> provider simulator.

The gateway (`gateway_factory`) runs the full ``metis serve`` app against the
simulator (`simulator` fixture, both providers on one port) with a rules file
in ``$METIS_HOME/routing.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import select

from metis.db.tables import events, spend_counters, teams, usage_records
from metis.money import to_nanousd
from metis.pricing import price
from metis.timeutil import day_key, utcnow
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": WEATHER_OPENAI["function"]["parameters"],  # type: ignore[index]
}

Start = Callable[[str], GatewayServer]


@pytest.fixture
def start(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, metis_env: dict[str, str]
) -> Iterator[Start]:
    """Write the rules file, then start the gateway against the simulator.

    SDK clients made through ``g.openai``/``g.anthropic`` are closed at the end
    (an unclosed client's pooled socket would surface as a ResourceWarning).
    """
    clients: list[Any] = []

    def go(rules: str) -> GatewayServer:
        (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(rules)
        g = gateway_factory(simulator.url)
        make_openai, make_anthropic = g.openai, g.anthropic

        def oa(secret: str, **kw: Any) -> Any:
            clients.append(make_openai(secret, **kw))
            return clients[-1]

        def an(secret: str, **kw: Any) -> Any:
            clients.append(make_anthropic(secret, **kw))
            return clients[-1]

        g.openai = oa  # type: ignore[method-assign]
        g.anthropic = an  # type: ignore[method-assign]
        return g

    yield go
    for c in clients:
        c.close()


def records(g: GatewayServer) -> list[dict[str, Any]]:
    g.flush()
    with g.engine.connect() as c:
        return [dict(r) for r in c.execute(select(usage_records)).mappings()]


def routes(g: GatewayServer) -> list[dict[str, Any]]:
    g.flush()
    with g.engine.connect() as c:
        q = select(events.c.payload).where(events.c.type == "route.decided").order_by(events.c.ts)
        return [r[0] for r in c.execute(q)]


def assert_priced(rec: dict[str, Any], provider: str) -> None:
    """The record's cost is the price of the model that actually answered."""
    expect = price(
        provider,
        rec["model_raw"],
        input_tokens=rec["input_tokens"],
        output_tokens=rec["output_tokens"],
        cached_input_tokens=rec["cached_input_tokens"],
        cache_creation_input_tokens=rec["cache_creation_input_tokens"],
        at=rec["window_start"],
    )
    assert rec["provider"] == provider
    assert rec["cost_source"] == "computed"
    assert rec["cost_nanousd"] == expect.cost_nanousd > 0


# ----------------------------------------------------------------------------- soft cap

SOFT_CAP = """\
schema_version: 1
rules:
  - name: team-daily-soft-cap
    when:
      team_cost_today_exceeds_usd: 1.00
    use: anthropic:claude-haiku-4-5
    reason: "team daily soft cap hit; routing to haiku"
"""


def test_spec_soft_cap_team_rule_routes_and_null_team_does_not(start: Start) -> None:
    g = start(SOFT_CAP)
    _, team_secret = g.issue_key("eng-dev", user="alice", team="eng")
    _, solo_secret = g.issue_key("agent", user="bob")  # no team: the agent path
    with g.engine.begin() as c:
        team_id = c.execute(select(teams.c.id).where(teams.c.name == "eng")).scalar_one()
        # The team already spent $1.50 today (as settled by gateway processes).
        c.execute(
            spend_counters.insert().values(
                scope="team_daily",
                scope_id=team_id,
                period=day_key(utcnow()),
                spent_nanousd=to_nanousd("1.50"),
                reserved_nanousd=0,
                updated_at=utcnow(),
            )
        )
    # A gateway process started now (as after a restart) knows that spend at once.
    from metis.config import get_settings
    from metis.server import create_app
    from metis.util.server_thread import ServerThread

    app = create_app(get_settings())
    srv = ServerThread(app).start()
    fresh = GatewayServer(srv.url, app, g.engine, g.workspace_id, g.upstream_url, [srv])
    try:
        msgs = [{"role": "user", "content": "hello"}]
        with fresh.openai(team_secret) as team_client:
            resp = team_client.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, max_tokens=5
            )
        assert resp.model.startswith("claude-haiku-4-5")
        assert resp.choices[0].message.content
        with fresh.openai(solo_secret) as solo_client:
            solo = solo_client.chat.completions.create(
                model="gpt-4o-mini", messages=msgs, max_tokens=5
            )
        assert solo.model.startswith("gpt-4o-mini")
        fresh.flush()
    finally:
        srv.stop()
    decided = routes(g)
    assert len(decided) == 2
    routed, default = decided
    assert routed["rule"] == "team-daily-soft-cap"
    assert routed["reason"] == "team daily soft cap hit; routing to haiku"
    assert routed["candidates"] == ["anthropic:claude-haiku-4-5"]
    assert routed["winner_index"] == 0
    assert default["rule"] is None and default["reason"] == "default"
    assert default["candidates"] == ["openai:gpt-4o-mini"]
    recs = sorted(records(g), key=lambda r: r["window_start"])
    assert len(recs) == 2
    assert_priced(recs[0], "anthropic")
    assert recs[0]["team_id"] == team_id and recs[0]["inbound_shape"] == "openai"
    assert_priced(recs[1], "openai")
    assert recs[1]["team_id"] is None


# ------------------------------------------------------------- openai SDK -> Anthropic

TO_ANTHROPIC = """\
schema_version: 1
rules:
  - name: chat-to-haiku
    when: {inbound_shape: openai, model: gpt-4o-mini}
    use: anthropic:claude-haiku-4-5
    reason: cheaper
"""


def test_openai_sdk_routed_to_anthropic_non_streaming_tool_round_trip(start: Start) -> None:
    g = start(TO_ANTHROPIC)
    _, secret = g.issue_key(user="alice", team="eng")
    client = g.openai(secret)
    messages: list[Any] = [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": "Please use tool get_weather for Paris."},
    ]
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_OPENAI], max_tokens=64
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments), dict)  # type: ignore[union-attr]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    second = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_OPENAI], max_tokens=64
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content
    assert second.model.startswith("claude-haiku-4-5")
    recs = sorted(records(g), key=lambda r: r["window_start"])
    assert len(recs) == 2
    for rec, resp in zip(recs, (first, second), strict=True):
        assert_priced(rec, "anthropic")
        assert rec["model"] == "claude-haiku-4-5"
        assert rec["inbound_shape"] == "openai"
        assert resp.usage is not None
        assert rec["input_tokens"] == resp.usage.prompt_tokens
        assert rec["output_tokens"] == resp.usage.completion_tokens
        assert rec["correlation_id"] == resp.id
    assert [r["rule"] for r in routes(g)] == ["chat-to-haiku", "chat-to-haiku"]


def test_openai_sdk_routed_to_anthropic_streaming(start: Start) -> None:
    g = start(TO_ANTHROPIC)
    _, secret = g.issue_key()
    client = g.openai(secret)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Please use tool get_weather for Rome."}],
            tools=[WEATHER_OPENAI],
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        for ch in c.choices
        for tc in ch.delta.tool_calls or []
        if tc.function
    )
    assert isinstance(json.loads(args), dict)
    names = [
        tc.function.name
        for c in chunks
        for ch in c.choices
        for tc in ch.delta.tool_calls or []
        if tc.function and tc.function.name
    ]
    assert names == ["get_weather"]
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == [
        "tool_calls"
    ]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    call_id = next(
        tc.id for c in chunks for ch in c.choices for tc in ch.delta.tool_calls or [] if tc.id
    )
    round_trip = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": "Please use tool get_weather for Rome."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": args},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": "25C"},
            ],
            tools=[WEATHER_OPENAI],
            max_tokens=64,
            stream=True,
        )
    )
    assert "".join(ch.delta.content or "" for c in round_trip for ch in c.choices)
    assert [ch.finish_reason for c in round_trip for ch in c.choices if ch.finish_reason] in (
        ["stop"],
        ["length"],
    )
    text_chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=20,
            stream=True,
        )
    )
    assert "".join(ch.delta.content or "" for c in text_chunks for ch in c.choices)
    assert all(c.usage is None for c in text_chunks)  # not asked: no usage chunk
    recs = sorted(records(g), key=lambda r: r["window_start"])
    assert len(recs) == 3
    assert recs[0]["input_tokens"] == usage.prompt_tokens
    assert recs[0]["output_tokens"] == usage.completion_tokens
    assert recs[0]["status"] == "ok"
    for rec in recs:
        assert_priced(rec, "anthropic")
        assert rec["output_tokens"] > 0


# ------------------------------------------------------------- anthropic SDK -> OpenAI

TO_OPENAI = """\
schema_version: 1
rules:
  - name: messages-to-openai
    when: {inbound_shape: anthropic}
    use: openai:gpt-4o-mini
"""


def test_anthropic_sdk_routed_to_openai_non_streaming_tool_round_trip(start: Start) -> None:
    g = start(TO_OPENAI)
    _, secret = g.issue_key(user="alice", team="eng")
    client = g.anthropic(secret)
    messages: list[Any] = [{"role": "user", "content": "Please use tool get_weather for Oslo."}]
    first = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        system="You answer weather questions.",
        messages=messages,
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    [tool_use] = [b for b in first.content if b.type == "tool_use"]
    assert tool_use.name == "get_weather" and isinstance(tool_use.input, dict)
    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_use.id, "content": "-3C, snow"}
            ],
        }
    )
    second = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=messages,
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    )
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert second.content[0].type == "text" and second.content[0].text
    assert second.model.startswith("gpt-4o-mini")
    recs = sorted(records(g), key=lambda r: r["window_start"])
    assert len(recs) == 2
    for rec, resp in zip(recs, (first, second), strict=True):
        assert_priced(rec, "openai")
        assert rec["model"] == "gpt-4o-mini" and rec["inbound_shape"] == "anthropic"
        u = resp.usage
        assert rec["input_tokens"] == u.input_tokens + (u.cache_read_input_tokens or 0)
        assert rec["cached_input_tokens"] == (u.cache_read_input_tokens or 0)
        assert rec["output_tokens"] == u.output_tokens
    assert [r["rule"] for r in routes(g)] == ["messages-to-openai"] * 2


def test_anthropic_sdk_routed_to_openai_streaming(start: Start) -> None:
    g = start(TO_OPENAI)
    _, secret = g.issue_key()
    client = g.anthropic(secret)
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Please use tool get_weather for Lima."}],
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    ) as stream:
        tool_msg = stream.get_final_message()
    assert tool_msg.stop_reason == "tool_use"
    [tool_use] = [b for b in tool_msg.content if b.type == "tool_use"]
    assert tool_use.name == "get_weather" and isinstance(tool_use.input, dict)
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "Please use tool get_weather for Lima."},
            {"role": "assistant", "content": [b.model_dump() for b in tool_msg.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "20C"}],
            },
        ],
        tools=[WEATHER_ANTHROPIC],  # type: ignore[list-item]
    ) as stream:
        answer = stream.get_final_message()
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text" and answer.content[0].text
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=32,
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    recs = sorted(records(g), key=lambda r: r["window_start"])
    assert len(recs) == 3
    for rec, msg in zip(recs, (tool_msg, answer, final), strict=True):
        assert_priced(rec, "openai")
        u = msg.usage
        assert rec["input_tokens"] == u.input_tokens + (u.cache_read_input_tokens or 0)
        assert rec["output_tokens"] == u.output_tokens > 0
        assert rec["correlation_id"] == msg.id


def test_unsupported_feature_is_a_400_naming_it(start: Start) -> None:
    g = start(TO_ANTHROPIC)
    _, secret = g.issue_key()
    with pytest.raises(openai.BadRequestError) as ei:
        g.openai(secret).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], n=2
        )
    assert "n is not supported when routing to an Anthropic model" in str(ei.value)
    [rd] = routes(g)
    assert rd["winner_index"] == -1 and rd["attempts"][0]["status"] == "invalid_request"
    assert records(g) == []  # nothing reached a provider


def test_unsupported_anthropic_feature_is_a_400_naming_it(start: Start) -> None:
    g = start(TO_OPENAI)
    _, secret = g.issue_key()
    with pytest.raises(anthropic.BadRequestError) as ai:
        g.anthropic(secret).messages.create(
            model="claude-haiku-4-5",
            max_tokens=10,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "x"}],
        )
    assert "top_k is not supported" in str(ai.value)


# --------------------------------------------------------------------------- fallbacks

FALLBACK = """\
schema_version: 1
rules:
  - name: haiku-first
    when: {model: gpt-4o-mini}
    use: anthropic:claude-haiku-4-5
    fallbacks: [openai:gpt-4o-mini]
"""


def test_fallback_first_target_503_second_answers(start: Start, simulator: Simulator) -> None:
    g = start(FALLBACK)
    _, secret = g.issue_key(user="alice")
    simulator.set_fault("/v1/messages", "503", count=1)
    resp = g.openai(secret).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert resp.model.startswith("gpt-4o-mini")
    [rec] = records(g)
    assert_priced(rec, "openai")
    assert rec["model"] == "gpt-4o-mini" and rec["status"] == "ok"
    [rd] = routes(g)
    assert rd["candidates"] == ["anthropic:claude-haiku-4-5", "openai:gpt-4o-mini"]
    assert rd["winner_index"] == 1
    assert rd["rule"] == "haiku-first"
    attempts = rd["attempts"]
    assert [(a["target"], a["http_status"]) for a in attempts] == [
        ("anthropic:claude-haiku-4-5", 503),
        ("openai:gpt-4o-mini", 200),
    ]
    assert attempts[0]["status"] == "upstream_error" and attempts[1]["status"] == "ok"


def test_all_candidates_fail_answers_last_error_in_client_shape(
    start: Start, simulator: Simulator
) -> None:
    g = start(FALLBACK)
    _, secret = g.issue_key()
    simulator.set_fault("*", "429", count=2)
    with pytest.raises(openai.RateLimitError):
        g.openai(secret).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    [rd] = routes(g)
    assert rd["winner_index"] == -1
    assert [a["http_status"] for a in rd["attempts"]] == [429, 429]


def test_no_fallback_on_client_4xx(start: Start) -> None:
    g = start(
        """\
schema_version: 1
rules:
  - name: bad-model-first
    when: {model: gpt-4o-mini}
    use: anthropic:claude-no-such-model
    fallbacks: [openai:gpt-4o-mini]
"""
    )
    _, secret = g.issue_key()
    with pytest.raises(openai.NotFoundError):
        g.openai(secret).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    [rd] = routes(g)
    assert rd["winner_index"] == -1  # the client got an error, not an answer
    assert [(a["target"], a["http_status"]) for a in rd["attempts"]] == [
        ("anthropic:claude-no-such-model", 404)
    ]


# ------------------------------------------------------------------------ hot reload


def _model_for(client: openai.OpenAI) -> str:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    ).model


def _eventually(check: Callable[[], bool], timeout: float = 6.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_rules_reload_without_restart_and_malformed_file_keeps_last_good(
    start: Start, metis_env: dict[str, str]
) -> None:
    g = start(TO_ANTHROPIC)
    _, secret = g.issue_key()
    client = g.openai(secret)
    assert _model_for(client).startswith("claude-haiku-4-5")
    path = Path(metis_env["METIS_HOME"]) / "routing.yaml"
    path.write_text(
        "schema_version: 1\nrules:\n  - {name: to-41, when: {model: gpt-4o-mini}, "
        "use: 'openai:gpt-4.1-mini'}\n"
    )
    _eventually(lambda: _model_for(client).startswith("gpt-4.1-mini"))
    # A malformed edit: reported, and the last good rules stay in effect.
    path.write_text("schema_version: 1\nrules:\n  - {name: broken, use: 'nowhere'}\n")
    watcher = g.gw.router.watcher
    _eventually(lambda: watcher.last_error is not None)
    assert 'rules[0] "broken".use' in watcher.last_error
    assert _model_for(client).startswith("gpt-4.1-mini")
    metrics = httpx.get(g.url + "/metrics").text
    assert "metis_routing_config_ok 0.0" in metrics
    assert "metis_routing_rules 1.0" in metrics
    decided = routes(g)
    assert decided[-1]["rule"] == "to-41"
    # Removing the file removes the rules: the request's own model again.
    path.unlink()
    _eventually(lambda: _model_for(client).startswith("gpt-4o-mini"))


def test_embeddings_are_never_rerouted(start: Start) -> None:
    g = start("schema_version: 1\nrules:\n  - {name: all, use: 'anthropic:claude-haiku-4-5'}\n")
    _, secret = g.issue_key()
    emb = g.openai(secret).embeddings.create(model="text-embedding-3-small", input="hello")
    assert emb.data
    [rd] = routes(g)
    assert rd["candidates"] == ["openai:text-embedding-3-small"] and rd["rule"] is None


def test_route_decided_names_both_shapes(start: Start) -> None:
    """Sanity: the rule file's timestamps and event rows are UTC (no local-time drift)."""
    g = start(TO_OPENAI)
    _, secret = g.issue_key()
    g.anthropic(secret).messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    [rd] = routes(g)
    assert rd["inbound_shape"] == "anthropic"
    assert rd["candidates"] == ["openai:gpt-4o-mini"]
    [rec] = records(g)
    assert rec["window_start"].tzinfo is not None or isinstance(rec["window_start"], datetime)
    assert rec["window_start"] <= datetime.now(UTC).replace(tzinfo=rec["window_start"].tzinfo)


def test_cross_shape_stream_cut_and_malformed_upstream(start: Start, simulator: Simulator) -> None:
    g = start(TO_ANTHROPIC)
    _, secret = g.issue_key()
    client = g.openai(secret)
    simulator.set_fault("/v1/messages", "stream_cut", count=1)
    chunks: list[Any] = []
    # the upstream drops the connection: the client's stream ends with an error frame
    with pytest.raises(openai.APIError, match="upstream stream interrupted"):
        for c in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me a story."}],
            max_tokens=40,
            stream=True,
        ):
            chunks.append(c)
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert not [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    simulator.set_fault("/v1/messages", "malformed", count=1)
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        )
    assert ei.value.status_code == 502
    assert "malformed response" in str(ei.value)
    cut, bad = sorted(records(g), key=lambda r: r["window_start"])
    # the cut stream keeps the input the upstream reported (message_start) and is recorded
    # at its worst-case output (the translated max_tokens); the malformed 200 at its worst
    # case (issue 19 item 5, tests/reliability/test_upstream_faults.py)
    (billed_cut, billed_bad) = simulator.calls()
    assert cut["status"] == "upstream_error" and cut["input_tokens"] == billed_cut["input_tokens"]
    assert cut["output_tokens"] == 40 and cut["cost_source"] == "estimated"
    assert cut["metadata"] == {"estimated": True, "estimate_reason": "stream_cut"}
    assert cut["provider"] == "anthropic"
    assert bad["status"] == "upstream_error" and bad["provider"] == "anthropic"
    assert bad["output_tokens"] == 8 and bad["cost_source"] == "estimated"
    assert bad["metadata"] == {"estimated": True, "estimate_reason": "truncated_body"}
    assert bad["cost_nanousd"] >= int(billed_bad["cost_nanousd"]) > 0


def test_workspace_scoped_rule_goes_before_global(start: Start) -> None:
    g = start(
        """\
schema_version: 1
rules:
  - {name: global, use: 'openai:gpt-4.1-mini'}
  - {name: only-w, workspace: w, when: {model: gpt-4o-mini}, use: 'anthropic:claude-haiku-4-5'}
  - {name: only-other, workspace: other, use: 'openai:gpt-4.1-nano'}
"""
    )
    _, secret = g.issue_key()
    assert _model_for(g.openai(secret)).startswith("claude-haiku-4-5")
    assert [r["rule"] for r in routes(g)] == ["only-w"]


def test_cached_tokens_cross_shape_are_reported_and_priced(start: Start) -> None:
    """OpenAI caches long prompts (prompt_tokens includes cached_tokens); an Anthropic
    client sees them as cache_read_input_tokens beside (not inside) input_tokens."""
    g = start(TO_OPENAI)
    _, secret = g.issue_key()
    client = g.anthropic(secret)
    long_prompt = "Summarize: " + " ".join(f"word{i}" for i in range(2500))
    resp = client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": long_prompt}]
    )
    u = resp.usage
    assert u.cache_read_input_tokens and u.cache_read_input_tokens > 0
    assert u.cache_creation_input_tokens == 0
    [rec] = records(g)
    assert rec["cached_input_tokens"] == u.cache_read_input_tokens
    assert rec["input_tokens"] == u.input_tokens + u.cache_read_input_tokens
    assert_priced(rec, "openai")  # cache reads priced at the cached rate
    uncached = price(
        "openai", rec["model_raw"], input_tokens=rec["input_tokens"],
        output_tokens=rec["output_tokens"], at=rec["window_start"],
    )  # fmt: skip
    assert uncached.cost_nanousd is not None and rec["cost_nanousd"] < uncached.cost_nanousd


def test_translated_upstream_429_keeps_its_retry_after(start: Start, simulator: Simulator) -> None:
    g = start(
        "schema_version: 1\nrules:\n  - name: to-claude\n    when: {model: gpt-4o-mini}\n"
        "    use: anthropic:claude-haiku-4-5\n    reason: translate\n"
    )
    _, secret = g.issue_key()
    simulator.set_fault("/v1/messages", "429", count=1, retry_after=9)
    r = httpx.post(
        g.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "9"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"  # re-shaped for the OpenAI client
