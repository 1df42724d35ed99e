"""The real Claude Code CLI (``claude -p``) against ``metis serve`` + the provider simulator.

Claude Code gets a ``gw_`` key and the gateway's URL, nothing else; the gateway
forwards to the simulator. The prompt makes the simulator answer with a
``tool_use`` of Claude Code's own Bash tool (the simulator's trigger phrase, see
docs/simulator.md); the command it runs is a script on the CLI's PATH, so the
test sees the tool really ran. Claude Code then sends the tool result back and
the simulator ends the turn: two billed calls. The ledger must hold exactly what
the simulator served, call by call and to the nano-dollar, attributed to the
key's user and team.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from metis.db.tables import gateway_keys
from tests.clients.egress import EgressTrap
from tests.plugins.clients import ClaudeCode, RecorderFactory
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

MODEL = "claude-sonnet-4-6"
TOOL_SCRIPT = 'echo "metis tool ran" > "$PWD/tool-ran.txt"\necho "sim-output-4242"\n'


def test_a_tool_turn_is_recorded_exactly_as_the_provider_billed_it(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    claude_code: ClaudeCode,
    egress_trap: EgressTrap,
) -> None:
    g = gateway_factory(simulator.url)
    key_id, secret = g.issue_key("alice-laptop", user="alice", team="eng")
    claude_code.add_tool("sim", TOOL_SCRIPT)

    run = claude_code.run(
        "Please use tool Bash to run sim.",
        base_url=g.url,
        key=secret,
        model=MODEL,
        args=["--allowedTools", "Bash(sim)"],
    ).ok()

    result = run.json()
    assert result["is_error"] is False and result["subtype"] == "success", run.report()
    assert result["num_turns"] == 2, run.report()
    assert (claude_code.workdir / "tool-ran.txt").read_text() == "metis tool ran\n"
    calls = simulator.calls()
    assert [c["model"] for c in calls] == [MODEL, MODEL], run.report()

    # Call by call: the ledger row is what the simulator billed.
    recs = g.records()
    assert set(recs) == {c["response_id"] for c in calls}
    with g.engine.connect() as conn:
        key = conn.execute(select(gateway_keys).where(gateway_keys.c.id == key_id)).mappings().one()
    for c in calls:
        r = recs[c["response_id"]]
        assert (
            r["input_tokens"],
            r["cached_input_tokens"],
            r["cache_creation_input_tokens"],
            r["output_tokens"],
            r["cost_nanousd"],
        ) == (
            c["input_tokens"],
            c["cached_input_tokens"],
            c["cache_creation_input_tokens"],
            c["output_tokens"],
            c["cost_nanousd"],
        )
        assert (r["source"], r["provider"], r["model"], r["inbound_shape"]) == (
            "gateway",
            "anthropic",
            MODEL,
            "anthropic",
        )
        assert (r["gateway_key_id"], r["user_id"], r["team_id"]) == (
            key_id,
            key["user_id"],
            key["team_id"],
        )
        assert r["user_id"] is not None and r["team_id"] is not None
        assert r["cost_source"] == "computed" and r["request_count"] == 1

    # The second turn re-sent the first turn's prefix and read it from the cache.
    first, second = calls
    assert first["cache_creation_input_tokens"] > 0 and first["cached_input_tokens"] == 0
    assert second["cached_input_tokens"] == first["cache_creation_input_tokens"]

    # Totals: the ledger equals the simulator's ground truth to the nano-dollar.
    truth = simulator.ground_truth()["total"]
    for field in (
        "input_tokens",
        "cached_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens",
        "cost_nanousd",
    ):
        assert sum(r[field] for r in recs.values()) == truth[field], field
    assert truth["requests"] == 2

    # Claude Code's own account of the session agrees on the tokens.
    usage = result["modelUsage"][MODEL]
    assert usage["outputTokens"] == truth["output_tokens"]
    assert usage["cacheReadInputTokens"] == truth["cached_input_tokens"]
    assert usage["cacheCreationInputTokens"] == truth["cache_creation_input_tokens"]
    assert (
        usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheCreationInputTokens"]
        == truth["input_tokens"]
    )

    # Nothing left the machine.
    assert egress_trap.attempts == []


def test_a_spent_hard_cap_stops_claude_code_at_the_first_refusal(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    claude_code: ClaudeCode,
) -> None:
    """The cap refusal must tell Claude Code not to retry (``x-should-retry: false``):
    it would otherwise retry for minutes, each retry refused again (issue 17, item 5)."""
    g = gateway_factory(simulator.url)
    _, secret = g.issue_key("capped", user="bob", team="eng", daily_cap_usd="0.000001")
    spend = g.anthropic(secret).messages.create(
        model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "spend the cap"}]
    )
    assert spend.usage.output_tokens > 0
    requests_before = g.gw.stats.requests

    run = claude_code.run("hi", base_url=g.url, key=secret, model=MODEL, timeout=90)

    sent = g.gw.stats.requests - requests_before
    assert sent == 1, f"{sent} requests reached the gateway (1 expected: no retry)\n{run.report()}"
    assert not run.timed_out and run.returncode == 1, run.report()
    result = run.json()
    assert result["is_error"] is True and result["api_error_status"] == 429, run.report()
    assert "key_daily spend cap reached" in result["result"]
    assert g.gw.stats.quota_rejections == 1
    assert len(simulator.calls()) == 1  # only the spending call reached the provider


def test_context_is_counted_through_the_gateway_and_not_billed(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    claude_code: ClaudeCode,
    recorder_factory: RecorderFactory,
) -> None:
    """``/context`` asks ``POST /v1/messages/count_tokens?beta=true`` for every part of the
    prompt (34 requests): the gateway must serve them, and nothing is billed."""
    g = gateway_factory(simulator.url)
    _, secret = g.issue_key("alice-laptop", user="alice", team="eng")
    rec, url = recorder_factory(g.url, secrets=[secret])

    run = claude_code.run("/context", base_url=url, key=secret, model=MODEL).ok()

    assert "Context Usage" in run.json()["result"]
    counts = rec.requests("/v1/messages/count_tokens")
    assert len(counts) > 10 and rec.requests("/v1/messages") == []
    assert {e.status for e in counts} == {200}, run.report()
    assert simulator.ground_truth()["total"]["requests"] == 0
    assert g.records() == {}
