"""HTTP plumbing shared by the simulator's endpoints: JSON/SSE responses,
provider error envelopes, and how faults are applied to a response.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from metis.simulator.faults import Fault

Provider = Literal["openai", "anthropic", "gemini", "bedrock"]

_encode = msgspec.json.Encoder(decimal_format="number").encode


class SimulatedDrop(Exception):
    """Raised after part of a response was sent: uvicorn then closes the connection."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


def install_drop_log_filter() -> None:
    """Keep intentional connection drops out of uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in logger.filters):
        logger.addFilter(_DropFilter())


class JSONResponse(Response):
    """A JSON response encoded with msgspec (Decimals as JSON numbers)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def anthropic_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Anthropic's error envelope: ``{"type": "error", "error": {"type", "message"}}``."""
    body = {"type": "error", "error": {"type": type, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def fault_error(provider: Provider, fault: Fault) -> JSONResponse:
    """The rejecting response of a 429/5xx fault, in the provider's shape."""
    headers = {"retry-after": str(fault.retry_after)} if fault.kind == "429" else None
    if provider in ("gemini", "bedrock"):
        from metis.simulator import bedrock, gemini

        if provider == "bedrock":
            return bedrock.fault_error(fault, headers)
        message = {
            "429": "Resource has been exhausted (e.g. check quota). (simulated)",
            "500": "An internal error has occurred. (simulated)",
        }.get(fault.kind, "The model is overloaded. Please try again later. (simulated)")
        return gemini.gemini_error(int(fault.kind), message, headers)
    if provider == "openai":
        if fault.kind == "429":
            return openai_error(
                429,
                "Rate limit reached (simulated). Please try again later.",
                type="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if fault.kind == "500":
            return openai_error(
                500,
                "The server had an error while processing your request (simulated).",
                type="server_error",
            )
        return openai_error(
            int(fault.kind),
            "The engine is currently overloaded, please try again later.",
            type="server_error",
        )
    if fault.kind == "429":
        return anthropic_error(
            429,
            "Number of requests has exceeded your rate limit (simulated).",
            type="rate_limit_error",
            headers=headers,
        )
    if fault.kind == "500":
        return anthropic_error(500, "Internal server error (simulated).", type="api_error")
    return anthropic_error(int(fault.kind), "Overloaded (simulated).", type="overloaded_error")


class SSEResponse(Response):
    """A ``text/event-stream`` response.

    The first event is sent on its own (clients see the stream open at once),
    the rest in one write: the events are already computed, and per-event
    writes would only make the simulator slower, not more faithful (the
    client-side SSE parsing is the same). ``interval`` (seconds, from the
    simulator-only request header ``x-sim-stream-interval-ms``) instead sends
    one event per write with that pause between them, for tests that must see
    a stream arrive over time (e.g. that a proxy does not buffer it).
    ``cut_at``: send only the first ``cut_at`` events, then drop the connection.
    """

    media_type = "text/event-stream"

    def __init__(self, events: Sequence[bytes], *, headers: dict[str, str] | None = None) -> None:
        self.events = events
        self.cut_at: int | None = None
        self.usage_index: int | None = None  # where a stream_cut cuts, when known (Bedrock)
        self.interval = 0.0
        self.status_code = 200
        self.background = None
        self.body = b""
        self.init_headers(headers)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"] + [
            (b"cache-control", b"no-cache")
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        events = self.events if self.cut_at is None else self.events[: self.cut_at]
        if self.interval > 0:
            for i, ev in enumerate(events):
                if i:
                    await asyncio.sleep(self.interval)
                await send({"type": "http.response.body", "body": ev, "more_body": True})
            events = []
        if events:
            await send({"type": "http.response.body", "body": events[0], "more_body": True})
        if len(events) > 1:
            await send(
                {"type": "http.response.body", "body": b"".join(events[1:]), "more_body": True}
            )
        if self.cut_at is not None:
            raise SimulatedDrop
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class DroppedResponse(Response):
    """Headers (with the full Content-Length) and half the body, then a dropped connection."""

    def __init__(self, inner: Response) -> None:
        self.inner = inner
        self.status_code = inner.status_code
        self.background = None
        self.body = inner.body
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: max(1, len(self.body) // 2)]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise SimulatedDrop


def apply_post_fault(resp: Response, fault: Fault | None) -> Response:
    """Apply a fault that acts on an already computed response."""
    if fault is None:
        return resp
    if isinstance(resp, SSEResponse):
        if fault.kind == "stream_cut":
            resp.cut_at = usage_event_index(resp)
        elif fault.kind == "drop" or fault.kind in ("truncated", "malformed"):
            resp.cut_at = max(1, len(resp.events) // 2)
        return resp
    if fault.kind == "drop":
        return DroppedResponse(resp)
    if fault.kind == "truncated":
        body = resp.body[: max(1, len(resp.body) // 2)]
        return Response(body, status_code=resp.status_code, media_type="application/json")
    if fault.kind == "malformed":
        return Response(
            b'{"object": "page", "data": [{"object": "bucket",, <html>502</html>',
            status_code=resp.status_code,
            media_type="application/json",
        )
    return resp


def usage_event_index(resp: SSEResponse) -> int:
    """Index of the first event carrying the final usage (where a stream_cut cuts)."""
    if resp.usage_index is not None:
        return resp.usage_index
    for i, ev in enumerate(resp.events):
        if b'"finishReason"' in ev and b'"candidates"' in ev:  # Gemini's last chunk
            return i
        if ev.startswith((b"event: message_delta", b"event: response.completed")) or (
            ev.startswith(b"data: {")
            and b'"usage":{' in ev
            and b'"object":"chat.completion.chunk"' in ev
        ):
            return i
        if ev.startswith(b"data: [DONE]"):
            return i
    return len(resp.events)


def sse_data(obj: Any) -> bytes:
    """``data: <json>\\n\\n`` (OpenAI's SSE framing)."""
    return b"data: " + _encode(obj) + b"\n\n"


def sse_event(name: str, obj: Any) -> bytes:
    """``event: <name>\\ndata: <json>\\n\\n`` (Anthropic's SSE framing)."""
    return b"event: " + name.encode() + b"\ndata: " + _encode(obj) + b"\n\n"


def stream_interval(headers: Any) -> float:
    """Seconds between streamed events from ``x-sim-stream-interval-ms`` (0: no pacing)."""
    v = headers.get("x-sim-stream-interval-ms")
    if v and v.isdigit():
        return min(int(v), 10_000) / 1000
    return 0.0


def bearer(headers: Any) -> str | None:
    auth = headers.get("authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def decode_json(body: bytes) -> Any:
    """Decoded JSON or raise `msgspec.DecodeError`."""
    return msgspec.json.decode(body)
