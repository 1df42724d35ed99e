"""Streaming: a client that disconnects mid-stream still leaves its usage record."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from metis.gateway.streaming import SSEUsageTap
from tests.gateway.stub_upstream import Stats
from tests.plugins.servers import GatewayServer


def _wait_record(g: GatewayServer) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        g.flush()
        with g.engine.connect() as c:
            rows = [dict(r) for r in c.execute(select(usage_records)).mappings()]
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError("no usage record")


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_client_disconnect_mid_stream_records_upstream_usage(
    gateway: GatewayServer, shape: str
) -> None:
    _, secret = gateway.issue_key()
    before = Stats.stream_finished
    if shape == "openai":
        url, headers = "/v1/chat/completions", {"authorization": f"Bearer {secret}"}
        body = {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "SLOW please"}],
        }
    else:
        url, headers = "/v1/messages", {"x-api-key": secret, "anthropic-version": "2023-06-01"}
        body = {
            "model": "claude-haiku-4-5",
            "stream": True,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "SLOW please"}],
        }
    with (
        httpx.Client(timeout=10) as c,
        c.stream("POST", gateway.url + url, json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        for _ in r.iter_bytes():
            break  # got the first bytes; hang up
    rec = _wait_record(gateway)
    assert Stats.stream_finished == before + 1  # the upstream finished its stream
    assert rec["status"] == "client_disconnected"
    assert rec["output_tokens"] == 50  # what the upstream reported at the end
    assert rec["input_tokens"] > 0 and rec["cost_nanousd"] > 0


def test_tap_withholds_only_the_usage_chunk() -> None:
    tap = SSEUsageTap("openai", withhold_usage_chunk=True)
    a = b'data: {"id":"c1","model":"m","choices":[{"delta":{"content":"x"}}],"usage":null}\n\n'
    u = (
        b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,'
        b'"prompt_tokens_details":{"cached_tokens":3}}}\n\n'
    )
    done = b"data: [DONE]\n\n"
    out = tap.feed(a[:10]) + tap.feed(a[10:] + u[:20]) + tap.feed(u[20:] + done) + tap.flush()
    assert out == a + done
    assert (tap.tokens.input, tap.tokens.output, tap.tokens.cached) == (7, 2, 3)
    assert tap.response_id == "c1"


def test_tap_anthropic_usage_is_canonical() -> None:
    tap = SSEUsageTap("anthropic")
    s = (
        b'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"model":"claude","usage":{"input_tokens":5,"cache_read_input_tokens":10,'
        b'"cache_creation_input_tokens":2,"output_tokens":1}}}\r\n\r\n'
        b'event: message_delta\r\ndata: {"type":"message_delta","usage":{"output_tokens":9}}'
        b"\r\n\r\n"
    )
    assert tap.feed(s[:50]) + tap.feed(s[50:]) + tap.flush() == s  # bytes pass unchanged
    t = tap.tokens
    assert (t.input, t.cached, t.cache_creation, t.output) == (17, 10, 2, 9)
