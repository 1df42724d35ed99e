"""Anthropic inference: ``POST /v1/messages`` (and ``GET /v1/models`` in Anthropic's shape).

``POST /v1/messages/count_tokens`` is `metis.simulator.anthropic_count_tokens`,
``GET /v1/models/{id}`` `metis.simulator.anthropic_models`.

Shapes follow the Anthropic Messages API reference: the message object, the
streaming event sequence ``message_start``, then per content block
``content_block_start`` / ``content_block_delta``… / ``content_block_stop``
(a ``ping`` after the first block start), ``message_delta`` (stop reason and
cumulative usage) and ``message_stop``; errors in ``{"type": "error", "error": {...}}``.

Usage semantics (Anthropic's, NOT OpenAI's): ``input_tokens`` EXCLUDES cache
reads and cache writes; the total input is ``input_tokens +
cache_read_input_tokens + cache_creation_input_tokens``. ``cache_creation``
splits writes into ``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``.

Cache rule (stateful, like the real prompt cache): the prompt prefix up to the
LAST block carrying ``cache_control`` (tools, then system, then messages) is
the cacheable prefix. If it is at least 1024 tokens, the first request with
that prefix (same workspace, same model) writes it (``cache_creation_input_tokens``,
in the 1h bucket when that block's ``cache_control.ttl`` is ``"1h"``, else 5m)
and later requests within the TTL read it (``cache_read_input_tokens``). Only
the last breakpoint is considered. ``POST /_sim/reset`` empties the cache.

Tool calls: when ``tools`` are given, ``tool_choice`` is not ``{"type": "none"}``
and the last user message is not only tool results, the simulator answers with a
``tool_use`` block (stop_reason ``tool_use``) if ``tool_choice`` is ``any`` or
names a tool, or the last user text contains "use tool" / "use a tool". It picks
the named tool, else a tool named in the text, else the first tool; its
``input`` is built from the tool's ``input_schema``.
"""

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog, tokens
from metis.simulator.http import (
    JSONResponse,
    SSEResponse,
    anthropic_error,
    sse_event,
    stream_interval,
)
from metis.simulator.keys import KeyIdentity, anthropic_identity, is_anthropic_key
from metis.simulator.ledger import Call
from metis.simulator.openai_inference import forced_output, request_time
from metis.simulator.state import SimState

CACHE_MIN_TOKENS = 1024
TTL = {"5m": 300.0, "1h": 3600.0}
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b62(n: int) -> str:
    """``n`` random base-62 characters (Anthropic-style id suffix)."""
    v = int.from_bytes(secrets.token_bytes(n), "big")
    out = []
    for _ in range(n):
        v, r = divmod(v, 62)
        out.append(_B62[r])
    return "".join(out)


def api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: Request) -> KeyIdentity | Response:
    key = api_key(request)
    if key is None:
        return anthropic_error(401, "x-api-key header is required", type="authentication_error")
    if not is_anthropic_key(key):
        return anthropic_error(401, "invalid x-api-key", type="authentication_error")
    if "anthropic-version" not in request.headers:
        return anthropic_error(400, "anthropic-version: header is required")
    return anthropic_identity(key)


def _bad(message: str) -> Response:
    return anthropic_error(400, message)


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def prompt_and_prefix(body: dict[str, Any]) -> tuple[int, int, str, bytes | None]:
    """(total prompt tokens, cacheable prefix tokens, ttl, prefix hash material).

    Walks tools, system blocks, then message blocks in order, counting tokens,
    remembering the running total at the last block with ``cache_control``.
    """
    total = 0
    prefix_tokens = 0
    ttl = "5m"
    prefix_end: tuple[int, int, int] | None = None  # (section, i, j)
    tools: list[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
    for i, t in enumerate(tools):
        total += tokens.block_tokens(t) if isinstance(t, dict) else 0
        if isinstance(t, dict) and isinstance(t.get("cache_control"), dict):
            prefix_tokens, prefix_end = total, (0, i, 0)
            ttl = t["cache_control"].get("ttl", "5m")
    system = _blocks(body.get("system"))
    for i, b in enumerate(system):
        total += tokens.block_tokens(b)
        if isinstance(b, dict) and isinstance(b.get("cache_control"), dict):
            prefix_tokens, prefix_end = total, (1, i, 0)
            ttl = b["cache_control"].get("ttl", "5m")
    for i, m in enumerate(body["messages"]):
        total += 3
        for j, b in enumerate(_blocks(m.get("content"))):
            total += tokens.block_tokens(b)
            if isinstance(b, dict) and isinstance(b.get("cache_control"), dict):
                prefix_tokens, prefix_end = total, (2, i, j)
                ttl = b["cache_control"].get("ttl", "5m")
    if prefix_end is None or prefix_tokens < CACHE_MIN_TOKENS:
        return total, 0, ttl, None
    sec, i, j = prefix_end
    if sec == 0:
        material: Any = [tools[: i + 1]]
    elif sec == 1:
        material = [tools, system[: i + 1]]
    else:
        msgs = body["messages"]
        last = {**msgs[i], "content": _blocks(msgs[i].get("content"))[: j + 1]}
        material = [tools, system, [*msgs[:i], last]]
    return total, prefix_tokens, ttl if ttl in TTL else "5m", tokens.canonical(material)


def _pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [
        t
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("name"), str) and "input_schema" in t
    ]
    if not tools:
        return None
    choice: dict[str, Any] = (
        body["tool_choice"] if isinstance(body.get("tool_choice"), dict) else {}
    )
    if choice.get("type") == "none":
        return None
    last = body["messages"][-1]
    blocks = _blocks(last.get("content"))
    if last.get("role") != "user" or (
        blocks and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
    ):
        return None
    text = catalog.last_text(last.get("content"))
    if choice.get("type") == "tool":
        for t in tools:
            if t["name"] == choice.get("name"):
                return t
    if choice.get("type") in ("any", "tool") or catalog.asks_for_tool(text):
        for t in tools:
            if t["name"] in text:
                return t
        return tools[0]
    return None


def _validate(body: Any, *, need_max_tokens: bool = True) -> Response | None:
    if not isinstance(body, dict):
        return _bad("Invalid request body: expected a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad("model: Field required")
    mt = body.get("max_tokens")
    if need_max_tokens:
        if not isinstance(mt, int) or isinstance(mt, bool):
            return _bad("max_tokens: Field required")
        if mt < 1:
            return _bad("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad(
            "messages: Field required"
            if not isinstance(messages, list)
            else "messages: at least one message is required"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(m.get("content"), str | list):
            return _bad(f"messages.{i}.content: Field required")
    if not has_price("anthropic", model):
        return anthropic_error(404, f"model: {model}", type="not_found_error")
    return None


async def messages(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    err = _validate(body)
    if err is not None:
        return err
    model = body["model"]
    ts = request_time(request, state)
    total, prefix, ttl, material = prompt_and_prefix(body)
    read = write_5m = write_1h = 0
    if material is not None:
        key = tokens.canonical([ident.workspace_id, model]) + material
        if state.cache.lookup_or_store(key, state.clock(), TTL[ttl]):
            read = prefix
        elif ttl == "1h":
            write_1h = prefix
        else:
            write_5m = prefix
    uncached = total - read - write_5m - write_1h
    h = tokens.request_hash(
        state.seed, model, body.get("system"), body["messages"], body.get("tools")
    )
    tool = _pick_tool(body)
    mid = "msg_01" + _b62(22)
    if tool is not None:
        tool_input = catalog.args_from_schema(tool.get("input_schema"))
        input_json = tokens.canonical(tool_input).decode()
        out = tokens.text_tokens(tool["name"]) + tokens.text_tokens(input_json) + 3
        stop = "tool_use"
        tool_id = "toolu_01" + _b62(22)
        text_words: list[str] = []
    else:
        out, truncated = tokens.output_tokens(h, body["max_tokens"], forced_output(request))
        text_words = tokens.words(h, out)
        stop = "max_tokens" if truncated else "end_turn"

    state.ledger.add(
        Call(
            provider="anthropic",
            kind="messages",
            ts=ts,
            api_key_id=ident.api_key_id,
            model=model,
            input_tokens=total,
            cached_input_tokens=read,
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            output_tokens=out,
            workspace_id=ident.workspace_id,
            service_tier="standard",
            response_id=mid,
        )
    )
    usage: dict[str, Any] = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": out,
        "service_tier": "standard",
    }
    headers = {"request-id": "req_01" + mid[6:], "anthropic-organization-id": "sim-org"}
    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if not body.get("stream"):
        if tool is not None:
            message["content"] = [
                {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input}
            ]
        else:
            message["content"] = [{"type": "text", "text": " ".join(text_words)}]
        message["stop_reason"] = stop
        message["usage"] = usage
        return JSONResponse(message, headers=headers)

    start_usage = {**usage, "output_tokens": 1}
    events = [
        sse_event(
            "message_start", {"type": "message_start", "message": {**message, "usage": start_usage}}
        )
    ]
    if tool is not None:
        events.append(
            sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": tool["name"],
                        "input": {},
                    },
                },
            )
        )
        events.append(sse_event("ping", {"type": "ping"}))
        for i in range(0, len(input_json), 16):
            events.append(
                sse_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": input_json[i : i + 16],
                        },
                    },
                )
            )
    else:
        events.append(
            sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        events.append(sse_event("ping", {"type": "ping"}))
        for i, w in enumerate(text_words):
            events.append(
                sse_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": w if i == 0 else " " + w},
                    },
                )
            )
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta_usage = {k: v for k, v in usage.items() if k not in ("cache_creation", "service_tier")}
    events.append(
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    resp = SSEResponse(events, headers=headers)
    resp.interval = stream_interval(request.headers)
    return resp


async def list_models(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    data = [
        {"type": "model", "id": mid, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}
        for mid, name in catalog.ANTHROPIC_MODELS.items()
    ]
    limit = request.query_params.get("limit")
    if limit and limit.isdigit() and 1 <= int(limit) < len(data):
        data, more = data[: int(limit)], True
    else:
        more = False
    return JSONResponse(
        {"data": data, "has_more": more, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    )
