"""``POST /v1/chat/completions`` (OpenAI shape).

Usage: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``,
``completion_tokens`` includes reasoning (`metis.gateway.usage.from_openai`).
Streams: the gateway always asks for ``stream_options.include_usage``; when
the client did not ask for it, the extra usage-only chunk is withheld from it
(`metis.gateway.streaming.SSEUsageTap`), so the client sees the stream it
would have seen without Metis. Worst case: ``max_completion_tokens`` or
``max_tokens`` (`metis.gateway.caps.DEFAULT_MAX_OUTPUT` when absent).
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway import caps
from metis.gateway.inbound.base import InboundAPI
from metis.gateway.usage import from_openai


class ChatRequest(msgspec.Struct):
    """The chat request fields the gateway looks at (others pass through)."""

    model: Any = None
    stream: Any = None
    stream_options: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None


def _streams(req: ChatRequest) -> bool:
    return req.stream is True


def _worst_case_output(req: ChatRequest) -> int:
    return caps.max_output_tokens(req, "chat")


def _prepare(req: ChatRequest, raw: bytes, target_model: str) -> tuple[bytes, bool]:
    """Ask a stream for its usage (withheld later when the client did not ask)."""
    if req.stream is True:
        so = req.stream_options
        if not (isinstance(so, dict) and so.get("include_usage") is True):
            obj = msgspec.json.decode(raw)
            so2 = dict(so) if isinstance(so, dict) else {}
            so2["include_usage"] = True
            obj["stream_options"] = so2
            obj["model"] = target_model
            return msgspec.json.encode(obj), True
    if target_model != req.model:
        obj = msgspec.json.decode(raw)
        obj["model"] = target_model
        return msgspec.json.encode(obj), False
    return raw, False


API = InboundAPI(
    name="chat",
    shape="openai",
    path="/v1/chat/completions",
    decoder=msgspec.json.Decoder(ChatRequest),
    streams=_streams,
    worst_case_output=_worst_case_output,
    usage=from_openai,
    tap="openai",
    prepare=_prepare,
    translatable=True,
)
