"""The HTTP protocol of ``metis serve``: the gateway's requests without a framework.

Measured at 500 requests/s open loop (docs/performance.md "Round 4"), a
trivial app costs about 0.12 ms CPU per request behind uvicorn's httptools
protocol and 0.05 ms behind a minimal httptools protocol (`bench/protocol_cpu.py`); the gateway pays
that difference on every call. `GatewayHttpProtocol` is a minimal protocol
for the connections that carry gateway calls (it recovers about a third of
that gap; the rest is per-request Python it still needs):

- A connection whose first request line is for one of the app's
  ``fast_routes`` (exact paths: ``/v1/chat/completions``, ``/v1/messages``,
  ``/v1/embeddings``, ``/v1/responses``, ``/v1/messages/count_tokens``,
  ``/v1/models``; GET or POST) or ``fast_prefixes`` (``/v1/responses/``,
  ``/v1/models/``; GET, POST or DELETE) stays with this protocol. Its
  gateway requests call the route's handler directly (no middleware, no
  path lookup); any other request on it goes to the full app (with
  uvicorn's proxy-headers middleware), on the same lean cycle.
- Every other connection (dashboard, API, ingest, metrics) is handed, with
  the bytes read so far, to uvicorn's own protocol with the head limits
  (`metis.gateway.limits.LimitedHttpToolsProtocol`), and is served exactly
  as before.

What the lean cycle (`FastCycle`) keeps of uvicorn's: ASGI 3 HTTP scope and
messages; request body flow control (reading pauses above 64 KiB unread);
``Expect: 100-continue``; pipelining; keep-alive (closed after uvicorn's
``timeout_keep_alive`` idle; one timer per connection); HTTP/1.0; HEAD;
graceful shutdown (uvicorn's server calls ``shutdown()`` and waits for the
tasks); a 500 for a handler that raised before answering, a cut connection
after; invalid requests get 400, and the head limits of
`metis.gateway.limits` (431/408) hold. It adds a bound on each wait for a
gateway request's body (``BODY_IDLE_TIMEOUT_S``, the scope's
``metis.body_idle_timeout`` extension). Not on these connections: the
access log (``metis serve`` runs without it), websockets and h2c (Metis
has none: an upgrade request is answered over HTTP/1.1, e.g. 426 on
``/v1/responses``, then the connection closes) and ``limit_concurrency`` (when set, every connection
is uvicorn's).

It uses a few uvicorn internals (``server_state``, ``config`` fields,
``FlowControl``), hence the upper bound on uvicorn in pyproject.toml;
tests/gateway/test_protocol.py fails if the fast path is not taken.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from metis.gateway import limits
from metis.gateway.limits import HeadLimits, LimitedHttpToolsProtocol, _plain

log = logging.getLogger("uvicorn.error")

_HEADER_NAME_BAD = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_HEADER_VALUE_BAD = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_FAST_METHODS = frozenset((b"POST", b"GET"))
_PREFIX_METHODS = frozenset((b"POST", b"GET", b"DELETE"))


def _status_line(code: int) -> bytes:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


_STATUS_LINE = {code: _status_line(code) for code in range(100, 600)}


class _Signal:
    """Wakes the one ``receive()`` that waits; the protocol calls ``set()`` when body
    bytes, the body's end or a disconnect arrive."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)


_defaults: tuple[list[tuple[bytes, bytes]] | None, bytes | None] = (None, None)


def _default_block(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """uvicorn's default headers (``date``, ``server``, ``--header``) as one checked
    block, built once per list (uvicorn's server replaces the list every second);
    None when one of them is a header the cycle must interpret. The cache is one
    tuple, so servers in threads of one process never pair a list with another's
    block."""
    global _defaults
    source, block = _defaults
    if headers is not source:
        block = _join_checked(headers)
        _defaults = (headers, block)
    return block


def _join_checked(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    lines = []
    for name, value in headers:
        low = name.lower()
        if (
            _HEADER_NAME_BAD.search(name)
            or _HEADER_VALUE_BAD.search(value)
            or low in (b"content-length", b"transfer-encoding", b"connection")
        ):
            return None
        lines.append(low + b": " + value + b"\r\n")
    return b"".join(lines)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class FastCycle:
    """One request/response of `GatewayHttpProtocol`: the ASGI ``receive``/``send``."""

    __slots__ = (
        "_body_timeout",
        "_chunked",
        "_handed_last",
        "_head",
        "_loop",
        "_no_body",
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
        body_timeout: bool,
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
        self._body_timeout = body_timeout  # bound each wait for the body (gateway routes)
        self._no_body = scope["method"] == "HEAD"

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
                self._loop.call_later(limits.BODY_IDLE_TIMEOUT_S, _expire, waiter)
                if self._body_timeout and not self._handed_last
                else None
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
        has_close = False
        length: int | None = None
        chunked = False
        defaults = self._proto.server_state.default_headers
        block = _default_block(defaults)
        if block is None:  # an unusual default header: checked like the answer's own
            content = [_STATUS_LINE[status]]
            headers: Any = (*defaults, *message.get("headers", ()))
        else:
            content = [_STATUS_LINE[status], block]
            headers = message.get("headers", ())
        for name, value in headers:
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
        if self._no_body:
            chunked = False
        elif length is None and not chunked and status not in (204, 304):
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
        if self._no_body:  # HEAD: the headers of the GET answer, no body
            data, self._remaining = b"", 0
        elif self._chunked:
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
            self._proto.response_complete()


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


def _fast_prefixes(app: Any) -> tuple[tuple[str, Any], ...]:
    """The ``fast_prefixes`` ((path prefix, handler), …) of ``app`` or an app it wraps."""
    for _ in range(8):
        if app is None:
            break
        prefixes = getattr(app, "fast_prefixes", None)
        if isinstance(prefixes, tuple):
            return prefixes
        app = getattr(app, "app", None)
    return ()


def _request_lines(
    routes: dict[str, Any], prefixes: tuple[tuple[str, Any], ...] = ()
) -> tuple[bytes, ...]:
    """How a request for a fast route begins on the wire (method, target, then space or '?'
    for an exact path; the prefix itself for a prefix route)."""
    out = []
    for path in routes:
        for method in _FAST_METHODS:
            for after in (b" ", b"?"):
                out.append(method + b" " + path.encode("latin-1") + after)
    for prefix, _ in prefixes:
        for method in _PREFIX_METHODS:
            out.append(method + b" " + prefix.encode("latin-1"))
    return tuple(out)


class GatewayHttpProtocol(HeadLimits, asyncio.Protocol):
    """uvicorn's ``http=`` protocol for ``metis serve`` (see the module docstring)."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.root_path: str = config.root_path
        self.timeout_keep_alive: float = config.timeout_keep_alive
        self._fast = _fast_routes(self.app)
        self._prefixes = _fast_prefixes(self.app)
        self._lines = (
            _request_lines(self._fast, self._prefixes)
            if self._fast and not self.root_path and config.limit_concurrency is None
            else ()
        )
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.parser: httptools.HttpRequestParser | None = None  # set once the connection is ours
        self._first = b""  # bytes read before deciding whose connection this is
        self._opened = 0.0
        self.cycle: FastCycle | None = None
        self.pipeline: deque[tuple[FastCycle, Any]] = deque()
        self._idle_since: float | None = None  # when the last response completed; None: busy
        self._keep_alive: asyncio.TimerHandle | None = None
        # per request
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100_continue = False
        self._addr: tuple[Any, Any, str] | None = None  # server, client, scheme
        self._asgi: dict[str, str] = {}  # the scope's "asgi", one per connection

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server_state.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport)
        self._opened = self.loop.time()
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            data = self._first + data
            mine = self._is_gateway_connection(data)
            if mine is None:  # too short to tell yet
                self._first = data
                self._in_head, self._head_bytes = True, len(data)
                return
            self._first, self._head_bytes = b"", 0  # counted again below, whole
            if not mine:
                self._hand_over(data)
                return
            parser = self.parser = httptools.HttpRequestParser(self)
            parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if self._in_head:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No websockets or h2c here. The request itself was parsed and is being
            # answered over HTTP/1.1 (as uvicorn does); the parser stops at an
            # upgrade, so the connection closes after that answer.
            log.warning("Unsupported upgrade request.")
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
            else:
                self.transport.close()
            return
        except httptools.HttpParserError:
            if self._too_large:  # the parser stopped on our callback's exception
                self._reject_head()
            else:
                self._send_400("Invalid HTTP request received.")
            return
        self._head_checks()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._end_head()
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()
        if self._keep_alive is not None:
            self._keep_alive.cancel()
            self._keep_alive = None
        if exc is None:
            self.transport.close()
        self.parser = None

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def shutdown(self) -> None:
        """Graceful shutdown (uvicorn's server): close when idle, else after this answer."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False

    # -- whose connection ------------------------------------------------------------
    def _is_gateway_connection(self, data: bytes) -> bool | None:
        """True if ``data`` begins with a fast route's request line, None if it may still."""
        undecided = False
        for line in self._lines:
            if data.startswith(line):
                return True
            if len(data) < len(line) and line.startswith(data):
                undecided = True
        return None if undecided else False

    def _hand_over(self, data: bytes) -> None:
        """Give the connection, and what it sent so far, to uvicorn's protocol."""
        proto = LimitedHttpToolsProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.server_state.connections.discard(self)
        self._end_head()
        proto.connection_made(self.transport)
        proto._arm_head_timer(self._opened + limits.HEAD_TIMEOUT_S)  # from the opening
        self.transport.set_protocol(proto)
        proto.data_received(data)

    # -- parser callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._idle_since = None  # busy (bytes between requests, e.g. a stray CRLF, are not)
        self.url = b""
        self.headers = []
        self.expect_100_continue = False
        self._start_head()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_size = len(self.url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))
        self._count_header(name, value, len(self.headers))

    def on_headers_complete(self) -> None:
        self._end_head()
        parser = self.parser
        assert parser is not None
        method = parser.get_method()
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        handler = self._fast.get(path) if method in _FAST_METHODS else None
        if handler is None and self._prefixes and method in _PREFIX_METHODS:
            for prefix, h in self._prefixes:
                if path.startswith(prefix):
                    handler = h
                    break
        http_version = parser.get_http_version()
        if self._addr is None:
            t = self.transport
            self._addr = (get_local_addr(t), get_remote_addr(t), "https" if is_ssl(t) else "http")
            self._asgi = {"version": self.config.asgi_version, "spec_version": "2.3"}
        server, client, scheme = self._addr
        scope = {
            "type": "http",
            "asgi": self._asgi,
            "http_version": http_version,
            "server": server,
            "client": client,
            "scheme": scheme,
            "root_path": self.root_path,
            "method": method.decode("ascii"),
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        if handler is None:
            handler = self.app  # the full app, its middlewares included
        else:
            scope["extensions"] = {"metis.body_idle_timeout": {}}
        existing = self.cycle
        cycle = self.cycle = FastCycle(
            self,
            scope,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            expect_100_continue=self.expect_100_continue,
            body_timeout=handler is not self.app,
        )
        if existing is None or existing.response_complete:
            self._start(cycle, handler)
        else:  # pipelined: started when the one before completes
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, handler))

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    # -- requests ---------------------------------------------------------------------
    def _start(self, cycle: FastCycle, app: Any) -> None:
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def response_complete(self) -> None:
        """Called by the cycle once its answer is sent."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start(cycle, app)
            return
        # Keep-alive: one timer per connection, which when due checks whether the
        # connection has been idle for timeout_keep_alive (else re-arms for the rest),
        # instead of arming one on every answer and cancelling it on the next request.
        self._idle_since = self.loop.time()
        if self._keep_alive is None:
            self._keep_alive = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self._keep_alive = None
        since = self._idle_since
        if since is None or self.transport.is_closing():
            return  # busy: armed again when its answer completes
        left = since + self.timeout_keep_alive - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self._keep_alive = self.loop.call_later(left, self._keep_alive_due)

    def _send_400(self, msg: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(_plain(b"400 Bad Request", msg.encode()))
            self.transport.close()
