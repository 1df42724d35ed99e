"""Upstream error bodies re-shaped for the client (status kept, message kept).

A cross-shape call's upstream error must reach the client in the client's
own envelope, or its SDK cannot parse it. The type is derived from the HTTP
status; the upstream's message is kept verbatim.
"""

from typing import Any

import msgspec

from metis.jsonutil import DECODE_ERRORS, dumps

_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def upstream_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI, Anthropic or Gemini error body (or the top-level
    ``message`` of an AWS one), else a short default."""
    try:
        doc: Any = msgspec.json.decode(body)
    except DECODE_ERRORS:
        return "upstream error"
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return "upstream error"


def reshape_error(body: bytes, status: int, to_shape: str, target: str) -> bytes:
    """An upstream error body in ``to_shape``'s envelope, naming the target that failed."""
    message = f"{target}: {upstream_message(body)}"
    if to_shape == "anthropic":
        kind = _ANTHROPIC_TYPE.get(status, "api_error")
        return dumps({"type": "error", "error": {"type": kind, "message": message}})
    kind = _OPENAI_TYPE.get(status, "server_error")
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


def stream_error_frame(to_shape: str, message: str) -> bytes:
    """An SSE error frame in ``to_shape`` (ends a translated stream that cannot go on)."""
    if to_shape == "anthropic":
        payload = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + dumps(payload) + b"\n\n"
    err = {"message": message, "type": "server_error", "param": None, "code": None}
    return b"data: " + dumps({"error": err}) + b"\n\n"
