"""The worst-case estimate a call is recorded at when its usage could not be read.

When the upstream accepted a request and then the gateway could not read its
answer in full (the connection dropped or timed out before or while the
answer arrived, a 200 body was cut or is not JSON, a stream ended before its
final usage event), the provider has billed a call whose usage Metis never
saw. Recording it at $0 would let it slip past every cap until a provider
sync noticed; so it is recorded at its worst case instead, like the
reservation it held (`metis.gateway.worst_case`):

- input tokens: what the stream already reported (Anthropic's
  ``message_start``), else the request's input bound;
- output tokens: the request's output bound (every choice times its budget,
  or the model's maximum output), or what was reported if more;
- cost: those tokens at the model's top prices (`metis.gateway.worst_case.cost_of`),
  so with nothing known the estimate equals the reservation's cost.

The record's ``cost_source`` is ``estimated`` and its ``metadata`` carries
``estimated: true`` and ``estimate_reason`` (one of `REASONS`); the
``llm.call_completed`` event says the same. The estimate settles the cap
counters (the reservation becomes spend). Reconciliation replaces it by the
provider's figure when the provider's usage report covers the day
(docs/reconciliation.md "Estimated gateway calls").

A broken attempt that a routing fallback follows is estimated the same way and
recorded apart (dedupe key ``<request id>#<attempt index>``); its estimate is settled
on the caps at once and the next target reserves afresh (`metis.gateway.lifecycle`).

Not estimated: a connection that could not be opened (nothing was sent,
nothing billed) and an error answer read in full (the provider does not bill
4xx/5xx).
"""

from __future__ import annotations

from typing import Literal

from metis.gateway.usage import Tokens
from metis.gateway.worst_case import Bounds, WorstCase, bounds, cost_of

Reason = Literal["upstream_disconnected", "upstream_timeout", "truncated_body", "stream_cut"]
REASONS: tuple[Reason, ...] = (
    "upstream_disconnected",
    "upstream_timeout",
    "truncated_body",
    "stream_cut",
)
"""Why a call was estimated: the connection broke after the request was sent
(``upstream_disconnected``) or timed out (``upstream_timeout``); a non-stream 200
body was cut or is not valid JSON (``truncated_body``); a stream ended before its
final usage event (``stream_cut``)."""


def estimate(
    provider: str | None,
    model: str,
    body_len: int,
    wc: WorstCase,
    seen: Tokens,
    *,
    name: str | None = None,
) -> tuple[Tokens, int | None]:
    """The estimated tokens and cost (nano-USD; None: unpriced) of a call to ``model``.

    ``provider`` is the genai-prices id, ``name`` the Metis provider name (as for
    `metis.gateway.worst_case.cost`); ``seen`` is whatever usage the gateway did
    read (input from a stream's first event; zeros when none)."""
    b = bounds(provider, model, body_len, wc)
    inp = seen.input if seen.input > 0 else b.input_tokens
    out = max(b.output_tokens, seen.output)
    tokens = Tokens(
        input=inp,
        output=out,
        cached=min(seen.cached, inp),
        cache_creation=min(seen.cache_creation, inp),
        cache_write_1h=min(seen.cache_write_1h, seen.cache_creation),
        reasoning=0,
        reported=seen.reported,
    )
    return tokens, cost_of(provider, model, Bounds(inp, out, b.rounds), name=name)
