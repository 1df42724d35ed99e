"""count_tokens equals the input /v1/messages would bill, and is never billed itself."""

import anthropic
import httpx

from tests.plugins.simulator import Simulator

CLAUDE = "claude-haiku-4-5-20251001"


def test_count_equals_billed_input_and_creates_no_call(simulator: Simulator) -> None:
    c = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key=simulator.anthropic_key, max_retries=0
    )
    kw: dict = {
        "model": CLAUDE,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "count these words please"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    }
    counted = c.messages.count_tokens(**kw).input_tokens
    beta = c.beta.messages.count_tokens(**kw).input_tokens  # POST …/count_tokens?beta=true
    assert simulator.calls() == []  # counting is free
    m = c.messages.create(max_tokens=20, **kw)
    u = m.usage
    billed = (
        u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    )
    assert counted == beta == billed > 0
    assert len(simulator.calls()) == 1
    r = httpx.post(
        simulator.anthropic_base_url + "/v1/messages/count_tokens",
        json={"model": CLAUDE},
        headers={"x-api-key": simulator.anthropic_key, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    c.close()
