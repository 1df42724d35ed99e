"""``POST /v1/messages/count_tokens`` through the gateway: forwarded, never billed, counted."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from metis.db.tables import spend_counters, usage_records
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

CLAUDE = "claude-haiku-4-5-20251001"


def counted() -> float:
    v = REGISTRY.get_sample_value(
        "metis_gateway_unbilled_requests_total", {"endpoint": "count_tokens"}
    )
    return v or 0.0


def test_sdk_count_tokens_creates_no_spend(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    g = gateway_factory(simulator.url)
    _, secret = g.issue_key(user="alice", daily_cap_usd="1")
    client = g.anthropic(secret)
    before = counted()
    kw: dict = {
        "model": CLAUDE,
        "system": "terse",
        "messages": [{"role": "user", "content": "how many tokens is this"}],
    }
    n = client.messages.count_tokens(**kw).input_tokens
    beta = client.beta.messages.count_tokens(**kw).input_tokens  # ?beta=true
    assert n == beta > 0
    assert counted() == before + 2
    assert simulator.calls() == []
    g.flush()
    with g.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(usage_records)).scalar_one() == 0
        assert c.execute(select(func.count()).select_from(spend_counters)).scalar_one() == 0
    # The count is what the same messages call is billed for.
    m = client.messages.create(max_tokens=16, **kw)
    assert m.usage.input_tokens == n


def test_query_string_headers_and_refusals(gateway: GatewayServer) -> None:
    from tests.gateway.stub_upstream import Stats

    _, secret = gateway.issue_key(allowed_models=["claude-haiku-4-5"])
    h = {"x-api-key": secret, "anthropic-version": "2023-06-01", "anthropic-beta": "b1"}
    r = httpx.post(
        gateway.url + "/v1/messages/count_tokens?beta=true",
        json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    assert (Stats.last_path, Stats.last_query) == ("/v1/messages/count_tokens", b"beta=true")
    assert Stats.last_headers[b"anthropic-beta"] == b"b1"
    assert Stats.last_headers[b"x-api-key"] != secret.encode()  # the workspace's credential
    r = httpx.post(
        gateway.url + "/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5"}, headers=h
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    r = httpx.post(gateway.url + "/v1/messages/count_tokens", json={"model": "x"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(gateway.url + "/v1/messages/count_tokens", headers=h)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_allowed_under_a_spent_cap(gateway: GatewayServer) -> None:
    """A cap that refuses messages still lets the client count tokens (it costs nothing)."""
    _, secret = gateway.issue_key(daily_cap_usd="0.000001")
    h = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}
    assert httpx.post(gateway.url + "/v1/messages", json=body, headers=h).status_code == 200
    assert httpx.post(gateway.url + "/v1/messages", json=body, headers=h).status_code == 429
    r = httpx.post(gateway.url + "/v1/messages/count_tokens", json=body, headers=h)
    assert r.status_code == 200
