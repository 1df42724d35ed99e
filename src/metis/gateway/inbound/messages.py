"""``POST /v1/messages`` (Anthropic shape).

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes; the
canonical input adds them (`metis.gateway.usage.from_anthropic`). Streams:
usage arrives in ``message_start`` and ``message_delta`` (cumulative), all
forwarded unchanged. Worst case: ``max_tokens`` (required by the API;
`metis.gateway.caps.DEFAULT_MAX_OUTPUT` when absent).
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway import caps
from metis.gateway.inbound.base import InboundAPI
from metis.gateway.usage import from_anthropic


class MessagesRequest(msgspec.Struct):
    model: Any = None
    stream: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None  # not an Anthropic field: read as absent unless sent


API = InboundAPI(
    name="messages",
    shape="anthropic",
    path="/v1/messages",
    decoder=msgspec.json.Decoder(MessagesRequest),
    streams=lambda req: req.stream is True,
    worst_case_output=lambda req: caps.max_output_tokens(req, "messages"),
    usage=from_anthropic,
    tap="anthropic",
    translatable=True,
)
