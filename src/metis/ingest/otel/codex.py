"""Codex CLI's ``codex.sse_event`` (``response.completed``) log events → usage items (``codex``).

Built from the source of Codex's OpenTelemetry export (openai/codex,
``codex-rs/otel``: ``SessionTelemetry::sse_event_completed`` and the
``log_event!`` macro), not from a live run: a live Codex run needs the
gateway to speak the Responses API. The golden fixture
(tests/fixtures/otel/codex/) is built from that source's shape.

When a Responses API stream completes, Codex logs one event with
``event.name = codex.sse_event`` and ``event.kind = response.completed``.
Its counts come straight from the Responses API ``usage`` object, whose
semantics are the canonical ones (input includes cached input, output
includes reasoning):

========================  ================================================
event attribute           usage item
========================  ================================================
``model``                 ``model`` (provider ``openai``: Codex's default
                          model provider speaks the Responses API)
``input_token_count``     ``input_tokens`` (a decimal string or an int)
``cached_token_count``    ``cached_input_tokens``
``output_token_count``    ``output_tokens``
``reasoning_token_count`` ``reasoning_tokens``
``conversation.id``       ``session_id``
``user.email``            identity hint only (finds the Metis user; never stored)
``user.account_id``       account hint (``metadata.account_id``)
========================  ================================================

The fifth count Codex logs (``tool_token_count``) is the response's
``total_tokens``, not a separate measure, and is not used. Failed streams
(``error.message``, no counts) carry no usage and are ignored.

The event has no response id and no base URL: the idempotency key is a digest
of the record, and whether the call went through the gateway is the ingest
token's ``via_gateway`` setting (docs/ingest-otel.md).
"""

from __future__ import annotations

from metis.ingest.otel.mapping import Mapped, MappingError, count, event_time, labels, text
from metis.ingest.otel.records import LogEvent

SOURCE = "codex"
EVENT = "codex.sse_event"
KIND = "response.completed"


def map_log(ev: LogEvent) -> Mapped | None:
    """The usage item of a completed-response event; None for Codex's other events."""
    a = ev.attributes
    name = a.get("event.name") or ev.event_name
    if name != EVENT or a.get("event.kind") != KIND:
        return None
    if "input_token_count" not in a and "output_token_count" not in a:
        return None  # a failed completion: error.message, no usage
    model = text(a, "model", "slug")
    if model is None:
        raise MappingError(f"{EVENT} {KIND} without model")
    inp = count(a, "input_token_count") or 0
    out = count(a, "output_token_count") or 0
    cached = count(a, "cached_token_count") or 0
    reasoning = count(a, "reasoning_token_count") or 0
    if cached > inp:
        raise MappingError(f"cached_token_count ({cached}) exceeds input_token_count ({inp})")
    if reasoning > out:
        raise MappingError(
            f"reasoning_token_count ({reasoning}) exceeds output_token_count ({out})"
        )
    session = text(a, "conversation.id")
    item = {
        "idempotency_key": f"{SOURCE}:{ev.digest[:48]}",
        "time": event_time(ev.time, text(a, "event.timestamp")),
        "provider": "openai",
        "model": model,
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_tokens": reasoning,
        "session_id": session[:200] if session else None,
    }
    meta = labels(
        slug=text(a, "slug"),
        originator=text(a, "originator"),
        agent_version=text(a, "app.version") or text(ev.resource, "service.version"),
    )
    return Mapped(
        source=SOURCE,
        item=item,
        email=text(a, "user.email"),
        account=text(a, "user.account_id"),
        meta=meta,
    )
