"""``POST /v1/messages/count_tokens`` (Anthropic; ``?beta=true`` too): forwarded, never billed.

Counting tokens costs nothing at Anthropic, so it creates no usage record,
reserves nothing and is allowed under a spent cap; without it Claude Code
replaces each count with a billed ``max_tokens: 1`` call. The key must be
valid and the model allowed for it (403 otherwise, as for ``/v1/messages``);
the body, query string and ``anthropic-version`` / ``anthropic-beta`` go
upstream as sent (`metis.gateway.passthrough`). Counted in
``metis_gateway_unbilled_requests_total{endpoint="count_tokens"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from metis.gateway import http_io
from metis.gateway.http_io import Receive, Send
from metis.gateway.inbound.unknown import unknown
from metis.gateway.lifecycle import BODY_ERRORS, request_id
from metis.gateway.passthrough import forward_unbilled

if TYPE_CHECKING:
    from metis.gateway.app import Gateway

PATH = "/v1/messages/count_tokens"


class _Req(msgspec.Struct):
    model: Any = None


_dec = msgspec.json.Decoder(_Req)


async def count_tokens(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        await unknown(scope, receive, send, "anthropic")
        return
    rid = request_id()
    headers = dict(scope["headers"])
    resolved = await gw.authenticate_key(scope, headers, send, "anthropic", rid)
    if resolved is None:
        return
    raw = await http_io.read_body_or_answer(receive, send, headers, scope, "anthropic", rid)
    if raw is None:
        return
    try:
        model = _dec.decode(raw).model
    except BODY_ERRORS:
        await http_io.error(send, "anthropic", "invalid_request", "body must be a JSON object", rid)
        return
    if not isinstance(model, str) or not model:
        await http_io.error(send, "anthropic", "invalid_request", "'model' is required", rid)
        return
    allowed = resolved.snapshot.allowed_models
    if allowed is not None and model not in allowed:
        await http_io.error(
            send,
            "anthropic",
            "permission_error",
            f"model {model!r} is not allowed for this key",
            rid,
        )
        return
    await forward_unbilled(
        gw,
        scope,
        send,
        rid=rid,
        workspace_id=resolved.principal.workspace_id,
        shape="anthropic",
        provider="anthropic",
        endpoint="count_tokens",
        rel="/messages/count_tokens",
        body=raw,
    )
