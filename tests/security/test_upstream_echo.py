"""A provider error that echoes the presented key never hands it to a gateway client.

Some OpenAI-compatible servers and proxies answer a rejected call with the
full key they were given ("Incorrect API key provided: sk-…"). The gateway
forwards upstream error bodies to its client, and that client holds only a
``gw_`` key: the workspace's provider key must not reach it.
"""

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from metis.util.server_thread import ServerThread
from tests.plugins.servers import UPSTREAM_SECRETS, GatewayServer

STATUS = {"openai": 401, "anthropic": 500}


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every call with an error quoting the credential it was sent."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = dict(scope["headers"])
    key = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
    status = 500 if scope["path"] == "/v1/messages" else 401
    body = msgspec.json.encode(
        {
            "error": {
                "message": f"Incorrect API key provided: {key.decode()}; header was "
                f"{headers.get(b'authorization', b'').decode()}",
                "type": "invalid_request_error",
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    with ServerThread(_echo_app) as s:
        yield s.url


def test_echoed_provider_key_is_scrubbed(
    gateway_factory: Callable[..., GatewayServer], echo_upstream: str
) -> None:
    g = gateway_factory(echo_upstream)
    _, secret = g.issue_key("echo")
    import httpx

    with httpx.Client(base_url=g.url, timeout=30) as http:
        for path, body in [
            ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
            ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
            ("/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 1, "messages": []}),
        ]:
            r = http.post(path, json=body, headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code >= 400, (path, r.status_code)
            text = r.text + repr(r.headers)
            for upstream_secret in (*UPSTREAM_SECRETS.values(), "sk-ant-test-upstream-0001"):
                assert upstream_secret not in text, (path, text)
            assert "[redacted]" in text, (path, text)  # the message itself still arrives


def test_echoed_provider_key_is_scrubbed_across_shapes(
    gateway_factory: Callable[..., GatewayServer],
    echo_upstream: str,
    metis_env: dict[str, str],
) -> None:
    """An Anthropic-shaped call routed to OpenAI (translated error) is scrubbed too."""
    from pathlib import Path

    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(
        "schema_version: 1\nrules:\n  - name: to-openai\n    when: {inbound_shape: anthropic}\n"
        "    use: openai:gpt-4o-mini\n"
    )
    g = gateway_factory(echo_upstream)
    _, secret = g.issue_key("echo")
    import httpx

    msgs = [{"role": "user", "content": "hi"}]
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 1, "messages": msgs}
    with httpx.Client(base_url=g.url, timeout=30) as http:
        r = http.post("/v1/messages", json=body, headers={"x-api-key": secret})
    assert r.status_code == 401, r.text  # the OpenAI upstream's 401, in the Anthropic shape
    assert UPSTREAM_SECRETS["openai"] not in r.text + repr(r.headers)
    assert "[redacted]" in r.text
