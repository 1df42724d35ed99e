"""``POST /v1/embeddings`` (OpenAI shape).

Never streamed, no output tokens (the worst case is the input alone: text
or token-id arrays, at least one byte each, so bounded by the body), never
routed (rules are about generation models) and never translated.
"""

from __future__ import annotations

from typing import Any

import msgspec

from metis.gateway.inbound.base import InboundAPI
from metis.gateway.usage import from_openai
from metis.gateway.worst_case import WorstCase

_WORST = WorstCase(output=False)


class EmbeddingsRequest(msgspec.Struct):
    model: Any = None


API = InboundAPI(
    name="embeddings",
    shape="openai",
    path="/v1/embeddings",
    decoder=msgspec.json.Decoder(EmbeddingsRequest),
    streams=lambda req: False,
    worst_case=lambda req, raw: _WORST,
    usage=from_openai,
    tap="openai",
    routable=False,
)
