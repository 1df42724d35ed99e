"""Raw ASGI I/O of the gateway's routes: answering, error envelopes, the request body, the key.

Every gateway answer goes out through `respond` (``content-length`` and
``x-metis-request-id`` always set). `error` answers in the inbound shape's
envelope (`metis.gateway.shapes`). `read_body` enforces the body limits of
`metis.gateway.limits` before and while reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from metis.gateway import limits
from metis.gateway.shapes import error_body

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Header = tuple[bytes, bytes]

JSON: Header = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class BodyTooLarge(Exception):
    """The request body is over `limits.MAX_BODY_BYTES`."""


async def respond(
    send: Send,
    status: int,
    body: bytes,
    rid: str,
    ctype: Header = JSON,
    extra: Sequence[Header] = (),
) -> None:
    """One whole answer: ``ctype``, ``content-length``, ``x-metis-request-id`` and ``extra``."""
    headers = [
        ctype,
        (b"content-length", str(len(body)).encode()),
        (b"x-metis-request-id", rid.encode()),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def error(
    send: Send,
    shape: str,
    kind: str,
    message: str,
    rid: str,
    extra_headers: Sequence[Header] = (),
    **fields: Any,
) -> int:
    """Answer a gateway-made error in ``shape``'s envelope; returns the HTTP status."""
    status, body = error_body(shape, kind, message, **fields)  # type: ignore[arg-type]
    await respond(send, status, body, rid, JSON, extra_headers)
    return status


KEY_HEADERS = (b"x-api-key", b"api-key", b"x-goog-api-key")
"""Where clients put an API key: Anthropic's SDK, Azure OpenAI clients, Google's SDK."""


def token(headers: dict[bytes, bytes]) -> str:
    """The gateway key a client sent: ``Authorization: Bearer …``, else ``x-api-key``
    (Anthropic clients), ``api-key`` (Azure OpenAI clients) or ``x-goog-api-key``
    (Gemini clients)."""
    auth = headers.get(b"authorization")
    if auth is not None:
        a = auth.decode("latin-1")
        if a[:7].lower() == "bearer ":
            return a[7:].strip()
    for name in KEY_HEADERS:
        key = headers.get(name)
        if key is not None:
            return key.decode("latin-1").strip()
    return ""


def shape_of(headers: dict[bytes, bytes]) -> str:
    """The inbound shape of a request whose path does not say it (``/v1/models``, unknown
    paths): Anthropic when it carries ``anthropic-version`` or ``x-api-key`` (what the
    Anthropic SDK and Claude Code always send), Gemini when it carries ``x-goog-api-key``
    (Google's SDKs and Gemini CLI), else OpenAI."""
    if b"anthropic-version" in headers or b"x-api-key" in headers:
        return "anthropic"
    return "gemini" if b"x-goog-api-key" in headers else "openai"


_SERVER_BOUNDS_BODY = "metis.body_idle_timeout"  # scope extension set by metis.gateway.protocol


async def read_body(receive: Receive, headers: dict[bytes, bytes], scope: dict[str, Any]) -> bytes:
    """The request body, within `limits.MAX_BODY_BYTES` (else `BodyTooLarge`, before
    reading when Content-Length says so) and with at most `limits.BODY_IDLE_TIMEOUT_S`
    between two of its pieces (else TimeoutError).

    Under `metis.gateway.protocol` the server bounds each wait itself (the scope's
    ``metis.body_idle_timeout`` extension), so a body that has already arrived, the
    usual case, costs no timer here."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limits.MAX_BODY_BYTES:
        raise BodyTooLarge
    if _SERVER_BOUNDS_BODY in scope.get("extensions", ()):
        return await _collect_body(receive, None)
    async with asyncio.timeout(limits.BODY_IDLE_TIMEOUT_S) as deadline:
        return await _collect_body(receive, deadline)


async def _collect_body(receive: Receive, deadline: asyncio.Timeout | None) -> bytes:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = msg.get("body", b"")
    if len(body) > limits.MAX_BODY_BYTES:
        raise BodyTooLarge
    if not msg.get("more_body"):
        return body
    parts, size = [body], len(body)
    loop = asyncio.get_running_loop()
    while True:
        if deadline is not None:
            deadline.reschedule(loop.time() + limits.BODY_IDLE_TIMEOUT_S)
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limits.MAX_BODY_BYTES:
            raise BodyTooLarge
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


async def read_body_or_answer(
    receive: Receive,
    send: Send,
    headers: dict[bytes, bytes],
    scope: dict[str, Any],
    shape: str,
    rid: str,
) -> bytes | None:
    """`read_body`, answering its failures in ``shape``'s envelope (None then: stop)."""
    try:
        return await read_body(receive, headers, scope)
    except ClientGone:
        return None
    except BodyTooLarge:
        await error(
            send,
            shape,
            "request_too_large",
            f"request body over {limits.MAX_BODY_BYTES} bytes",
            rid,
        )
    except TimeoutError:
        await error(send, shape, "request_timeout", "request body not received in time", rid)
    return None
