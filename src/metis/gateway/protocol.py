"""The HTTP protocol of ``metis serve``: the gateway's routes on a lean request cycle.

`GatewayHttpProtocol` is uvicorn's httptools protocol with the head limits of
`metis.gateway.limits`, plus one change: a request for one of the gateway's
own paths (the app's ``fast_routes``: ``/v1/chat/completions``,
``/v1/messages``, ``/v1/embeddings``, ``/v1/models``) runs on `FastCycle`
instead of uvicorn's general ``RequestResponseCycle``, and calls the route's
handler directly instead of the middleware stack and the app's path lookup.
Every other request (API, dashboard, ingest) is uvicorn's, unchanged.

Why: measured at 500 requests/s open loop, uvicorn's general cycle costs
about 0.06 ms CPU per request more than a minimal httptools protocol
(0.12 vs 0.06 ms for a trivial app; docs/performance.md "Round 4"); for the
gateway that was a tenth of its CPU per request. The fast cycle keeps what
the gateway relies on and drops the rest:

- The handler is still an ASGI app: same scope (with ``method``, ``path``,
  ``raw_path``, ``query_string``, ``headers``), same ``receive``/``send``
  messages, the same flow control (reading pauses above 64 KiB of unread
  body), ``Expect: 100-continue``, pipelining, keep-alive and graceful
  shutdown (both through uvicorn's protocol, which sees this cycle through
  the same attributes as its own), and the same answers to a handler that
  raises (500 before the response started, connection closed after).
- Not done on these paths: uvicorn's ``ProxyHeadersMiddleware`` (the
  gateway never reads ``client`` or ``scheme``), and the access log line
  (``metis serve`` runs without it).
- A response with a ``content-length`` goes out in one write (status line,
  headers and body together); one without is chunked and its head is
  written at once, so a streaming client sees the headers before the first
  event.

It depends on uvicorn's protocol internals (``cycle``, ``pipeline``,
``flow``, ``server_state``), hence the upper bound on uvicorn in
pyproject.toml; tests/gateway/test_protocol.py fails if the fast path is
not taken.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import FlowControl

from metis.gateway import limits
from metis.gateway.limits import LimitedHttpToolsProtocol

log = logging.getLogger("uvicorn.error")

_HEADER_NAME_BAD = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_HEADER_VALUE_BAD = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_FAST_METHODS = frozenset((b"POST", b"GET"))


def _status_line(code: int) -> bytes:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


_STATUS_LINE = {code: _status_line(code) for code in range(100, 600)}


class _Signal:
    """Wakes the one ``receive()`` that waits; uvicorn's protocol calls ``set()``."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class FastCycle:
    """One request/response on a gateway path (see the module docstring).

    uvicorn's protocol reads and writes ``body``, ``more_body``,
    ``response_complete``, ``disconnected``, ``keep_alive`` and
    ``message_event`` exactly as on its own cycle, and starts ``run_asgi``.
    """

    __slots__ = (
        "_chunked",
        "_handed_last",
        "_head",
        "_loop",
        "_proto",
        "_remaining",
        "body",
        "disconnected",
        "flow",
        "keep_alive",
        "message_event",
        "more_body",
        "response_complete",
        "response_started",
        "scope",
        "transport",
        "waiting_for_100_continue",
    )

    def __init__(
        self,
        proto: GatewayHttpProtocol,
        scope: dict[str, Any],
        *,
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self._proto = proto
        self._loop = proto.loop
        self.scope = scope
        self.transport: asyncio.Transport = proto.transport
        self.flow: FlowControl = proto.flow
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.message_event = _Signal()
        self.disconnected = False
        self.body = bytearray()
        self.more_body = True
        self._handed_last = False
        self.response_started = False
        self.response_complete = False
        self._chunked = False
        self._remaining = 0
        self._head: bytes | None = None

    async def run_asgi(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if not self.response_started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.transport.close()

    async def _send_500(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"21"),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    # -- ASGI ------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        while not self.disconnected and not self.response_complete:
            if self.body or (not self.more_body and not self._handed_last):
                body = bytes(self.body)
                self.body = bytearray()
                more = self.more_body
                self._handed_last = not more
                self.flow.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            self.flow.resume_reading()
            waiter: asyncio.Future[None] = self._loop.create_future()
            self.message_event.waiter = waiter
            # Waiting for more of the body is bounded (BODY_IDLE_TIMEOUT_S between two
            # pieces, raised as TimeoutError); waiting for the disconnect after it is not.
            timer = (
                None
                if self._handed_last
                else self._loop.call_later(limits.BODY_IDLE_TIMEOUT_S, _expire, waiter)
            )
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                if self.message_event.waiter is waiter:
                    self.message_event.waiter = None
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self._start(message)
        elif not self.response_complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
                )
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, "
                "after response already completed."
            )

    def _start(self, message: dict[str, Any]) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        status = message["status"]
        content = [_STATUS_LINE[status]]
        has_close = False
        length: int | None = None
        chunked = False
        for name, value in (*self._proto.server_state.default_headers, *message["headers"]):
            if _HEADER_NAME_BAD.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _HEADER_VALUE_BAD.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and length is None and not chunked:
                length = int(value.decode())
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                length, chunked = None, True
            elif name == b"connection" and b"close" in [
                t.lower().strip() for t in value.split(b",")
            ]:
                self.keep_alive = False
                has_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
        if length is None and not chunked and status not in (204, 304):
            chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        head = b"".join(content)
        self._chunked = chunked
        self._remaining = length or 0
        if chunked:
            self.transport.write(head)  # a stream: the client sees its headers at once
        else:
            self._head = head  # goes out with the body, in one write

    def _body(self, body: bytes, more_body: bool) -> None:
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self._remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self._remaining -= len(body)
            data = body
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= 65536:
                self.transport.write(head + data)
            else:
                self.transport.writelines((head, data))
        elif data:
            self.transport.write(data)
        if not more_body:
            if self._remaining != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self._proto.on_response_complete()


def _fast_routes(app: Any) -> dict[str, Any]:
    """The ``fast_routes`` of ``app`` or of an app it wraps (uvicorn's middlewares keep
    the wrapped one in ``.app``); empty when there is none."""
    for _ in range(8):
        if app is None:
            break
        routes = getattr(app, "fast_routes", None)
        if isinstance(routes, dict):
            return routes
        app = getattr(app, "app", None)
    return {}


class GatewayHttpProtocol(LimitedHttpToolsProtocol):
    """uvicorn's httptools protocol with head limits and the gateway's fast cycle."""

    _idle_since: float | None = None  # loop time the last response completed; None: busy

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast = _fast_routes(self.app)

    # -- keep-alive ------------------------------------------------------------
    # uvicorn arms a timer when each response completes and cancels it when the next
    # request arrives: two timer operations per request. Here one timer per
    # connection checks when due whether the connection has been idle for
    # timeout_keep_alive, and re-arms for the rest if not; the close happens at the
    # same moment as uvicorn's would.
    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_due
            )

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # busy again; the timer, if armed, finds that out

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # busy: armed again when its response completes
        left = since + self.timeout_keep_alive - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def on_headers_complete(self) -> None:
        route = self._fast_route()
        if route is None:
            super().on_headers_complete()
            return
        handler, path, raw_path, query = route
        self._end_head()
        parser = self.parser
        http_version = parser.get_http_version()
        scope = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        # FastCycle.receive bounds each wait for the body (metis.gateway.app._read_body).
        scope["extensions"] = {"metis.body_idle_timeout": {}}
        existing = self.cycle
        cycle = FastCycle(
            self,
            scope,  # type: ignore[arg-type]
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            expect_100_continue=self.expect_100_continue,
        )
        self.cycle = cycle  # type: ignore[assignment]  # same attributes uvicorn uses
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, handler)  # type: ignore[arg-type]
        else:  # pipelined: uvicorn starts it when the one before completes
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, handler))  # type: ignore[arg-type]

    def _fast_route(self) -> tuple[Any, str, bytes, bytes] | None:
        """(handler, path, raw_path, query) when this request takes the fast cycle."""
        if not self._fast or self.limit_concurrency is not None:
            return None
        parser = self.parser
        if parser.get_method() not in _FAST_METHODS or parser.should_upgrade():
            return None
        parsed = httptools.parse_url(self.url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        path = self.root_path + path
        handler = self._fast.get(path)
        if handler is None:
            return None
        return handler, path, self.root_path.encode("ascii") + parsed.path, parsed.query or b""
