"""The real Gemini CLI (``gemini -p``) against ``metis serve`` + the provider simulator.

Gemini CLI speaks Google's Gemini API (``streamGenerateContent?alt=sse``
through the ``@google/genai`` SDK). It gets the gateway as its base URL
(``GOOGLE_GEMINI_BASE_URL``, documented for gateways with Gemini API key
auth) and a ``gw_`` key as ``GEMINI_API_KEY``; the workspace's ``gemini``
credential points at the simulator. One non-interactive prompt must be
recorded exactly as the simulator billed it (tokens and cost of every call,
attributed to the key's user and team), the CLI's own token statistics must
agree with the ledger, and nothing may try to leave the machine (the egress
trap stays empty: usage statistics, telemetry and update checks are off).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from metis.db.tables import gateway_keys
from metis.simulator.gemini import new_key
from tests.clients.egress import EgressTrap
from tests.plugins.clients import GeminiCli
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

MODEL = "gemini-2.5-flash"


def _result(stdout: str) -> dict[str, Any]:
    """The ``result`` event of ``-o stream-json`` (one JSON object per line)."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    (result,) = [e for e in events if e.get("type") == "result"]
    return result


def test_a_gemini_cli_prompt_is_recorded_exactly_as_the_provider_billed_it(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    gemini_cli: GeminiCli,
    egress_trap: EgressTrap,
) -> None:
    g = gateway_factory(simulator.url)
    g.add_provider("gemini", simulator.url, new_key())
    key_id, secret = g.issue_key("ana-laptop", user="ana", team="ml")

    run = gemini_cli.run(
        "Say hello in one word.",
        base_url=g.url,
        key=secret,
        model=MODEL,
        args=["-o", "stream-json"],
    ).ok()

    result = _result(run.stdout)
    assert result["status"] == "success", run.report()
    calls = simulator.calls()
    assert calls, run.report()
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
        assert (r["source"], r["provider"], r["model_raw"], r["inbound_shape"]) == (
            "gateway",
            "gemini",
            MODEL,
            "gemini",
        )
        assert (r["gateway_key_id"], r["user_id"], r["team_id"]) == (
            key_id,
            key["user_id"],
            key["team_id"],
        )
        assert r["cost_source"] == "computed" and r["cost_nanousd"] > 0
    # The CLI's own statistics (Gemini's usageMetadata as it summed them) agree with the
    # ledger: its output_tokens are the candidates, thoughts are the rest of its total.
    stats = result["stats"]["models"][MODEL]
    assert stats["input_tokens"] == sum(r["input_tokens"] for r in recs.values())
    assert stats["cached"] == sum(r["cached_input_tokens"] for r in recs.values())
    assert stats["total_tokens"] - stats["input_tokens"] == sum(
        r["output_tokens"] for r in recs.values()
    )
    truth = simulator.ground_truth()["total"]
    assert sum(r["cost_nanousd"] for r in recs.values()) == truth["cost_nanousd"]
    assert egress_trap.attempts == []
