"""Unknown paths and methods under /v1 answer in the inbound shape's envelope; the API's stay."""

from __future__ import annotations

import httpx
import pytest

from tests.plugins.servers import GatewayServer


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/completions"),
        ("GET", "/v1/chat/completions"),
        ("DELETE", "/v1/models"),
        ("POST", "/v1/responses/resp_1/nope"),
        ("GET", "/v1/unknown/deeper"),
    ],
)
def test_openai_envelope(gateway: GatewayServer, method: str, path: str) -> None:
    r = httpx.request(method, gateway.url + path, headers={"authorization": "Bearer gw_x"})
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    assert r.headers["x-metis-request-id"].startswith("req_")


def test_anthropic_envelope_and_sdk_error(gateway: GatewayServer) -> None:
    import anthropic

    r = httpx.post(
        gateway.url + "/v1/messages/batches",
        json={},
        headers={"x-api-key": "gw_x", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 404
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"
    _, secret = gateway.issue_key()
    with pytest.raises(anthropic.NotFoundError) as exc:
        gateway.anthropic(secret).get("/v1/files", cast_to=dict)
    assert exc.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_other_components_keep_their_v1_routes(gateway: GatewayServer) -> None:
    r = httpx.post(gateway.url + "/v1/ingest/usage", json={"items": []})
    assert r.status_code == 401 and "Invalid URL" not in r.text  # the push API's own answer
    r = httpx.get(gateway.url + "/v1/ingest/usage")
    assert r.status_code == 405  # the push API's route, not the gateway's 404
    assert httpx.get(gateway.url + "/nothing-here").status_code == 404  # outside /v1: the API's


def test_websocket_elsewhere_under_v1_is_refused_with_426(gateway: GatewayServer) -> None:
    """A handshake whose connection uvicorn's protocol serves reaches the app as a
    websocket scope; the gateway refuses it over HTTP (426), never a 500 or a hang."""
    import websockets.sync.client
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as exc:
        websockets.sync.client.connect(
            gateway.url.replace("http://", "ws://") + "/v1/realtime", open_timeout=10
        )
    assert exc.value.response.status_code == 426
