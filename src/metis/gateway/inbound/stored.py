"""Stored OpenAI responses: ``GET`` / ``DELETE /v1/responses/{id}``, ``POST …/{id}/cancel``,
``GET …/{id}/input_items``; and the WebSocket upgrade on ``/v1/responses``.

The lookups are forwarded to the workspace's OpenAI credential with their
query string (e.g. ``?stream=true``, ``include[]``, ``after``) and never
billed: the response was billed when it was created
(`metis.gateway.inbound.responses`), and reading, deleting or cancelling it
costs nothing (`metis.gateway.passthrough`; counted in
``metis_gateway_unbilled_requests_total{endpoint="responses_…"}``). Any
valid key of the workspace may read a stored response whose id it knows, as
the workspace's credential may (ids are unguessable).

A WebSocket upgrade on ``/v1/responses`` (Codex CLI tries one first) is
answered ``426 Upgrade Required``: the one answer after which Codex falls
back to HTTP at once instead of retrying the handshake.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from metis.gateway import http_io
from metis.gateway.http_io import Receive, Send
from metis.gateway.inbound.unknown import unknown
from metis.gateway.lifecycle import request_id
from metis.gateway.passthrough import forward_unbilled

if TYPE_CHECKING:
    from metis.gateway.app import Gateway

PREFIX = "/v1/responses/"
_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_ROUTES = {
    ("GET", ""): "responses_retrieve",
    ("DELETE", ""): "responses_delete",
    ("POST", "cancel"): "responses_cancel",
    ("GET", "input_items"): "responses_input_items",
}


def wants_websocket(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"upgrade", b"").lower() == b"websocket"


async def upgrade_required(send: Send) -> None:
    """``426`` in OpenAI's envelope (the connection closes after it: no upgrade here)."""
    await http_io.error(
        send,
        "openai",
        "upgrade_required",
        "WebSocket is not supported on /v1/responses; use HTTP (POST, SSE streaming)",
        request_id(),
    )


async def stored(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    rest = scope["path"][len(PREFIX) :]
    rid_part, _, sub = rest.partition("/")
    endpoint = _ROUTES.get((scope["method"], sub))
    if endpoint is None or not _ID.fullmatch(rid_part):
        await unknown(scope, receive, send, "openai")
        return
    rid = request_id()
    headers = dict(scope["headers"])
    resolved = await gw.authenticate_key(scope, headers, send, "openai", rid)
    if resolved is None:
        return
    body = b""
    if scope["method"] == "POST":
        raw = await http_io.read_body_or_answer(receive, send, headers, scope, "openai", rid)
        if raw is None:
            return
        body = raw
    await forward_unbilled(
        gw,
        scope,
        send,
        rid=rid,
        workspace_id=resolved.principal.workspace_id,
        shape="openai",
        provider="openai",
        endpoint=endpoint,
        rel=scope["path"][len("/v1") :],
        body=body,
    )
