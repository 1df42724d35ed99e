"""Google's Gemini API as an inbound shape: ``google-genai`` SDK clients and Gemini CLI.

A client points its base URL at the gateway (``http_options.base_url`` /
``GOOGLE_GEMINI_BASE_URL``) with a ``gw_`` key as its API key (sent as
``x-goog-api-key``). Routes, for API versions ``v1beta`` and ``v1``:

- ``POST /{version}/models/{model}:generateContent`` and
  ``:streamGenerateContent`` (``?alt=sse`` or a streamed JSON array): billed,
  through the shared lifecycle (`GENERATE`); the model is in the path
  (``models/groq-free/…`` is not a thing: ``{provider}/{model}`` addresses
  another of the workspace's Gemini-family providers, e.g.
  ``gemini-eu/gemini-2.5-flash``), the stream flag is the action;
- ``POST /{version}/models/{model}:countTokens``: forwarded, never billed
  (counting is free at Google), allowed under a spent cap;
- ``GET /{version}/models`` and ``GET /{version}/models/{model}``: the
  provider's own answers (unbilled), the list filtered by the key's
  ``allowed_models``.

Usage: ``usageMetadata`` of the answer, or of the stream's last chunk
(`metis.gateway.usage.from_gemini`). Worst case for the cap reservation
(`worst_case`, `metis.gateway.worst_case`): ``generationConfig.maxOutputTokens``
plus ``thinkingConfig.thinkingBudget`` (thoughts are billed as output) for each
of ``candidateCount`` candidates, or the model's maximum output when
``maxOutputTokens`` is absent; input is context-bound when the request refers to
content not in its body (``fileData``, ``cachedContent``) or enables Google's
server-side tools (search, URL context, code execution), which also run up to
`metis.gateway.worst_case.SERVER_TOOL_ROUNDS` model rounds. Errors in Google's
envelope (``{"error": {"code", "message", "status"}}``, `metis.gateway.shapes`).
The default provider is the workspace's ``gemini`` credential
(`metis.gateway.upstreams.gemini`); other families are not reached from this
shape (no translation to or from Gemini's API: OpenAI and Anthropic clients
reach Gemini models through Google's OpenAI-compatible endpoint, the
``gemini-openai`` provider preset).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from metis.gateway import http_io, metrics
from metis.gateway.http_io import Receive, Send
from metis.gateway.inbound.base import InboundAPI, positive_int
from metis.gateway.inbound.unknown import unknown
from metis.gateway.lifecycle import BODY_ERRORS, request_id
from metis.gateway.passthrough import fetch, forward_unbilled, no_credential
from metis.gateway.upstreams.catalog import split_address
from metis.gateway.usage import Tokens, from_gemini
from metis.gateway.worst_case import SERVER_TOOL_ROUNDS, WorstCase

if TYPE_CHECKING:
    from metis.gateway.app import Gateway

PROVIDER = "gemini"
VERSIONS = ("v1beta", "v1")
PREFIXES = tuple(f"/{v}/models/" for v in VERSIONS)
BILLED_ACTIONS = ("generateContent", "streamGenerateContent")


class GenerateRequest(msgspec.Struct):
    """The fields the gateway reads; model, version and stream flag come from the path."""

    generationConfig: Any = None
    model: Any = None
    stream: Any = None
    api_version: Any = None


class _Answer(msgspec.Struct):
    responseId: Any = None
    modelVersion: Any = None
    usageMetadata: Any = None


_dec_answer = msgspec.json.Decoder(_Answer, float_hook=Decimal)
_LIST_ERRORS: tuple[type[Exception], ...] = (*BODY_ERRORS, AttributeError, TypeError)


def split_path(path: str) -> tuple[str, str, str] | None:
    """(version, model, action) of ``/{version}/models/{model}:{action}``, else None."""
    for v, prefix in zip(VERSIONS, PREFIXES, strict=True):
        if path.startswith(prefix):
            model, sep, action = path[len(prefix) :].rpartition(":")
            if sep and model and action:
                return v, model, action
    return None


def _bind(req: GenerateRequest, path: str) -> str | None:
    parts = split_path(path)
    if parts is None or parts[2] not in BILLED_ACTIONS:
        return f"Method not found: {path}"
    req.api_version, req.model, action = parts
    req.stream = action == "streamGenerateContent"
    return None


_FUNCTION_TOOL_KEYS = {"functionDeclarations", "function_declarations"}


def _media(value: Any) -> tuple[int, bool]:
    """(inline images, whether anything is not bounded by the body) in decoded contents.

    An inline image counts as an image (Google bills it by tiles, not by its bytes: a
    tiny image costs 258 tokens or more); other inline media (PDF pages, audio, video
    seconds) and ``fileData`` parts (content not in the body) make the input context
    bound."""
    images, unbounded = 0, False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if "fileData" in v or "file_data" in v:
                unbounded = True
            inline = v.get("inlineData", v.get("inline_data"))
            if isinstance(inline, dict):
                mime = inline.get("mimeType", inline.get("mime_type"))
                if isinstance(mime, str) and mime.lower().startswith("image/"):
                    images += 1
                else:
                    unbounded = True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return images, unbounded


def worst_case(req: GenerateRequest, raw: bytes) -> WorstCase:
    """What a ``generateContent`` request can make Google bill (see the module docstring)."""
    try:  # from the body alone, as every shape's worst case (callers may pass no req)
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return WorstCase(context_bound=True)
    if not isinstance(body, dict):
        return WorstCase(context_bound=True)
    gc = body.get("generationConfig")
    if not isinstance(gc, dict):
        gc = {}
    out = positive_int(gc.get("maxOutputTokens"))
    tc = gc.get("thinkingConfig")
    thinking = positive_int(tc.get("thinkingBudget")) if isinstance(tc, dict) else None
    n = positive_int(gc.get("candidateCount")) or 1
    found = body.get("tools")
    tools: list[Any] = found if isinstance(found, list) else []
    # Anything but function declarations is a tool Google runs itself (search, URL
    # context, code execution): more model rounds, input the body does not bound.
    server = any(not isinstance(t, dict) or set(t) - _FUNCTION_TOOL_KEYS for t in tools)
    images, unbounded = _media([body.get("contents"), body.get("systemInstruction")])
    return WorstCase(
        output_budget=None if out is None else out + (thinking or 0),
        choices=n,
        images=images,
        context_bound=server or unbounded or "cachedContent" in body,
        rounds=SERVER_TOOL_ROUNDS if server else 1,
        tools=len(tools),
    )


def _body_as_sent(req: GenerateRequest, raw: bytes, target_model: str) -> tuple[bytes, bool]:
    """The body unchanged: Gemini names the model in the path (the upstream builds it from
    the target), so a routed or ``provider/model`` address never adds a body field."""
    return raw, False


def read_answer(data: bytes, tokens: Tokens) -> tuple[str | None, str | None]:
    a = _dec_answer.decode(data)
    from_gemini(a.usageMetadata, tokens)
    rid = a.responseId if isinstance(a.responseId, str) and a.responseId else None
    model = a.modelVersion if isinstance(a.modelVersion, str) and a.modelVersion else None
    return rid, model


GENERATE = InboundAPI(
    name="generate",
    shape="gemini",
    path="/v1beta/models/",
    decoder=msgspec.json.Decoder(GenerateRequest),
    streams=lambda req: req.stream is True,
    worst_case=worst_case,
    usage=from_gemini,
    tap="gemini",
    bind=_bind,
    answer=read_answer,
    prepare=_body_as_sent,
)


async def route(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Everything under ``/{version}/models/`` a Gemini client sends."""
    parts = split_path(scope["path"])
    if scope["method"] == "POST" and parts is not None:
        if parts[2] in BILLED_ACTIONS:
            await gw.handle(scope, receive, send, GENERATE)
        elif parts[2] == "countTokens":
            await count_tokens(gw, scope, receive, send, parts)
        else:
            await unknown(scope, receive, send, "gemini")
        return
    if scope["method"] in ("GET", "HEAD"):
        await models(gw, scope, receive, send)
        return
    await unknown(scope, receive, send, "gemini")


def _target(gw: Gateway, workspace_id: str, model: str) -> tuple[str, str]:
    addr = split_address(model)
    if addr is not None and addr[0] in gw.providers.of(workspace_id):
        return addr
    return PROVIDER, model


async def count_tokens(
    gw: Gateway,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    parts: tuple[str, str, str],
) -> None:
    rid = request_id()
    headers = dict(scope["headers"])
    resolved = await gw.authenticate_key(scope, headers, send, "gemini", rid)
    if resolved is None:
        return
    raw = await http_io.read_body_or_answer(receive, send, headers, scope, "gemini", rid)
    if raw is None:
        return
    try:
        msgspec.json.decode(raw)
    except BODY_ERRORS:
        await http_io.error(send, "gemini", "invalid_request", "body must be a JSON object", rid)
        return
    version, model, _ = parts
    allowed = resolved.snapshot.allowed_models
    if allowed is not None and model not in allowed:
        await http_io.error(
            send, "gemini", "permission_error", f"model {model!r} is not allowed for this key", rid
        )
        return
    provider, upstream_model = _target(gw, resolved.principal.workspace_id, model)
    await forward_unbilled(
        gw,
        scope,
        send,
        rid=rid,
        workspace_id=resolved.principal.workspace_id,
        shape="gemini",
        provider=provider,
        endpoint="count_tokens",
        rel=f"/{version}/models/{quote(upstream_model, safe='')}:countTokens",
        body=raw,
    )


async def models(gw: Gateway, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``GET /{version}/models[/{model}]``: the Gemini credential's answer (unbilled), the
    list without the models the key may not call."""
    rid = request_id()
    headers = dict(scope["headers"])
    resolved = await gw.authenticate_key(scope, headers, send, "gemini", rid)
    if resolved is None:
        return
    metrics.UNBILLED.labels("models").inc()
    ws = resolved.principal.workspace_id
    path = scope["path"]
    version = path.split("/", 2)[1]
    one = path.rstrip("/").count("/") >= 3
    allowed = resolved.snapshot.allowed_models
    model = path.rsplit("/", 1)[1] if one else ""
    if one and allowed is not None and model not in allowed:
        await http_io.error(send, "gemini", "not_found", f"models/{model} is not found", rid)
        return
    cred = await gw.creds.get(ws, PROVIDER)
    if cred is None:
        await no_credential(send, "gemini", PROVIDER, rid)
        return
    rel = f"/{version}/models" + (f"/{quote(model, safe='')}" if one else "")
    got = await fetch(gw, cred, "GET", rel, scope.get("query_string", b""), headers)
    if isinstance(got, tuple):
        await http_io.error(send, "gemini", got[0], got[1], rid)
        return
    body = got.body
    if not one and got.status == 200 and allowed is not None:
        try:
            doc = msgspec.json.decode(body)
            doc["models"] = [
                m
                for m in doc.get("models") or []
                if str(m.get("name", "")).removeprefix("models/") in allowed
            ]
            body = msgspec.json.encode(doc)
        except _LIST_ERRORS:
            await http_io.error(
                send, "gemini", "upstream_error", "the provider's model list is not JSON", rid
            )
            return
    await http_io.respond(
        send, got.status, body, rid, (b"content-type", got.ctype.encode()), got.headers
    )
