"""Hostile request bodies against the real gateway (``metis serve``'s app on 127.0.0.1).

Valid chat/messages/embeddings/responses/count_tokens bodies (with the fields
the cap's worst case reads: ``n``, budgets, tools, images, tool results,
``max_tool_calls``) with a few fields replaced by hostile values (wrong types,
huge or negative ``max_tokens``, NaN, deep nesting, unicode), plus bodies
that are not JSON at all, sent with a capped and an uncapped key. The gateway
may refuse (4xx in the inbound shape's envelope) or forward (then whatever
the upstream answers); it never answers 500 itself, and it stays healthy.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.hostile import deep_json_texts, hostile_values, mutated
from tests.fuzz.settings import fuzz_settings
from tests.plugins.servers import GatewayServer

BODIES = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        ],
        "stream": False,
        # what the cap's worst case reads (metis.gateway.inbound.chat.worst_case)
        "n": 2,
        "max_completion_tokens": 40,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "prediction": {"type": "content", "content": "x"},
    },
    "/v1/messages": {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": "r"}],
                    }
                ],
            },
        ],
        "system": [{"type": "text", "text": "s"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
    },
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/responses": {
        "model": "gpt-4o-mini",
        "max_output_tokens": 50,
        "input": [
            {"role": "user", "content": "hi"},
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_text", "text": "o"}],
            },
        ],
        "stream": False,
        "background": False,
        "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]}],
        "max_tool_calls": 2,
    },
    "/v1/messages/count_tokens": {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    },
}


def _encode(body: Any) -> bytes:
    return json.dumps(body, default=str, allow_nan=True).encode("utf-8", "surrogatepass")


requests = st.one_of(
    st.tuples(
        st.sampled_from(sorted(BODIES)),
        st.sampled_from(sorted(BODIES)).flatmap(lambda p: mutated(BODIES[p])).map(_encode),
    ),
    st.tuples(st.sampled_from(sorted(BODIES)), hostile_values.map(_encode)),
    st.tuples(st.sampled_from(sorted(BODIES)), st.binary(max_size=200)),
    st.tuples(st.sampled_from(sorted(BODIES)), deep_json_texts),
)


@pytest.fixture
def keys(gateway: GatewayServer) -> list[str]:
    return [
        gateway.issue_key("free")[1],
        gateway.issue_key("capped", user="u", daily_cap_usd="1")[1],
    ]


def test_hostile_request_bodies(gateway: GatewayServer, keys: list[str]) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        @given(requests, st.sampled_from(keys))
        @fuzz_settings(120, deadline_ms=None)
        def one(req: tuple[str, bytes], key: str) -> None:
            path, body = req
            r = client.post(
                path,
                content=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            assert r.status_code != 500, (path, body[:200], r.text[:300])
            if r.status_code >= 400 and r.status_code < 500:
                err = r.json()["error"]  # the inbound shape's envelope
                assert isinstance(err["message"], str) and err["message"]

        one()
        # still healthy
        ok = client.post(
            "/v1/chat/completions",
            json=copy.deepcopy(BODIES["/v1/chat/completions"]),
            headers={"Authorization": f"Bearer {keys[0]}"},
        )
        assert ok.status_code == 200, ok.text
