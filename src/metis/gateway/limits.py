"""Request size and time limits of ``metis serve`` (docs/gateway.md "Limits").

uvicorn's httptools protocol, which ``metis serve`` uses for speed, has no
limit on the request head: a client could send gigabytes of headers, or
thousands of them, or send half a head and never finish it, and each would
hold memory or a connection for ever. `LimitedHttpToolsProtocol` adds the
limits h11 or a reverse proxy would give:

- request line + headers at most `MAX_HEAD_BYTES` and `MAX_HEADERS` headers:
  ``431 Request Header Fields Too Large``, connection closed;
- the head complete within `HEAD_TIMEOUT_S` of the connection opening (of its
  first byte for a later request on a kept-alive connection):
  ``408 Request Timeout``, connection closed (a new connection on which
  nothing arrives within that time is closed without an answer).

The body limits are the gateway's (`metis.gateway.app`): at most
`MAX_BODY_BYTES` (``413`` in the inbound shape's error envelope) and no
more than `BODY_IDLE_TIMEOUT_S` between two pieces of it (``408``). The
ingest API has its own, smaller body limit (1 MiB, `metis.ingest.push`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 32 * 1024 * 1024
BODY_IDLE_TIMEOUT_S = 30.0

HTTP = "metis.gateway.protocol:GatewayHttpProtocol"
"""The ``http=`` of uvicorn for every server Metis runs: Metis's own protocol for
gateway connections, `LimitedHttpToolsProtocol` for the rest (`metis.gateway.protocol`)."""


class _HeadTooLarge(Exception):
    pass


def _plain(status: bytes, msg: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(msg)).encode() + b"\r\nconnection: close\r\n\r\n" + msg
    )


class HeadLimits:
    """The head bounds, shared by `LimitedHttpToolsProtocol` and the gateway's own
    protocol (`metis.gateway.protocol`); needs ``transport`` and ``loop``."""

    transport: Any
    loop: asyncio.AbstractEventLoop
    _head_bytes = 0  # bytes received since the head began (memory bound while incomplete)
    _head_size = 0  # request target + header lines parsed so far
    _in_head = True
    _head_timer: asyncio.TimerHandle | None = None
    _too_large = False

    def _arm_head_timer(self, at: float | None = None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        when = self.loop.time() + HEAD_TIMEOUT_S if at is None else at
        self._head_timer = self.loop.call_at(when, self._head_timeout)

    def _start_head(self) -> None:
        # On a fresh connection the count starts at its first byte; a later request on
        # a kept-alive connection starts counting after the read that began it (so the
        # bound there is MAX_HEAD_BYTES plus at most one read, never a false refusal).
        # Its timer is armed by `_head_checks` after the read, and only if that read
        # left the head incomplete: a head that arrives whole (nearly always) costs none.
        self._head_size = 0
        if not self._in_head:
            self._in_head, self._head_bytes = True, 0

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            # A partial head gets a 408; a connection on which nothing was sent is
            # closed silently, like an idle keep-alive one (a client that sends just
            # then must not read a 408 meant for nobody as its answer).
            if self._head_bytes:
                self.transport.write(
                    _plain(b"408 Request Timeout", b"request head not received in time")
                )
            self.transport.close()

    def _reject_head(self) -> None:
        self._end_head()
        if not self.transport.is_closing():
            self.transport.write(
                _plain(b"431 Request Header Fields Too Large", b"request headers too large")
            )
            self.transport.close()

    def _head_checks(self) -> None:
        """After a read was parsed: a head still incomplete is bounded in size and time."""
        if self._in_head:
            # Still inside the head after all of it: everything since it began is head.
            if self._head_bytes > MAX_HEAD_BYTES:
                self._reject_head()
            elif self._head_timer is None and not self.transport.is_closing():
                self._arm_head_timer()

    def _count_header(self, name: bytes, value: bytes, count: int) -> None:
        # Also checked here: a head that arrived whole in one read is complete by now.
        self._head_size += len(name) + len(value) + 4
        if count > MAX_HEADERS or self._head_size > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge


class LimitedHttpToolsProtocol(HeadLimits, HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded, timed request head."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        self._head_checks()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:  # the parser stopped on our callback's exception
            self._reject_head()
            return
        super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    # parser callbacks -----------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size = len(self.url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_header(name, value, len(self.headers))

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()
