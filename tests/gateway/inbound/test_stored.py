"""Stored responses through the gateway (forwarded, never billed) and the WebSocket answer."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import openai
import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from tests.gateway.inbound.test_responses import records
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


def test_stored_response_lookups_are_forwarded_and_not_billed(
    g: GatewayServer, simulator: Simulator
) -> None:
    _, secret = g.issue_key()
    client = g.openai(secret)
    r = client.responses.create(model="gpt-4o-mini", input="keep this")
    assert client.responses.retrieve(r.id).output_text == r.output_text
    assert [e.type for e in client.responses.retrieve(r.id, stream=True)][-1] == (
        "response.completed"
    )
    assert len(client.responses.input_items.list(r.id).data) == 1
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(r.id)
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    assert list(records(g)) == [r.id]  # one record: the creation
    assert len(simulator.calls()) == 1
    bad = httpx.get(
        g.url + "/v1/responses/..%2F..%2Fv1%2Forganization%2Fcosts",
        headers={"authorization": f"Bearer {secret}"},
    )
    assert bad.status_code == 404 and bad.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(g.url + f"/v1/responses/{r.id}").status_code == 401


def test_websocket_upgrade_is_426_so_codex_falls_back_to_http(g: GatewayServer) -> None:
    """Codex opens ws://…/v1/responses first; only a 426 makes it use HTTP at once."""
    _, secret = g.issue_key()
    ws_url = g.url.replace("http://", "ws://") + "/v1/responses"
    with pytest.raises(InvalidStatus) as exc:
        websockets.sync.client.connect(
            ws_url, additional_headers={"authorization": f"Bearer {secret}"}, open_timeout=10
        )
    assert exc.value.response.status_code == 426
    # The same on a raw connection: an HTTP answer, in OpenAI's envelope, then the close.
    with socket.create_connection(("127.0.0.1", int(g.url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"GET /v1/responses HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\n"
            b"upgrade: websocket\r\nsec-websocket-version: 13\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 426") and b'"code":"upgrade_required"' in body
    # A plain GET (no upgrade) is an unknown route, not a 426.
    r = httpx.get(g.url + "/v1/responses", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
