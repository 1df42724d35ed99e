"""The gateway's cross-shape attempt: forward a request to a provider of the other shape.

Installed as ``Gateway.cross_shape`` (see `metis.gateway.plan`). For one
target it:

1. translates the inbound body (`requests`) into the target family's wire
   shape (`metis.gateway.upstreams`: OpenAI for OpenAI, OpenAI-compatible
   and Azure upstreams; Anthropic for Anthropic and Bedrock); a feature the
   target cannot express answers **400** in the inbound shape naming it (no
   upstream call, no fallback: another candidate would not make the request
   meaningful);
2. posts it to the target's endpoint with the workspace's ``inference``
   credential *for that provider*, as its family builds the request (Bedrock
   turns the Anthropic body into InvokeModel or Converse and its answers back);
3. on 429/5xx/connection errors/timeouts returns a retryable, unanswered
   attempt so the gateway moves on to the next candidate (the error body is
   re-shaped for the client in case it is the last); other 4xx are answered
   at once, re-shaped;
4. translates the answer back — whole bodies via `responses`, streams event
   by event via `stream` — while accounting reads the *upstream's* own usage
   (the gateway's `SSEUsageTap` / usage parsers), so the usage record is
   priced against the provider and model that actually answered.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from metis.gateway import upstream
from metis.gateway.http_client import Response, UpstreamError
from metis.gateway.lifecycle import broken_attempt, relayed_headers, was_sent
from metis.gateway.translate.errors import TranslationError
from metis.gateway.translate.errors_shape import reshape_error, stream_error_frame
from metis.gateway.translate.requests import (
    anthropic_to_openai_request,
    openai_to_anthropic_request,
)
from metis.gateway.translate.responses import (
    anthropic_to_openai_response,
    openai_to_anthropic_response,
)
from metis.gateway.translate.stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from metis.gateway.upstream import scrub_secret
from metis.gateway.upstreams import family_of
from metis.gateway.upstreams.base import Outgoing
from metis.jsonutil import DECODE_ERRORS

if TYPE_CHECKING:
    from metis.gateway.app import Gateway
    from metis.gateway.lifecycle import Attempt, Call

WIRE_API = {"anthropic": "messages", "openai": "chat"}
"""The API of each translatable wire shape a translated request is sent to."""
_JSON = (b"content-type", b"application/json")

_UPSTREAM_BODY_ERRORS: tuple[type[Exception], ...] = (*DECODE_ERRORS, TranslationError)


def _answered(status: str, http_status: int, retryable: bool = False) -> Attempt:
    """A response (success or final error) reached the client: stop trying candidates."""
    from metis.gateway.lifecycle import Attempt

    return Attempt(answered=True, status=status, http_status=http_status, retryable=retryable)


def _failed(
    status: str,
    http_status: int,
    error_kind: str | None,
    message: str = "",
    body: bytes | None = None,
) -> Attempt:
    """Nothing reached the client; the gateway tries the next candidate (or answers this)."""
    from metis.gateway.lifecycle import Attempt

    return Attempt(
        answered=False,
        status=status,
        http_status=http_status,
        retryable=True,
        error_kind=error_kind,
        message=message,
        upstream_body=body,
        upstream_ctype=b"application/json" if body is not None else None,
    )


def translate_request(call: Call, target: Any, wire: str) -> bytes:
    """The upstream body for ``target`` of ``wire`` shape; raises `TranslationError` on a
    bad/unsupported body."""
    try:
        body = msgspec.json.decode(call.raw)
    except DECODE_ERRORS:
        raise TranslationError("body must be a JSON object", field="body") from None
    if wire == "anthropic":
        out = openai_to_anthropic_request(body, target.model)
    else:
        out = anthropic_to_openai_request(body, target.model)
    return msgspec.json.encode(out)


async def cross_shape(
    gw: Gateway, send: Any, receive: Any, call: Call, target: Any, is_last: bool
) -> Attempt:
    """One attempt at ``target`` whose provider speaks the other shape than the client."""
    from metis.gateway.usage import Tokens

    provider = target.provider
    name = f"{provider}:{target.model}"
    cred = await gw.creds.get(call.resolved.principal.workspace_id, provider)
    if cred is None:
        return _failed(
            "no_credential", 502, "upstream_error",
            f"workspace has no {provider} credential with purpose inference",
        )  # fmt: skip
    fam = family_of(cred.family)
    wire = fam.wire
    if (
        not call.api.translatable
        or wire not in WIRE_API
        or call.shape not in WIRE_API
        or WIRE_API[wire] not in fam.apis
    ):
        return _failed(
            "unsupported_target", 502, "upstream_error",
            f"{name} ({cred.family}) cannot serve a {call.shape} {call.endpoint} request "
            "(no translation between these APIs)",
        )  # fmt: skip
    try:
        body = translate_request(call, target, wire)
    except TranslationError as exc:
        status = await gw._error(send, call.shape, "invalid_request", exc.message, call.request_id)
        return _answered("invalid_request", status)
    assert gw.session is not None
    try:
        out = fam.request(cred, call, WIRE_API[wire], target.model, body)
    except TranslationError as exc:
        status = await gw._error(send, call.shape, "invalid_request", exc.message, call.request_id)
        return _answered("invalid_request", status)
    try:
        resp = await gw.session.post(
            out.url, out.body, out.headers, timeout=upstream.READ_TIMEOUT_S
        )
    except (TimeoutError, UpstreamError) as e:  # sent (billed, estimated) unless never connected
        return broken_attempt(e, sent=was_sent(e))
    try:
        if resp.status >= 400:
            if resp.status == 401:
                gw.creds.invalidate(call.resolved.principal.workspace_id, provider)
            try:
                data = scrub_secret(await resp.read(), cred)
            except (TimeoutError, UpstreamError):
                data = b""
            if out.adapter is not None:
                data = fam.error_body(resp.status, resp.headers, data)
            shaped = reshape_error(data, resp.status, call.shape, name)
            retryable = resp.status == 429 or resp.status >= 500
            relayed = relayed_headers(resp)  # retry-after & co. mean the same in both shapes
            if retryable and not is_last:
                failed = _failed("upstream_error", resp.status, None, "", shaped)
                failed.upstream_headers = relayed
                return failed
            await gw._respond(send, resp.status, shaped, call.request_id, extra=relayed)
            gw.stats.upstream_errors += 1
            gw._stamp(
                call, provider, target.model, None, Tokens(), None, "upstream_error", resp.status
            )
            return _answered("upstream_error", resp.status, retryable)
        if call.stream:
            return await _stream(gw, send, receive, call, target, resp, cred.api_root, wire, out)
        return await _plain(gw, send, call, target, resp, cred.api_root, wire, out)
    finally:
        resp.release()


async def _plain(
    gw: Gateway,
    send: Any,
    call: Call,
    target: Any,
    resp: Response,
    api_root: str,
    wire: str,
    req: Outgoing,
) -> Attempt:
    from metis.gateway.usage import Tokens, from_anthropic, from_openai

    try:
        data = await resp.read()
    except (TimeoutError, UpstreamError) as e:  # a 2xx head, then the body broke
        return broken_attempt(e, sent=True)
    if req.adapter is not None:
        data = req.adapter.plain(data, resp.headers)
    tokens = Tokens()
    try:
        doc: Any = msgspec.json.decode(data)
        if not isinstance(doc, dict):
            raise TranslationError("upstream response is not an object")
        if wire == "anthropic":
            from_anthropic(doc.get("usage"), tokens)
            out = anthropic_to_openai_response(doc)
        else:
            from_openai(doc.get("usage"), tokens)
            out = openai_to_anthropic_response(doc)
    except _UPSTREAM_BODY_ERRORS as exc:
        msg = exc.message if isinstance(exc, TranslationError) else "not JSON"
        status = await gw._error(
            send, call.shape, "upstream_error",
            f"{target.provider}:{target.model} answered a malformed response: {msg}",
            call.request_id,
        )  # fmt: skip
        gw._stamp(
            call, target.provider, target.model, None, tokens, None, "upstream_error", status,
            estimate=None if tokens.reported else "truncated_body",  # a 2xx whose usage is unread
        )  # fmt: skip
        return _answered("upstream_error", status)
    await gw._respond(send, resp.status, msgspec.json.encode(out), call.request_id)
    rid_up = doc.get("id") if isinstance(doc.get("id"), str) else None
    model = doc.get("model") if isinstance(doc.get("model"), str) else None
    gw._stamp(
        call, target.provider, target.model, model, tokens, rid_up, "ok", resp.status, api_root
    )
    return _answered("ok", resp.status)


async def _stream(
    gw: Gateway,
    send: Any,
    receive: Any,
    call: Call,
    target: Any,
    resp: Response,
    api_root: str,
    wire: str,
    req: Outgoing,
) -> Attempt:
    from metis.gateway.streaming import SSEUsageTap

    name = f"{target.provider}:{target.model}"
    adapter = req.adapter.stream(resp.headers) if req.adapter is not None else None
    tr: AnthropicToOpenAIStream | OpenAIToAnthropicStream
    if wire == "anthropic":
        so = call.req.stream_options
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        tr = AnthropicToOpenAIStream(include_usage=include_usage, created=int(time.time()))
    else:
        tr = OpenAIToAnthropicStream()
    tap = SSEUsageTap(wire)  # accounting from the upstream's own events
    await send(
        {
            "type": "http.response.start",
            "status": resp.status,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-metis-request-id", call.request_id.encode()),
            ],
        }
    )
    gone = asyncio.Event()

    async def watch() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone.set()
                return

    watcher = asyncio.create_task(watch())
    status = "ok"
    out = b""
    try:
        async for raw in resp.iter_any():
            chunk = adapter.feed(raw) if adapter is not None else raw
            tap.feed(chunk)
            if status != "ok":
                continue  # keep reading for usage; the client stream already ended
            try:
                out = tr.feed(chunk)
            except TranslationError as exc:
                status = "upstream_error"
                out = stream_error_frame(call.shape, f"{name}: {exc.message}")
            if out and not gone.is_set():
                await send({"type": "http.response.body", "body": out, "more_body": True})
        rest = adapter.close() if adapter is not None else b""
        tap.feed(rest)
        tap.flush()
        out = b""
        if status == "ok":
            try:
                out = tr.feed(rest) + tr.close()
            except TranslationError as exc:
                status = "upstream_error"
                out = stream_error_frame(call.shape, f"{name}: {exc.message}")
            if status == "ok" and not tr.done:
                status = "upstream_error"  # the upstream ended without its final event
    except (TimeoutError, UpstreamError):
        status = "upstream_error"
        tap.flush()
        out = stream_error_frame(call.shape, f"{name}: upstream stream interrupted")
    finally:
        watcher.cancel()
    if gone.is_set():
        status = "client_disconnected"
    else:
        await send({"type": "http.response.body", "body": out, "more_body": False})
    # Cut (or broken) before the upstream's final usage event: billed, usage unknown.
    cut = status != "ok" and not tap.final
    gw._stamp(
        call, target.provider, target.model, tap.model, tap.tokens, tap.response_id,
        status, resp.status, api_root, estimate="stream_cut" if cut else None,
    )  # fmt: skip
    return _answered(status, resp.status)
