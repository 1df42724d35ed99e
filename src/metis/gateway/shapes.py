"""Error envelopes in each inbound shape (OpenAI, Anthropic, Gemini).

Every error the gateway itself produces is a JSON body in the shape the
client's SDK parses: OpenAI ``{"error": {"message", "type", "param", "code"}}``,
Anthropic ``{"type": "error", "error": {"type", "message"}}``, Gemini
(Google APIs) ``{"error": {"code": <HTTP status>, "message", "status"}}``
with the canonical status name (``RESOURCE_EXHAUSTED`` …). Extra fields
(the cap ``scope``, ``limit_usd``, ``current_usd``, ``resets_at``) go inside
the ``error`` object. Upstream errors are *not* rewritten: they keep the
upstream's status and body.
"""

from __future__ import annotations

from typing import Any, Literal

from metis.jsonutil import dumps

Shape = Literal["openai", "anthropic", "gemini"]

# (status, openai type, openai code, anthropic type)
KINDS: dict[str, tuple[int, str, str | None, str]] = {
    "authentication_error": (
        401,
        "authentication_error",
        "invalid_api_key",
        "authentication_error",
    ),
    "permission_error": (403, "permission_error", "model_not_allowed", "permission_error"),
    "invalid_request": (400, "invalid_request_error", None, "invalid_request_error"),
    "not_found": (404, "invalid_request_error", "not_found", "not_found_error"),
    "request_timeout": (408, "invalid_request_error", "request_timeout", "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error", "request_too_large", "request_too_large"),
    "upgrade_required": (426, "invalid_request_error", "upgrade_required", "invalid_request_error"),
    # a spent hard cap: OpenAI's code for an exhausted quota, the one Codex stops at (it
    # retries any other 429 five times, x-should-retry or not; docs/clients.md)
    # too many failed key checks from this address or for this key prefix
    "auth_throttled": (429, "rate_limit_exceeded", "too_many_failed_auth", "rate_limit_error"),
    "quota_exceeded": (429, "insufficient_quota", "insufficient_quota", "rate_limit_error"),
    "upstream_error": (502, "upstream_error", "bad_gateway", "api_error"),
    "upstream_timeout": (504, "timeout", "gateway_timeout", "timeout_error"),
    # the gateway's own database is down (docs/gateway.md "When the database is unavailable")
    "unavailable": (503, "service_unavailable", "database_unavailable", "api_error"),
    "internal": (500, "server_error", None, "api_error"),
}


GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    426: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(shape: Shape, kind: str, message: str, **extra: Any) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for a gateway-made error in the inbound ``shape``."""
    status, oa_type, oa_code, an_type = KINDS[kind]
    if shape == "gemini":
        g: dict[str, Any] = {"code": status, "message": message, "status": GOOGLE_STATUS[status]}
        g.update(extra)
        return status, dumps({"error": g})
    if shape == "anthropic":
        err: dict[str, Any] = {"type": an_type, "message": message}
        err.update(extra)
        return status, dumps({"type": "error", "error": err})
    err = {"message": message, "type": oa_type, "param": None, "code": oa_code}
    err.update(extra)
    return status, dumps({"error": err})
