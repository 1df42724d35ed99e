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

Prompt caching (stateful, like the real prompt cache): up to 4 ``cache_control``
breakpoints, the longest cached prefix is read, the rest up to the last
breakpoint is written, per-model minimum lengths, 5-minute and 1-hour TTLs;
see `metis.simulator.prompt_cache`. ``POST /_sim/reset`` empties the cache.

Mid-conversation system messages: ``{"role": "system", "content": ...}`` inside
``messages`` (text only, immediately after a user message) is accepted on the
models that support it (Claude Opus 4.8 and later generations; generally
available, no beta header) and refused with a 400 on earlier models, as the
API does (`metis.simulator.catalog.accepts_mid_conversation_system`).

Tool calls: when ``tools`` are given, ``tool_choice`` is not ``{"type": "none"}``
and the last user message (system messages skipped) is not only tool results,
the simulator answers with a ``tool_use`` block (stop_reason ``tool_use``) if
``tool_choice`` is ``any`` or names a tool, or the last text block of that
message says "use tool" / "use a tool" (whole words). It picks the named tool,
else a tool named in that text, else the first tool; its ``input`` is built from
the tool's ``input_schema``.
"""

import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.pricing import has_price
from metis.simulator import catalog, limits, prompt_cache, tokens
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


_blocks = prompt_cache.blocks


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
    last = next((m for m in reversed(body["messages"]) if m.get("role") != "system"), None)
    if last is None:
        return None
    blocks = _blocks(last.get("content"))
    if last.get("role") != "user" or (
        blocks and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
    ):
        return None
    text = catalog.last_text_block(last.get("content"))
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
    if len(messages) > limits.MESSAGES_MAX:
        return _bad(
            f"messages: too many messages: {len(messages)} (at most {limits.MESSAGES_MAX} "
            "per request)"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            return _bad(f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
        if not isinstance(m.get("content"), str | list):
            return _bad(f"messages.{i}.content: Field required")
    if not has_price("anthropic", model):
        return anthropic_error(404, f"model: {model}", type="not_found_error")
    for i, m in enumerate(messages):
        if m["role"] == "system":
            err = _system_message_error(model, messages, i)
            if err is not None:
                return _bad(err)
    return None


def _system_message_error(model: str, messages: list[Any], i: int) -> str | None:
    """Why a mid-conversation ``role: "system"`` message at ``i`` is refused, or None."""
    if not catalog.accepts_mid_conversation_system(model):
        return f"messages.{i}.role: role 'system' is not supported on this model"
    if i == 0 or messages[i - 1].get("role") != "user":
        return f"messages.{i}: a system message must immediately follow a user message"
    content = messages[i]["content"]
    if isinstance(content, list) and not all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in content
    ):
        return f"messages.{i}.content: a system message may contain only text blocks"
    return None


async def messages(request: Request, state: SimState, body: Any) -> Response:
    ident = authenticate(request)
    if isinstance(ident, Response):
        return ident
    err = _validate(body)
    if err is not None:
        return err
    out = answer(
        request,
        state,
        body,
        model=body["model"],
        ledger_provider="anthropic",
        api_key_id=ident.api_key_id,
        workspace_id=ident.workspace_id,
    )
    if isinstance(out, Response):
        return out
    headers = {
        "request-id": "req_01" + out.message["id"][6:],
        "anthropic-organization-id": "sim-org",
    }
    if not body.get("stream"):
        return JSONResponse(out.message, headers=headers)
    resp = SSEResponse([sse_event(name, obj) for name, obj in out.events], headers=headers)
    resp.interval = stream_interval(request.headers)
    return resp


@dataclass
class Answer:
    """One Messages answer: the whole message and its stream events (name, object)."""

    message: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    usage: dict[str, Any]


def answer(
    request: Request,
    state: SimState,
    body: dict[str, Any],
    *,
    model: str,
    ledger_provider: str,
    api_key_id: str,
    workspace_id: str | None,
    ledger_model: str | None = None,
    id_prefix: str = "msg_01",
) -> Answer | Response:
    """Run a validated Messages request: prompt cache, output, the ledger entry (under
    ``ledger_provider`` and ``ledger_model``), and the answer in both forms. ``model`` is
    the Anthropic model whose rules apply (cache minimums, system messages); Bedrock
    records its own model id in the ledger."""
    ts = request_time(request, state)
    try:
        prompt = prompt_cache.parse(body)
    except prompt_cache.CacheRequestError as e:
        return _bad(str(e))
    total = prompt.total_tokens
    scope = tokens.canonical([workspace_id or api_key_id, ledger_model or model])
    cached = state.cache.apply(prompt, scope, model, state.clock())
    read, write_5m, write_1h = cached.read, cached.write_5m, cached.write_1h
    uncached = total - read - write_5m - write_1h
    h = tokens.request_hash(
        state.seed, model, body.get("system"), body["messages"], body.get("tools")
    )
    tool = _pick_tool(body)
    mid = id_prefix + _b62(22)
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
            provider=ledger_provider,
            kind="messages",
            ts=ts,
            api_key_id=api_key_id,
            model=ledger_model or model,
            input_tokens=total,
            cached_input_tokens=read,
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            output_tokens=out,
            workspace_id=workspace_id,
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
    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    whole = dict(message)
    if tool is not None:
        whole["content"] = [
            {"type": "tool_use", "id": tool_id, "name": tool["name"], "input": tool_input}
        ]
    else:
        whole["content"] = [{"type": "text", "text": " ".join(text_words)}]
    whole["stop_reason"] = stop
    whole["usage"] = usage

    start_usage = {**usage, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**message, "usage": start_usage}})
    ]
    if tool is not None:
        events.append(
            (
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
        events.append(("ping", {"type": "ping"}))
        for i in range(0, len(input_json), 16):
            events.append(
                (
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
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        events.append(("ping", {"type": "ping"}))
        for i, w in enumerate(text_words):
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": w if i == 0 else " " + w},
                    },
                )
            )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta_usage = {k: v for k, v in usage.items() if k not in ("cache_creation", "service_tier")}
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return Answer(whole, events, usage)


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
