"""Claude Code's ``claude_code.api_request`` log events → usage items (source ``claude_code``).

Built from Claude Code's telemetry as exported (golden fixtures in
tests/fixtures/otel/claude_code/, captured from the real CLI; see their README).
Claude Code sends one ``api_request`` event per successful model call, in the
logs signal (scope ``com.anthropic.claude_code.events``, body
``claude_code.api_request``, attribute ``event.name = api_request``), with:

==========================  ===============================================
event attribute             usage item
==========================  ===============================================
``model``                   ``model`` (provider ``anthropic``)
``input_tokens``            uncached input only (Anthropic's semantics):
``cache_read_tokens``       ``input_tokens`` = the sum of the three;
``cache_creation_tokens``   ``cached_input_tokens`` = cache reads,
                            ``cache_creation_input_tokens`` = cache writes
``output_tokens``           ``output_tokens``
``request_id``              ``correlation_id`` (the provider's ``request-id``
                            header, ``req_…``) and the idempotency key
``session.id``              ``session_id``
``user.email``              identity hint only (finds the Metis user; never
                            stored); also read from the resource
                            (``OTEL_RESOURCE_ATTRIBUTES=user.email=…``)
``user.account_uuid`` /     account hint (``metadata.account_id``)
``user.id``
``cost_usd_micros``         ``metadata.client_cost_usd_micros`` only
==========================  ===============================================

Cost: Metis prices the tokens itself (``cost_source = computed``), like every
other pushed row without a cost. Claude Code's ``cost_usd`` is a float
estimate at list price and ``cost_usd_micros`` is rounded to micro-dollars;
neither is exact money. The event does not split cache writes by TTL, so
they are priced at the 5-minute rate.

Without ``request_id`` (a proxy that does not return it) the idempotency key
is a digest of the session, prompt, sequence, time and counts, so a re-sent
batch still lands on the same rows. The event carries no base URL: whether it
went through the gateway is the ingest token's ``via_gateway`` setting.
"""

from __future__ import annotations

import hashlib

from metis.ingest.otel.mapping import Mapped, MappingError, count, event_time, labels, text
from metis.ingest.otel.records import LogEvent

SOURCE = "claude_code"
EVENT = "claude_code.api_request"
SCOPE_PREFIX = "com.anthropic.claude_code"


def is_api_request(ev: LogEvent) -> bool:
    """Whether ``ev`` is an ``api_request`` event (by body, event name or scoped attribute)."""
    if ev.body == EVENT or ev.event_name == EVENT:
        return True
    return ev.attributes.get("event.name") == "api_request" and ev.scope_name.startswith(
        SCOPE_PREFIX
    )


def map_log(ev: LogEvent) -> Mapped | None:
    """The usage item of an ``api_request`` event; None for Claude Code's other events."""
    if not is_api_request(ev):
        return None
    a = ev.attributes
    model = text(a, "model")
    if model is None:
        raise MappingError(f"{EVENT} without model")
    uncached = count(a, "input_tokens") or 0
    cache_read = count(a, "cache_read_tokens") or 0
    cache_write = count(a, "cache_creation_tokens") or 0
    output = count(a, "output_tokens") or 0
    request_id = text(a, "request_id")
    session = text(a, "session.id")
    when = event_time(ev.time, text(a, "event.timestamp"))
    if request_id is not None:
        key = f"{SOURCE}:{request_id}"
    else:
        ident = "\x00".join(
            str(x)
            for x in (
                session,
                text(a, "prompt.id"),
                a.get("event.sequence"),
                when.isoformat(),
                model,
                uncached,
                cache_read,
                cache_write,
                output,
            )
        )
        key = f"{SOURCE}:{hashlib.sha256(ident.encode()).hexdigest()[:40]}"
    micros = a.get("cost_usd_micros")
    item = {
        "idempotency_key": key[:200],
        "time": when,
        "provider": "anthropic",
        "model": model,
        "input_tokens": uncached + cache_read + cache_write,
        "cached_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "output_tokens": output,
        "session_id": session[:200] if session else None,
        "correlation_id": request_id[:200] if request_id else None,
    }
    meta = labels(
        client_cost_usd_micros=micros if isinstance(micros, int) else None,
        prompt_id=text(a, "prompt.id"),
        query_source=text(a, "query_source"),
        agent_version=text(ev.resource, "service.version"),
    )
    return Mapped(
        source=SOURCE,
        item=item,
        email=text(a, "user.email") or text(ev.resource, "user.email"),
        account=text(a, "user.account_uuid", "user.id")
        or text(ev.resource, "user.account_uuid", "user.id"),
        meta=meta,
    )
