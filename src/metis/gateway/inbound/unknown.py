"""Any other path or method under the gateway's ``/v1``: 404 in the inbound shape's envelope.

Clients and frameworks parse a gateway's errors with their provider's SDK: a
bare ``{"detail": "Not Found"}`` reads as "model not found" in pydantic-ai and
LangChain. So an unknown route answers like the provider does for a URL it
does not serve: OpenAI ``{"error": {"message": "Invalid URL (GET /v1/x)",
"type": "invalid_request_error", "code": "not_found"}}``, Anthropic
``{"type": "error", "error": {"type": "not_found_error", ...}}`` (the shape
from the request's headers, `metis.gateway.http_io.shape_of`). No key is
needed to learn that a URL does not exist.
"""

from __future__ import annotations

from typing import Any

from metis.gateway import http_io
from metis.gateway.http_io import Receive, Send
from metis.gateway.lifecycle import request_id


async def unknown(
    scope: dict[str, Any], receive: Receive, send: Send, shape: str | None = None
) -> None:
    """Answer 404 for a path or method the gateway does not serve."""
    shape = shape or http_io.shape_of(dict(scope["headers"]))
    await http_io.error(
        send,
        shape,
        "not_found",
        f"Invalid URL ({scope['method']} {scope['path']})",
        request_id(),
    )
