"""The shared call lifecycle: cap refusals clients do not retry, relayed upstream retry hints,
and what of the client's request reaches the provider."""

from __future__ import annotations

import math
from datetime import timedelta

import anthropic
import httpx
import openai
import pytest

from metis.timeutil import utcnow
from tests.plugins.servers import GatewayServer


def _spend_the_cap(g: GatewayServer, secret: str) -> None:
    """One call is admitted (the cap has headroom), the next finds it spent."""
    h = {"authorization": f"Bearer {secret}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(g.url + "/v1/chat/completions", json=body, headers=h).status_code == 200
    assert httpx.post(g.url + "/v1/chat/completions", json=body, headers=h).status_code == 429


def test_sdks_stop_at_the_first_cap_refusal(gateway: GatewayServer) -> None:
    """With their default retries (2), both SDKs send one request: x-should-retry: false."""
    _, secret = gateway.issue_key(daily_cap_usd="0.000001")
    _spend_the_cap(gateway, secret)
    stats = gateway.gw.stats
    oa = openai.OpenAI(api_key=secret, base_url=gateway.url + "/v1")  # default max_retries
    an = anthropic.Anthropic(api_key=secret, base_url=gateway.url)
    assert oa.max_retries == an.max_retries == 2
    try:
        before = (stats.requests, stats.quota_rejections)
        with pytest.raises(openai.RateLimitError) as oe:
            oa.responses.create(model="gpt-4o-mini", input="hi")
        assert (stats.requests, stats.quota_rejections) == (before[0] + 1, before[1] + 1)
        with pytest.raises(anthropic.RateLimitError) as ae:
            an.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert (stats.requests, stats.quota_rejections) == (before[0] + 2, before[1] + 2)
    finally:
        oa.close()
        an.close()
    midnight = (utcnow() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    for resp in (oe.value.response, ae.value.response):
        assert resp.headers["x-should-retry"] == "false"
        wait = int(resp.headers["retry-after"])
        assert 1 <= wait <= math.ceil((midnight - utcnow()).total_seconds()) + 1
    err = oe.value.body
    assert err["code"] == "insufficient_quota" and err["scope"] == "key_daily"  # type: ignore[index]


def test_upstream_429_retry_after_reaches_the_client(gateway: GatewayServer) -> None:
    _, secret = gateway.issue_key()
    for path, body in (
        ("/v1/responses", {"model": "fail-429", "input": "x"}),
        ("/v1/chat/completions", {"model": "fail-429", "messages": []}),
        ("/v1/messages", {"model": "fail-429", "max_tokens": 5, "messages": []}),
    ):
        r = httpx.post(gateway.url + path, json=body, headers={"authorization": f"Bearer {secret}"})
        assert r.status_code == 429 and r.headers["retry-after"] == "7", path
        assert r.json()["error"]["message"] == "boom"


def test_query_string_and_client_headers_that_reach_the_provider(gateway: GatewayServer) -> None:
    from tests.gateway.stub_upstream import Stats

    _, secret = gateway.issue_key()
    r = httpx.post(
        gateway.url + "/v1/responses?api-version=x&trace=1",
        json={"model": "gpt-4o-mini", "input": "hi"},
        headers={
            "authorization": f"Bearer {secret}",
            "openai-beta": "responses=experimental",
            "openai-organization": "org-someone-else",
            "openai-project": "proj_someone_else",
            "x-custom": "nope",
        },
    )
    assert r.status_code == 200
    assert Stats.last_query == b"api-version=x&trace=1"
    h = Stats.last_headers
    assert h[b"openai-beta"] == b"responses=experimental"
    assert b"openai-organization" not in h and b"openai-project" not in h
    assert b"x-custom" not in h
    assert h[b"authorization"] == b"Bearer sk-test-openai-upstream-0001"  # the workspace's key
    r = httpx.post(
        gateway.url + "/v1/messages?beta=true",
        json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []},
        headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 200 and Stats.last_query == b"beta=true"


def test_only_a_request_that_reached_the_upstream_counts_as_sent() -> None:
    """Issue 19 item 5: a sent request may be billed (estimated); an unsent one is not."""
    from metis.gateway.http_client import (
        ConnectFailed,
        InvalidResponse,
        ProxyError,
        ServerDisconnected,
        UpstreamError,
    )
    from metis.gateway.lifecycle import broken_attempt, was_sent

    sent = [TimeoutError(), ServerDisconnected("x"), InvalidResponse("x")]
    unsent = [ConnectFailed("x"), ProxyError("x"), UpstreamError("header 'a' is not Latin-1")]
    assert [was_sent(e) for e in sent] == [True, True, True]
    assert [was_sent(e) for e in unsent] == [False, False, False]
    t = broken_attempt(TimeoutError(), sent=True)
    assert (t.status, t.http_status, t.estimate) == ("timeout", 504, "upstream_timeout")
    d = broken_attempt(ServerDisconnected("x"), sent=True)
    assert (d.http_status, d.estimate) == (502, "upstream_disconnected")
    assert broken_attempt(ConnectFailed("x"), sent=False).estimate is None
