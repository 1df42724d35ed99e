"""``POST /v1/responses`` (OpenAI Responses API, OpenAI shape).

Billed like chat. Usage: a response's ``usage`` (plain answer) or the
``response`` of the stream's last event (``response.completed``, or
``response.incomplete`` / ``response.failed``): ``input_tokens`` includes
``input_tokens_details.cached_tokens`` and ``cache_write_tokens``,
``output_tokens`` includes ``output_tokens_details.reasoning_tokens``
(`metis.gateway.usage.from_responses`). The body goes upstream as sent
(``previous_response_id``, ``store``, ``background``, tools, ``reasoning``,
``text`` untouched) except for a routed model name. Worst case:
``max_output_tokens`` (`metis.gateway.caps.DEFAULT_MAX_OUTPUT` when absent).

Not translated: a routing rule that sends a Responses request to another
shape's provider is skipped (the attempt is recorded in ``route.decided``
with status ``unsupported_target`` and its reason) and the next candidate is
tried; docs/routing.md. Background responses (``background: true`` without
``stream``) report their usage only when polled, which the gateway does not
bill (`metis.gateway.inbound.stored`): a key under a hard cap is refused them
(403), as for unpriced models.
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway import caps
from metis.gateway.inbound.base import InboundAPI, positive_int
from metis.gateway.usage import from_responses


class ResponsesRequest(msgspec.Struct):
    """The Responses request fields the gateway looks at (others pass through)."""

    model: Any = None
    stream: Any = None
    max_output_tokens: Any = None
    background: Any = None


def worst_case_output(req: ResponsesRequest) -> int:
    """Output tokens (reasoning included) the reservation covers."""
    return positive_int(req.max_output_tokens) or caps.DEFAULT_MAX_OUTPUT


def _admit(req: ResponsesRequest, capped: bool) -> str | None:
    if capped and req.background is True and req.stream is not True:
        return (
            "background responses cannot be held to a hard spend cap (their usage is only "
            "known when polled); send stream: true or use a key without a hard cap"
        )
    return None


API = InboundAPI(
    name="responses",
    shape="openai",
    path="/v1/responses",
    decoder=msgspec.json.Decoder(ResponsesRequest),
    streams=lambda req: req.stream is True,
    worst_case_output=worst_case_output,
    usage=from_responses,
    tap="responses",
    admit=_admit,
)
