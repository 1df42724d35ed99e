"""A minimal, fast OpenAI + Anthropic upstream (raw ASGI) for gateway tests and benchmarks.

Deterministic usage: input tokens = request body bytes // 10 (+ fixed cache
counts when the prompt contains "CACHE"), output = min(max_tokens, 5) (chat:
``max_completion_tokens`` too; Responses API: ``max_output_tokens``). The
streaming responses follow each provider's SSE format, including OpenAI's
final usage chunk when ``stream_options.include_usage`` is set and the
Responses API's event sequence through ``response.completed``. A prompt
containing "SLOW" streams 50 chunks 20 ms apart (for disconnect tests); a
model named "fail-500" answers 500 with a provider-shaped error body,
"fail-429" 429 with ``retry-after: 7``; a model named "hang" answers after
1 s. Also: ``GET /v1/models`` (Anthropic's shape with ``x-api-key``),
``GET /v1/models/{id}``, ``POST /v1/messages/count_tokens`` (input tokens
only), ``GET``/``DELETE /v1/responses/{id}`` (any ``resp_…`` id),
``POST /v1/responses/{id}/cancel``. `Stats` keeps what the last
request looked like (method, path, query, headers, body).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec

_enc = msgspec.json.encode


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        m = await receive()
        parts.append(m.get("body", b""))
        if not m.get("more_body"):
            return b"".join(parts)


async def _send(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Stats:
    requests = 0
    last_method = ""
    last_path = ""
    last_query = b""
    last_auth: str | None = None
    last_headers: dict[bytes, bytes] = {}  # noqa: RUF012 - test-only mutable class state
    last_body: dict[str, Any] | None = None
    stream_finished = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    raw = await _body(receive)
    Stats.requests += 1
    h = dict(scope["headers"])
    Stats.last_headers = h
    Stats.last_auth = (h.get(b"authorization") or h.get(b"x-api-key") or b"").decode()
    req = msgspec.json.decode(raw) if raw else {}
    Stats.last_body = req
    path = scope["path"]
    Stats.last_method, Stats.last_path = scope["method"], path
    Stats.last_query = scope.get("query_string", b"")
    if scope["method"] in ("GET", "DELETE"):
        await _lookup(send, scope["method"], path, b"x-api-key" in h)
        return
    model = req.get("model", "")
    text = raw.decode(errors="replace")
    n_in = max(1, len(raw) // 10)
    cached = 4 if "CACHE" in text and n_in > 8 else 0
    budgets = [req.get(k) for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")]
    # like a provider, read only real positive ints (hostile bodies send "1e3", NaN, ...)
    ints = [b for b in budgets if isinstance(b, int) and not isinstance(b, bool) and b > 0]
    n_out = min(ints[0] if ints else 5, 5)
    slow = "SLOW" in text
    if model == "hang":  # answers only after 1 s (gateway timeout tests)
        await asyncio.sleep(1)
    if model in ("fail-500", "fail-429"):
        status = int(model[5:])
        if path.startswith("/v1/messages"):
            err = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
        else:
            err = {"error": {"message": "boom", "type": "server_error", "code": None}}
        body = _enc(err)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status == 429:
            headers.append((b"retry-after", b"7"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if path.startswith("/v1/responses/resp_") and path.endswith("/cancel"):
        rid = path.split("/")[3]
        await _send(send, 200, _enc({"id": rid, "object": "response", "status": "cancelled"}))
        return
    if path == "/v1/messages/count_tokens":
        await _send(send, 200, _enc({"input_tokens": n_in}))
        return
    if path == "/v1/responses":
        await _responses(send, req, n_in, cached, n_out, slow)
        return
    if path == "/v1/embeddings":
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "model": model,
            "usage": {"prompt_tokens": n_in, "total_tokens": n_in},
        }
        await _send(send, 200, _enc(body))
        return
    if path == "/v1/chat/completions":
        usage = {
            "prompt_tokens": n_in,
            "completion_tokens": n_out,
            "total_tokens": n_in + n_out,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        rid = "chatcmpl-" + os.urandom(12).hex()  # unique per response, as the real API
        if not req.get("stream"):
            body = {
                "id": rid,
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hello " * n_out},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            await _send(send, 200, _enc(body))
            return
        inc = bool((req.get("stream_options") or {}).get("include_usage"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        chunks = 50 if slow else n_out
        for _ in range(chunks):
            c: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": "hello "}, "finish_reason": None}],
            }
            if inc:
                c["usage"] = None
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + _enc(c) + b"\n\n",
                    "more_body": True,
                }
            )
            if slow:
                await asyncio.sleep(0.02)
        last: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        tail = b"data: " + _enc(last) + b"\n\n"
        if inc:
            u = dict(usage)
            if slow:
                u["completion_tokens"] = chunks
                u["total_tokens"] = n_in + chunks
            uc = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": u,
            }
            tail += b"data: " + _enc(uc) + b"\n\n"
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        Stats.stream_finished += 1
        return
    if path == "/v1/messages":
        plain = n_in - cached
        rid = "msg_" + os.urandom(12).hex()
        if not req.get("stream"):
            body = {
                "id": rid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "hello " * n_out}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": plain,
                    "output_tokens": n_out,
                    "cache_read_input_tokens": cached,
                    "cache_creation_input_tokens": 0,
                },
            }
            await _send(send, 200, _enc(body))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        def ev(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + _enc(data) + b"\n\n"

        start = {
            "type": "message_start",
            "message": {
                "id": rid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": plain,
                    "output_tokens": 1,
                    "cache_read_input_tokens": cached,
                    "cache_creation_input_tokens": 0,
                },
            },
        }
        out = ev("message_start", start)
        out += ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        await send({"type": "http.response.body", "body": out, "more_body": True})
        chunks = 50 if slow else n_out
        for _ in range(chunks):
            d = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "hello "},
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": ev("content_block_delta", d),
                    "more_body": True,
                }
            )
            if slow:
                await asyncio.sleep(0.02)
        out = ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        out += ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
        out += ev("message_stop", {"type": "message_stop"})
        await send({"type": "http.response.body", "body": out, "more_body": False})
        Stats.stream_finished += 1
        return
    await _send(send, 404, b'{"error":{"message":"not found"}}')


OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "o4-mini", "text-embedding-3-small")
ANTHROPIC_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5")


def _model(mid: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {
            "type": "model",
            "id": mid,
            "display_name": mid,
            "created_at": "2025-01-01T00:00:00Z",
        }
    return {"id": mid, "object": "model", "created": 1, "owned_by": "system"}


async def _lookup(send: Any, method: str, path: str, anthropic: bool) -> None:
    """GET /v1/models[/{id}], GET/DELETE /v1/responses/{id}."""
    models = ANTHROPIC_MODELS if anthropic else OPENAI_MODELS
    if path == "/v1/models":
        data = [_model(m, anthropic) for m in models]
        if anthropic:
            body = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"],
                "last_id": data[-1]["id"],
            }
        else:
            body = {"object": "list", "data": data}
        await _send(send, 200, _enc(body))
        return
    if path.startswith("/v1/models/") and path[11:] in models:
        await _send(send, 200, _enc(_model(path[11:], anthropic)))
        return
    if path.startswith("/v1/responses/resp_"):
        rid = path.split("/")[3]
        if method == "DELETE":
            await _send(send, 200, _enc({"id": rid, "object": "response.deleted", "deleted": True}))
        else:
            await _send(send, 200, _enc({"id": rid, "object": "response", "status": "completed"}))
        return
    await _send(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')


def _response_obj(rid: str, model: str, status: str, text: str, usage: Any) -> dict[str, Any]:
    output = []
    if text:
        output.append(
            {
                "type": "message",
                "id": "msg_" + rid[5:],
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    return {
        "id": rid,
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


async def _responses(
    send: Any, req: dict[str, Any], n_in: int, cached: int, n_out: int, slow: bool
) -> None:
    model = req.get("model", "")
    rid = "resp_" + os.urandom(12).hex()
    chunks = 50 if slow else n_out
    usage = {
        "input_tokens": n_in,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": chunks,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": n_in + chunks,
    }
    text = "hello " * chunks
    if not req.get("stream"):
        await _send(send, 200, _enc(_response_obj(rid, model, "completed", text, usage)))
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    seq = 0

    def ev(kind: str, **data: Any) -> bytes:
        nonlocal seq
        seq += 1
        return (
            b"event: "
            + kind.encode()
            + b"\ndata: "
            + _enc({"type": kind, "sequence_number": seq, **data})
            + b"\n\n"
        )

    mid = "msg_" + rid[5:]
    out = ev("response.created", response=_response_obj(rid, model, "in_progress", "", None))
    out += ev("response.in_progress", response=_response_obj(rid, model, "in_progress", "", None))
    item = {
        "type": "message",
        "id": mid,
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    out += ev("response.output_item.added", output_index=0, item=item)
    part = {"type": "output_text", "text": "", "annotations": []}
    out += ev(
        "response.content_part.added", item_id=mid, output_index=0, content_index=0, part=part
    )
    await send({"type": "http.response.body", "body": out, "more_body": True})
    for _ in range(chunks):
        d = ev(
            "response.output_text.delta",
            item_id=mid,
            output_index=0,
            content_index=0,
            delta="hello ",
            logprobs=[],
        )
        await send({"type": "http.response.body", "body": d, "more_body": True})
        if slow:
            await asyncio.sleep(0.02)
    done = _response_obj(rid, model, "completed", text, usage)
    out = ev(
        "response.output_text.done",
        item_id=mid,
        output_index=0,
        content_index=0,
        text=text,
        logprobs=[],
    )
    out += ev(
        "response.content_part.done",
        item_id=mid,
        output_index=0,
        content_index=0,
        part={**part, "text": text},
    )
    out += ev("response.output_item.done", output_index=0, item=done["output"][0])
    out += ev("response.completed", response=done)
    await send({"type": "http.response.body", "body": out, "more_body": False})
    Stats.stream_finished += 1
