"""Issue 19 item 5: calls whose answer the gateway could not read in full are recorded at
their worst-case estimate, counted by caps, and corrected by reconciliation.

The issue: "When the upstream drops the connection, truncates or corrupts the body,
or cuts a stream, the provider has billed the call but Metis records $0 (Anthropic
streams: input only), so caps do not count it and only a later provider sync
notices." Here a real gateway forwards to the simulator with its faults
(`metis.simulator.faults`: ``drop``, ``truncated``, ``malformed``, ``stream_cut``,
each billed in the simulator's ledger like a provider would); every faulted call's
record is ``cost_source = estimated`` at exactly the worst case the module doc of
`metis.gateway.estimate` states, and the key's cap counter holds it. A connection
that never opened and an error answer read in full stay unbilled.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
from sqlalchemy import Engine, select

from metis.db.tables import events, usage_records
from metis.gateway.worst_case import OVERHEAD_TOKENS
from metis.pricing import top_prices
from metis.timeutil import day_key, utcnow
from tests.conftest import Cli
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


def _expected(provider: str, model: str, input_tokens: int, output_tokens: int) -> int:
    """Nano-USD of ``input_tokens`` and ``output_tokens`` at the model's top prices,
    rounded up (one request's fee included), written out independently of the code."""
    top = top_prices(provider, model, provider)
    assert top is not None
    usd = (
        Decimal(input_tokens) * Decimal(str(top.input_per_mtok))
        + Decimal(output_tokens) * Decimal(str(top.output_per_mtok))
    ) / Decimal(10**6) + Decimal(str(top.per_request))
    return math.ceil(usd * 10**9)


def _record(g: GatewayServer, request_id: str) -> dict[str, Any]:
    g.flush()
    with g.engine.connect() as c:
        row = c.execute(select(usage_records).where(usage_records.c.request_id == request_id)).one()
    return dict(row._mapping)


def _call_event(g: GatewayServer, request_id: str) -> dict[str, Any]:
    with g.engine.connect() as c:
        rows = c.execute(select(events.c.type, events.c.payload)).all()
    for typ, payload in rows:
        p = payload if isinstance(payload, dict) else msgspec.json.decode(payload)
        if typ == "llm.call_completed" and p["request_id"] == request_id:
            return p  # type: ignore[no-any-return]
    raise AssertionError(f"no llm.call_completed for {request_id}")


def _key_spent(g: GatewayServer, key_id: str) -> int:
    spent: int = g.gw.counters.spent(("key_daily", key_id, day_key(utcnow())))
    return spent


def _post(g: GatewayServer, secret: str, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(
        g.url + path,
        content=raw,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
        timeout=30,
    )


def _assert_estimated(
    g: GatewayServer, rid: str, reason: str, provider: str, model: str, inp: int, out: int
) -> int:
    rec = _record(g, rid)
    cost = _expected(provider, model, inp, out)
    assert (rec["input_tokens"], rec["output_tokens"]) == (inp, out)
    assert rec["cost_source"] == "estimated" and rec["cost_nanousd"] == cost
    assert rec["metadata"] == {"estimated": True, "estimate_reason": reason}
    assert rec["request_count"] == 1  # the provider ran and counts it
    ev = _call_event(g, rid)
    assert ev["estimated"] is True and ev["estimate_reason"] == reason
    assert ev["cost_source"] == "estimated" and Decimal(str(ev["cost_usd"])) * 10**9 == cost
    return cost


NON_STREAM = [
    # (fault, path, body, reason, client status)
    (
        "drop",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 40,
            "n": 3,
            "messages": [{"role": "user", "content": "hi"}],
        },
        "upstream_disconnected",
        502,
    ),
    (
        "truncated",
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "max_completion_tokens": 77,
            "messages": [{"role": "user", "content": "a story"}],
        },
        "truncated_body",
        200,
    ),
    (
        "malformed",
        "/v1/responses",
        {"model": "gpt-4o-mini", "max_output_tokens": 90, "input": "hello there"},
        "truncated_body",
        200,
    ),
]


@pytest.mark.parametrize(("fault", "path", "body", "reason", "status"), NON_STREAM)
def test_non_stream_faults_are_recorded_at_the_worst_case_and_hold_the_cap(
    g: GatewayServer,
    simulator: Simulator,
    fault: str,
    path: str,
    body: dict[str, Any],
    reason: str,
    status: int,
) -> None:
    key_id, secret = g.issue_key(daily_cap_usd="5")
    simulator.set_fault(path, fault, count=1)
    raw = msgspec.json.encode(body)
    r = _post(g, secret, path, raw)
    assert r.status_code == status
    budget = (
        body.get("max_tokens") or body.get("max_completion_tokens") or body["max_output_tokens"]
    )
    out = budget * body.get("n", 1)
    cost = _assert_estimated(
        g, r.headers["x-metis-request-id"], reason, "openai", "gpt-4o-mini",
        len(raw) + OVERHEAD_TOKENS, out,
    )  # fmt: skip
    assert _key_spent(g, key_id) == cost  # the cap counts it
    (billed,) = simulator.calls()  # the provider billed it, within the estimate
    assert 0 < int(billed["cost_nanousd"]) <= cost


def test_a_key_without_caps_is_estimated_too(g: GatewayServer, simulator: Simulator) -> None:
    """No cap read the worst case before the call: it is computed on the fault path."""
    _, secret = g.issue_key()
    simulator.set_fault("/v1/messages", "drop", count=1)
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "x"}],
    }
    raw = msgspec.json.encode(body)
    r = _post(g, secret, "/v1/messages", raw)
    assert r.status_code == 502
    _assert_estimated(
        g, r.headers["x-metis-request-id"], "upstream_disconnected", "anthropic",
        "claude-haiku-4-5", len(raw) + OVERHEAD_TOKENS, 64,
    )  # fmt: skip


def test_openai_chat_stream_cut_before_its_usage_chunk(
    g: GatewayServer, simulator: Simulator
) -> None:
    key_id, secret = g.issue_key(daily_cap_usd="5")
    simulator.set_fault("/v1/chat/completions", "stream_cut", count=1)
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "count to ten"}],
    }
    raw = msgspec.json.encode(body)
    with httpx.stream(
        "POST",
        g.url + "/v1/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        text = b"".join(r.iter_bytes())
        rid = r.headers["x-metis-request-id"]
    assert b"[DONE]" not in text
    cost = _assert_estimated(
        g, rid, "stream_cut", "openai", "gpt-4o-mini", len(raw) + OVERHEAD_TOKENS, 50
    )
    assert _key_spent(g, key_id) == cost


def test_anthropic_stream_cut_keeps_the_input_it_read(
    g: GatewayServer, simulator: Simulator
) -> None:
    """message_start said the input; no message_delta came: input as read, output the budget."""
    key_id, secret = g.issue_key(daily_cap_usd="5")
    simulator.set_fault("/v1/messages", "stream_cut", count=1)
    client = g.anthropic(secret)
    rid = None
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=120,
        messages=[{"role": "user", "content": "tell me about lighthouses"}],
    ) as s:
        started = None
        kinds = []
        for ev in s:  # the gateway ends the cut stream; the SDK sees no message_stop
            kinds.append(ev.type)
            if ev.type == "message_start":
                started = ev.message.usage.input_tokens
        rid = s.response.headers["x-metis-request-id"]
    assert started is not None and started > 0
    assert "message_delta" not in kinds and "message_stop" not in kinds
    (billed,) = simulator.calls()
    assert int(billed["input_tokens"]) == started
    cost = _assert_estimated(g, rid, "stream_cut", "anthropic", "claude-haiku-4-5", started, 120)
    assert _key_spent(g, key_id) == cost
    assert 0 < int(billed["cost_nanousd"]) <= cost


def test_responses_stream_cut_before_response_completed(
    g: GatewayServer, simulator: Simulator
) -> None:
    _, secret = g.issue_key(daily_cap_usd="5")
    simulator.set_fault("/v1/responses", "stream_cut", count=1)
    body = {"model": "gpt-4o-mini", "max_output_tokens": 33, "stream": True, "input": "hi"}
    raw = msgspec.json.encode(body)
    with httpx.stream(
        "POST",
        g.url + "/v1/responses",
        content=raw,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
        timeout=30,
    ) as r:
        text = b"".join(r.iter_bytes())
        rid = r.headers["x-metis-request-id"]
    assert b"response.completed" not in text
    _assert_estimated(g, rid, "stream_cut", "openai", "gpt-4o-mini", len(raw) + OVERHEAD_TOKENS, 33)


def test_a_complete_stream_and_a_read_error_answer_are_not_estimated(
    g: GatewayServer, simulator: Simulator
) -> None:
    key_id, secret = g.issue_key(daily_cap_usd="5")
    client = g.openai(secret)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            max_tokens=5,
            stream=True,
            messages=[{"role": "user", "content": "x"}],
        )
    )
    assert chunks
    simulator.set_fault("/v1/chat/completions", "500", count=1)
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    err_rid = ei.value.response.headers["x-metis-request-id"]
    g.flush()
    with g.engine.connect() as c:
        rows = c.execute(select(usage_records)).all()
    by_rid = {r.request_id: r for r in rows}
    assert {r.cost_source for r in rows} == {"computed"}
    assert by_rid[err_rid].cost_nanousd == 0 and by_rid[err_rid].request_count == 0
    assert _key_spent(g, key_id) == sum(r.cost_nanousd for r in rows)
    assert len(simulator.calls()) == 1  # the 500 billed nothing


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_connect_failure_records_nothing_billed(g: GatewayServer) -> None:
    """Nothing was sent: $0, no request counted, the cap untouched, not estimated."""
    g.add_provider(
        "deadend",
        f"http://127.0.0.1:{_closed_port()}/v1",
        "sk-test-deadend-0001",
        family="openai",
        price_provider="openai",
    )
    key_id, secret = g.issue_key(daily_cap_usd="5")
    raw = msgspec.json.encode(
        {
            "model": "deadend/gpt-4o-mini",
            "max_tokens": 9,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    r = _post(g, secret, "/v1/chat/completions", raw)
    assert r.status_code == 502
    rec = _record(g, r.headers["x-metis-request-id"])
    assert rec["cost_nanousd"] == 0 and rec["request_count"] == 0
    assert rec["cost_source"] != "estimated" and rec["metadata"] is None
    assert _key_spent(g, key_id) == 0


FALLBACK = """\
schema_version: 1
rules:
  - name: haiku-first
    when: {model: gpt-4o-mini}
    use: anthropic:claude-haiku-4-5
    fallbacks: [openai:gpt-4o-mini]
"""


def test_a_broken_attempt_before_a_fallback_is_recorded_and_capped(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, metis_env: dict[str, str]
) -> None:
    """The first target billed a call it never answered; the fallback answers. Both are in
    the ledger and in the key's cap counter."""
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(FALLBACK)
    g = gateway_factory(simulator.url)
    key_id, secret = g.issue_key(daily_cap_usd="5")
    simulator.set_fault("/v1/messages", "drop", count=1)
    raw = msgspec.json.encode(
        {"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    )
    r = _post(g, secret, "/v1/chat/completions", raw)
    assert r.status_code == 200
    rid = r.headers["x-metis-request-id"]
    g.flush()
    with g.engine.connect() as c:
        rows = {
            x.dedupe_key: x
            for x in c.execute(select(usage_records).where(usage_records.c.request_id == rid))
        }
        (route,) = [
            p if isinstance(p, dict) else msgspec.json.decode(p)
            for (p,) in c.execute(select(events.c.payload).where(events.c.type == "route.decided"))
        ]
    broken, answered = rows[f"{rid}#0"], rows[rid]
    cost = _expected("anthropic", "claude-haiku-4-5", len(raw) + OVERHEAD_TOKENS, 8)
    assert (broken.provider, broken.cost_source, broken.cost_nanousd) == (
        "anthropic",
        "estimated",
        cost,
    )
    assert broken.metadata == {"estimated": True, "estimate_reason": "upstream_disconnected"}
    assert (answered.provider, answered.cost_source, answered.status) == (
        "openai",
        "computed",
        "ok",
    )
    assert _key_spent(g, key_id) == cost + answered.cost_nanousd
    assert route["attempts"][0]["estimate_reason"] == "upstream_disconnected"
    assert route["winner_index"] == 1
    assert sorted(c["provider"] for c in simulator.calls()) == ["anthropic", "openai"]


def test_a_broken_attempt_that_spends_the_cap_stops_the_fallback(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, metis_env: dict[str, str]
) -> None:
    """The broken attempt's estimate is settled before the fallback, which reserves afresh:
    when that estimate used up the cap, the fallback is refused (429) instead of running
    a second worst case past the cap (the overshoot bound holds per request)."""
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(FALLBACK)
    g = gateway_factory(simulator.url)
    raw = msgspec.json.encode(
        {"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    )
    cost = _expected("anthropic", "claude-haiku-4-5", len(raw) + OVERHEAD_TOKENS, 8)
    key_id, secret = g.issue_key(daily_cap_usd=Decimal(cost - 1) / 10**9)  # just under it
    simulator.set_fault("/v1/messages", "drop", count=1)
    r = _post(g, secret, "/v1/chat/completions", raw)
    assert r.status_code == 429, r.text
    assert r.headers["x-should-retry"] == "false"
    rid = r.headers["x-metis-request-id"]
    g.flush()
    with g.engine.connect() as c:
        rows = list(c.execute(select(usage_records).where(usage_records.c.request_id == rid)))
    assert [(x.dedupe_key, x.cost_source, x.cost_nanousd) for x in rows] == [
        (f"{rid}#0", "estimated", cost)
    ]
    assert _key_spent(g, key_id) == cost
    assert [c["provider"] for c in simulator.calls()] == ["anthropic"]  # no second call


def test_reconciliation_replaces_the_estimate_by_the_providers_figure(
    g: GatewayServer,
    simulator: Simulator,
    cli: type[Cli],
    engine: Engine,
    fast_ingest: None,
) -> None:
    """A day the provider's report covers in full: the reconciled total is the provider's
    (the simulator's ground truth), the estimate's excess shows as drift."""
    from metis.gateway import lifecycle
    from metis.ledger.reconcile import reconciled_cells

    # The calls land yesterday (both clocks), so today's sync covers that whole day.
    yesterday = (utcnow() - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lifecycle, "utcnow", lambda: yesterday)
        mp.setattr(simulator.state, "clock", lambda: yesterday.timestamp())
        _, secret = g.issue_key()
        client = g.openai(secret)
        client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "one"}]
        )
        simulator.set_fault("/v1/chat/completions", "drop", count=1)
        raw = msgspec.json.encode(
            {
                "model": "gpt-4o-mini",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "two"}],
            }
        )
        assert _post(g, secret, "/v1/chat/completions", raw).status_code == 502
        g.flush()
    truth = simulator.ground_truth()
    cli.ok("provider-key", "add", "-w", "w", "--provider", "openai", "--purpose", "usage_admin",
           "--base-url", simulator.url, input=simulator.openai_admin_key)  # fmt: skip
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "3")
    day = yesterday.date()
    with engine.connect() as c:
        rows = c.execute(select(usage_records).where(usage_records.c.source == "gateway")).all()
        cells = [
            x
            for x in reconciled_cells(c, day, day + timedelta(days=1))
            if x.provider == "openai" and x.model == "gpt-4o-mini"
        ]
    assert sorted(r.cost_source for r in rows) == ["computed", "estimated"]
    gateway_cost = sum(r.cost_nanousd for r in rows)
    (cell,) = cells
    provider_cost = cell.provider_reported.cost_nanousd
    assert "provider_covered" in cell.flags and "provider_lagging" not in cell.flags
    assert provider_cost == _truth_cost(truth, day)  # the simulator billed both calls
    assert cell.reconciled.cost_nanousd == provider_cost  # the estimate is replaced
    assert gateway_cost > provider_cost  # the estimate was an upper bound
    assert cell.drift.cost_nanousd == gateway_cost - provider_cost and "drift" in cell.flags
    assert cell.reconciled.request_count == 2


def _truth_cost(truth: dict[str, Any], day: Any) -> int:
    """The simulator's billed nano-USD for ``day`` (its ground truth, exact)."""
    return sum(
        int(r["cost_nanousd"])
        for r in truth["rows"]
        if r["day"] == day.isoformat() and r["provider"] == "openai"
    )
