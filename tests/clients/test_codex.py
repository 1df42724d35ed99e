"""The real Codex CLI (``codex exec``) against ``metis serve`` + the provider simulator.

Codex speaks only the Responses API (``POST /v1/responses``, streamed). It gets
the gateway as a custom provider (``wire_api = "responses"``) and a ``gw_`` key
in the provider's ``env_key`` variable. The prompt makes the simulator answer
with a call of Codex's ``exec_command`` tool (the simulator's trigger phrase;
its arguments come from the tool's schema: ``{"cmd": "sim"}``); Codex runs the
``sim`` script on its PATH in its workspace-write sandbox, sends the output
back, and the simulator ends the turn: two billed calls, which the ledger must
hold exactly, attributed to the key's user and team.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from metis.db.tables import gateway_keys
from tests.clients.egress import EgressTrap
from tests.plugins.clients import Codex
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

MODEL = "gpt-5-mini"
TOOL_SCRIPT = 'echo "metis tool ran" > "$PWD/tool-ran.txt"\necho "sim-output-4242"\n'


def test_a_codex_tool_turn_is_recorded_exactly_as_the_provider_billed_it(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    codex_cli: Codex,
    egress_trap: EgressTrap,
) -> None:
    g = gateway_factory(simulator.url)
    key_id, secret = g.issue_key("bob-laptop", user="bob", team="eng")
    codex_cli.add_tool("sim", TOOL_SCRIPT)

    run = codex_cli.run(
        "Please use tool exec_command to run sim.",
        base_url=g.url + "/v1",
        key=secret,
        model=MODEL,
        args=["-s", "workspace-write"],
    ).ok()

    assert (codex_cli.workdir / "tool-ran.txt").read_text() == "metis tool ran\n", run.report()
    calls = simulator.calls()
    assert len(calls) == 2, run.report()

    recs = g.records()
    assert set(recs) == {c["response_id"] for c in calls}
    with g.engine.connect() as conn:
        key = conn.execute(select(gateway_keys).where(gateway_keys.c.id == key_id)).mappings().one()
    for c in calls:
        r = recs[c["response_id"]]
        assert (
            r["input_tokens"],
            r["cached_input_tokens"],
            r["output_tokens"],
            r["reasoning_tokens"],
            r["cost_nanousd"],
        ) == (
            c["input_tokens"],
            c["cached_input_tokens"],
            c["output_tokens"],
            c["reasoning_tokens"],
            c["cost_nanousd"],
        )
        assert (r["source"], r["provider"], r["model_raw"]) == ("gateway", "openai", c["model"])
        assert (r["gateway_key_id"], r["user_id"], r["team_id"]) == (
            key_id,
            key["user_id"],
            key["team_id"],
        )
        assert r["cost_source"] == "computed" and r["request_count"] == 1

    truth = simulator.ground_truth()["total"]
    for field in ("input_tokens", "cached_input_tokens", "output_tokens", "cost_nanousd"):
        assert sum(r[field] for r in recs.values()) == truth[field], field
    assert truth["requests"] == 2
    assert egress_trap.attempts == []


def test_a_spent_hard_cap_stops_codex_at_the_first_refusal(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    codex_cli: Codex,
) -> None:
    """Codex ignores ``x-should-retry`` and retries a 429 five times unless its
    ``error.code`` is ``insufficient_quota`` (tests/fixtures/clients/README.md), so the
    cap refusal on OpenAI-shaped routes carries that code and Codex stops at once."""
    g = gateway_factory(simulator.url)
    _, secret = g.issue_key("capped", user="bob", team="eng", daily_cap_usd="0.000001")
    spend = g.openai(secret).responses.create(
        model=MODEL, input="spend the cap", max_output_tokens=16
    )
    assert spend.usage is not None and spend.usage.output_tokens > 0
    requests_before = g.gw.stats.requests

    run = codex_cli.run("hi", base_url=g.url + "/v1", key=secret, model=MODEL, timeout=90)

    sent = g.gw.stats.requests - requests_before
    assert sent == 1, f"{sent} requests reached the gateway (1 expected: no retry)\n{run.report()}"
    assert not run.timed_out and run.returncode == 1, run.report()
    assert "Quota exceeded" in run.stderr, run.report()
    assert g.gw.stats.quota_rejections == 1
    assert len(simulator.calls()) == 1  # only the spending call reached the provider
