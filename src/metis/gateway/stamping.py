"""Stamp a finished gateway call: the ``gateway`` usage record and its events.

One call -> one `UsageRecord` (source ``gateway``, granularity ``request``,
``dedupe_key`` = Metis request id, ``correlation_id`` = the upstream response
id, canonical tokens, cost via `metis.pricing`) and one ``llm.call_completed``
event (a broken attempt a routing fallback follows gets its own pair, dedupe key
``<request id>#<attempt index>``, `metis.gateway.estimate`); every request
(answered, failed or refused by a cap) also gets one ``route.decided``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metis.events import LLMCallCompleted, RouteDecided
from metis.gateway.usage import Tokens
from metis.ledger.record import UsageRecord
from metis.ledger.writer import PendingEvent
from metis.money import from_nanousd
from metis.pricing import Priced


@dataclass(slots=True)
class CallFacts:
    request_id: str
    principal: Any
    inbound_shape: str
    provider: str
    model_raw: str
    stream: bool
    started_at: datetime
    latency_ms: int
    http_status: int
    status: str  # ok | upstream_error | client_disconnected | timeout | connect_error
    tokens: Tokens
    priced: Priced
    correlation_id: str | None
    api_root: str | None
    metadata: dict[str, Any] | None = None
    estimate: str | None = None  # why the call is recorded at its worst case (estimate.REASONS)
    attempt: int | None = None  # a broken attempt before a fallback: its own record


def billed_requests(http_status: int) -> int:
    """How many model requests the provider billed for a call: 1 if it answered, else 0.

    A call the upstream refused or failed (a 4xx/5xx answer, a timeout, no
    connection) ran no model and is in no provider's request count, so its
    record carries ``request_count = 0`` (it still counts as an error record):
    billed calls and errors are reported apart, and a provider's request
    count reconciles against the gateway's. A stream that broke after a 2xx
    answer did run, and counts.
    """
    return 1 if http_status < 400 else 0


def usage_record(f: CallFacts) -> UsageRecord:
    p = f.principal
    t = f.tokens
    return UsageRecord(
        workspace_id=p.workspace_id,
        source="gateway",
        source_ref=p.gateway_key_id,
        dedupe_key=f.request_id if f.attempt is None else f"{f.request_id}#{f.attempt}",
        window_start=f.started_at,
        window_end=f.started_at,
        granularity="request",
        provider=f.provider,
        model=f.priced.model_normalized,
        model_raw=f.model_raw,
        input_tokens=t.input,
        output_tokens=t.output,
        cached_input_tokens=t.cached,
        cache_creation_input_tokens=t.cache_creation,
        reasoning_tokens=t.reasoning,
        # An estimated call was accepted upstream (the provider counts it) whatever
        # the gateway answered.
        request_count=1 if f.estimate else billed_requests(f.http_status),
        cost_nanousd=f.priced.cost_nanousd or 0,
        cost_source=f.priced.cost_source,
        pricing_version=f.priced.pricing_version,
        user_id=p.user_id,
        team_id=p.team_id,
        gateway_key_id=p.gateway_key_id,
        correlation_id=f.correlation_id,
        request_id=f.request_id,
        inbound_shape=f.inbound_shape,
        status=f.status,
        latency_ms=f.latency_ms,
        base_url=f.api_root,
        metadata=f.metadata,
    )


def call_event(f: CallFacts) -> PendingEvent:
    p = f.principal
    t = f.tokens
    cost = f.priced.cost_nanousd
    ev = LLMCallCompleted(
        request_id=f.request_id,
        workspace_id=p.workspace_id,
        gateway_key_id=p.gateway_key_id,
        user_id=p.user_id,
        team_id=p.team_id,
        inbound_shape=f.inbound_shape,  # type: ignore[arg-type]
        provider=f.provider,
        model=f.priced.model_normalized,
        status=f.status,
        http_status=f.http_status,
        latency_ms=f.latency_ms,
        input_tokens=t.input,
        output_tokens=t.output,
        cached_input_tokens=t.cached,
        cache_creation_input_tokens=t.cache_creation,
        reasoning_tokens=t.reasoning,
        cost_usd=None if cost is None else from_nanousd(cost),
        cost_source=f.priced.cost_source,
        pricing_version=f.priced.pricing_version,
        correlation_id=f.correlation_id,
        stream=f.stream,
        estimated=f.estimate is not None,
        estimate_reason=f.estimate,
    )
    return PendingEvent(ev, f.started_at, {"workspace_id": p.workspace_id})


def route_event(
    *,
    request_id: str,
    principal: Any,
    candidates: list[str],
    winner_index: int,
    reason: str,
    rule: str | None,
    attempts: list[dict[str, Any]],
    inbound_shape: str,
    ts: datetime,
) -> PendingEvent:
    ev = RouteDecided(
        request_id=request_id,
        candidates=candidates,
        winner_index=winner_index,
        reason=reason,
        rule=rule,
        attempts=attempts,
        inbound_shape=inbound_shape,  # type: ignore[arg-type]
    )
    return PendingEvent(
        ev,
        ts,
        {
            "workspace_id": principal.workspace_id,
            "user_id": principal.user_id,
            "team_id": principal.team_id,
            "gateway_key_id": principal.gateway_key_id,
        },
    )
