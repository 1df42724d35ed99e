"""A minimal, fast OpenAI + Anthropic upstream (raw ASGI) for gateway tests and benchmarks.

Deterministic usage: input tokens = request body bytes // 10 (+ fixed cache
counts when the prompt contains "CACHE"), output = min(max_tokens, 5). The
streaming responses follow each provider's SSE format, including OpenAI's
final usage chunk when ``stream_options.include_usage`` is set. A prompt
containing "SLOW" streams 50 chunks 20 ms apart (for disconnect tests); a
model named "fail-500" answers 500 with a provider-shaped error body; a
model named "hang" answers after 1 s.
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
    model = req.get("model", "")
    text = raw.decode(errors="replace")
    n_in = max(1, len(raw) // 10)
    cached = 4 if "CACHE" in text and n_in > 8 else 0
    n_out = min(int(req.get("max_tokens") or req.get("max_completion_tokens") or 5), 5)
    slow = "SLOW" in text
    if model == "hang":  # answers only after 1 s (gateway timeout tests)
        await asyncio.sleep(1)
    if model == "fail-500":
        if path == "/v1/messages":
            err = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
        else:
            err = {"error": {"message": "boom", "type": "server_error", "code": None}}
        await _send(send, 500, _enc(err))
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
