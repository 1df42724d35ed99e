"""OpenTelemetry GenAI semantic-convention spans → usage items (source ``otel_genai``).

Built from the GenAI semantic conventions (open-telemetry/semantic-conventions,
``docs/gen-ai``) and checked against the official OpenAI instrumentation
(``opentelemetry-instrumentation-openai-v2``) exporting to a live Metis.
One span per model call; its attributes map as:

=============================================  =====================================
span attribute                                 usage item
=============================================  =====================================
``gen_ai.operation.name`` (or OpenLLMetry's    only model calls count: ``chat``,
``llm.request.type``)                          ``text_completion``, ``embeddings``,
                                               ``generate_content``, ``responses``,
                                               ``messages``
``gen_ai.response.model`` /                    ``model``
``gen_ai.request.model``
``gen_ai.provider.name`` / ``gen_ai.system``   ``provider`` (``openai``,
                                               ``anthropic``, … as named)
``gen_ai.usage.input_tokens``                  ``input_tokens`` (all input, cache
(``gen_ai.usage.prompt_tokens``)               included, per the conventions)
``gen_ai.usage.cache_read.input_tokens``       ``cached_input_tokens``
``gen_ai.usage.cache_creation.input_tokens``   ``cache_creation_input_tokens``
``gen_ai.usage.output_tokens``                 ``output_tokens`` (reasoning included)
(``gen_ai.usage.completion_tokens``)
``gen_ai.usage.reasoning.output_tokens``       ``reasoning_tokens``
``gen_ai.response.id``                         ``correlation_id`` (``chatcmpl-…``,
                                               ``msg_…``: matches the gateway's row)
``server.address`` + ``server.port``           ``base_url`` (``http://host:port``;
                                               ``https://host`` without a port)
``gen_ai.conversation.id`` / ``session.id``    ``session_id``
``user.email``                                 identity hint only (never stored)
``user.id`` / ``enduser.id``                   account hint
trace id + span id                             the idempotency key
=============================================  =====================================

Some instrumentations report Anthropic's raw ``input_tokens`` (cache
excluded) while also setting the cache attributes; when the cache parts
exceed the input total that is evidently the case and they are added to it
(likewise reasoning beyond output). Agent, tool and workflow spans
(``invoke_agent``, ``execute_tool``, …) are skipped: they sum their child
calls, which are counted on their own. Spans from agents that have a mapper
of their own (Claude Code, Codex: `DEDICATED_SERVICES`) are skipped too, so a
call they report as a log event is not counted again from a span. A model
call span without token counts (e.g. a stream whose usage was not requested)
carries no usage and is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metis.ingest.otel.mapping import Mapped, MappingError, count, labels, text
from metis.ingest.otel.records import SpanEvent

SOURCE = "otel_genai"
MODEL_CALLS = frozenset(
    {"chat", "text_completion", "embeddings", "generate_content", "responses", "messages"}
)
# OpenLLMetry's pre-semconv ``llm.request.type`` values.
_LEGACY_OPS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure_openai",
    "az.ai.openai": "azure_openai",
}
DEDICATED_SERVICES = ("claude-code", "codex")
"""``service.name`` values (or prefixes) of agents mapped from their own log events."""


def _operation(a: Mapping[str, Any]) -> str | None:
    op = text(a, "gen_ai.operation.name")
    if op is not None:
        return op
    legacy = text(a, "llm.request.type")
    return _LEGACY_OPS.get(legacy) if legacy else None


def _base_url(a: Mapping[str, Any]) -> str | None:
    host = text(a, "server.address")
    if host is None or "/" in host or " " in host:
        return None
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    port = a.get("server.port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        if port == 443:
            return f"https://{host}"
        return f"http://{host}:{port}"
    return f"https://{host}"


def _provider(a: Mapping[str, Any]) -> str:
    raw = text(a, "gen_ai.provider.name", "gen_ai.system")
    if raw is None:
        raise MappingError("gen_ai.provider.name (or gen_ai.system) missing")
    low = raw.lower()
    return _PROVIDERS.get(low, low)


def map_span(sp: SpanEvent) -> Mapped | None:
    """The usage item of a model-call span; None for any other span."""
    service = text(sp.resource, "service.name") or ""
    if service.startswith(DEDICATED_SERVICES):
        return None
    a = sp.attributes
    op = _operation(a)
    if op not in MODEL_CALLS:
        return None
    inp = count(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", default=None)
    out = count(a, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", default=None)
    if inp is None and out is None:
        return None
    inp, out = inp or 0, out or 0
    cache_read = count(
        a, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"
    )
    cache_write = count(
        a, "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"
    )
    reasoning = count(a, "gen_ai.usage.reasoning.output_tokens")
    cache_read, cache_write, reasoning = cache_read or 0, cache_write or 0, reasoning or 0
    if cache_read + cache_write > inp:
        inp += cache_read + cache_write  # raw Anthropic counts: input excluded the cache
    if reasoning > out:
        out += reasoning
    model = text(a, "gen_ai.response.model", "gen_ai.request.model")
    if model is None:
        raise MappingError(f"{op} span without gen_ai.response.model or gen_ai.request.model")
    when = sp.time
    if when is None:
        raise MappingError("span without start or end time")
    if not sp.trace_id or not sp.span_id:
        raise MappingError("span without trace id or span id")
    session = text(a, "gen_ai.conversation.id", "session.id")
    response_id = text(a, "gen_ai.response.id")
    item = {
        "idempotency_key": f"{SOURCE}:{sp.trace_id}:{sp.span_id}"[:200],
        "time": when,
        "provider": _provider(a),
        "model": model,
        "input_tokens": inp,
        "cached_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "output_tokens": out,
        "reasoning_tokens": reasoning,
        "session_id": session[:200] if session else None,
        "correlation_id": response_id[:200] if response_id else None,
        "base_url": _base_url(a),
    }
    meta = labels(operation=op, service=service or None, scope=sp.scope_name or None)
    r = sp.resource
    return Mapped(
        source=SOURCE,
        item=item,
        email=text(a, "user.email") or text(r, "user.email"),
        account=text(a, "user.id", "enduser.id") or text(r, "user.id", "enduser.id"),
        meta=meta,
    )
