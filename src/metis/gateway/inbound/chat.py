"""``POST /v1/chat/completions`` (OpenAI shape).

Usage: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``,
``completion_tokens`` includes reasoning (`metis.gateway.usage.from_openai`).
Streams: the gateway always asks for ``stream_options.include_usage``; when
the client did not ask for it, the extra usage-only chunk is withheld from it
(`metis.gateway.streaming.SSEUsageTap`), so the client sees the stream it
would have seen without Metis.

Worst case (`worst_case`, `metis.gateway.worst_case`): ``n`` choices of
``max_completion_tokens`` or ``max_tokens`` each (the larger when both are
sent; reasoning and audio output are part of it; the model's maximum output
when neither is), plus the body's length for a ``prediction`` (rejected
prediction tokens are billed as output); input: the body, an image
allowance per ``image_url`` part, the context window for a ``file`` part or
an unknown part, and ``web_search_options`` runs server-side search rounds.
OpenRouter's ``models`` fallback list lets the provider bill another model
than ``model``: the reservation prices the costliest of them
(`WorstCase.alternatives`). Its ``plugins`` (web search) and ``:online``
models charge per-result fees no token price bounds, so under a hard cap
they are refused (403), as is a ``models`` list longer than
`MAX_ALTERNATIVES`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway.inbound.base import InboundAPI, largest_budget, positive_int
from metis.gateway.usage import from_openai
from metis.gateway.worst_case import SERVER_TOOL_ROUNDS, WorstCase


class ChatRequest(msgspec.Struct):
    """The chat request fields the gateway looks at (others pass through)."""

    model: Any = None
    stream: Any = None
    stream_options: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    models: Any = None
    plugins: Any = None


MAX_ALTERNATIVES = 16
"""The longest OpenRouter ``models`` list a capped key may send (each one is priced)."""


def _admit(req: ChatRequest, capped: bool) -> str | None:
    if not capped:
        return None
    if req.plugins is not None or (isinstance(req.model, str) and req.model.endswith(":online")):
        return (
            "plugins and ':online' models charge per-result fees a hard spend cap cannot "
            "bound; use a key without a hard cap"
        )
    if isinstance(req.models, list) and len(req.models) > MAX_ALTERNATIVES:
        return f"models: at most {MAX_ALTERNATIVES} fallback models under a hard spend cap"
    return None


def _alternatives(models: Any) -> tuple[str, ...]:
    """OpenRouter's fallback ``models`` (strings only; others are the provider's to refuse)."""
    if not isinstance(models, list):
        return ()
    return tuple(m for m in models[:MAX_ALTERNATIVES] if isinstance(m, str) and m)


def _streams(req: ChatRequest) -> bool:
    return req.stream is True


class _Part(msgspec.Struct):
    type: Any = None


class _Message(msgspec.Struct):
    content: str | list[_Part] | None = None


class _Tool(msgspec.Struct):
    type: Any = None


class _Scan(msgspec.Struct):
    """What the worst case reads of a chat request (unknown fields are skipped unparsed)."""

    n: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    prediction: Any = None
    web_search_options: Any = None
    models: Any = None
    messages: list[_Message] | None = None
    tools: list[_Tool] | None = None
    functions: list[msgspec.Raw] | None = None


_scan = msgspec.json.Decoder(_Scan)
_BODY_BOUND_PARTS = frozenset({"text", "input_audio", "refusal"})


def worst_case(req: ChatRequest, raw: bytes) -> WorstCase:
    """What a chat request can make the provider bill (see the module docstring)."""
    try:
        r = _scan.decode(raw)
    except msgspec.DecodeError:  # the upstream refuses it too; reserve conservatively
        return WorstCase(context_bound=True)
    images = 0
    context_bound = False
    for m in r.messages or ():
        if isinstance(m.content, list):
            for p in m.content:
                if p.type == "image_url":
                    images += 1
                elif p.type not in _BODY_BOUND_PARTS:
                    context_bound = True  # a file (PDF pages are billed as images) or unknown
    tools = len(r.tools or ()) + len(r.functions or ())
    if any(t.type not in (None, "function", "custom") for t in r.tools or ()):
        context_bound = True
    return WorstCase(
        output_budget=largest_budget(r.max_completion_tokens, r.max_tokens),
        choices=positive_int(r.n) or 1,
        images=images,
        context_bound=context_bound,
        rounds=SERVER_TOOL_ROUNDS if r.web_search_options is not None else 1,
        budget_per_round=False,
        tools=tools,
        extra_output=len(raw) if r.prediction is not None else 0,
        alternatives=_alternatives(r.models),
    )


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
    worst_case=worst_case,
    usage=from_openai,
    tap="openai",
    prepare=_prepare,
    admit=_admit,
    translatable=True,
)
