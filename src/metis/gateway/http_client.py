"""The gateway's upstream HTTP/1.1 client: pooled keep-alive connections, one write per request.

Why not aiohttp or httpx: the gateway sends one small POST per inbound
request and relays the answer, and a general-purpose client spent about
0.15 ms of CPU per call on machinery the gateway does not use (cookie jars,
redirects, proxies, tracing hooks, multipart, a task per timeout). This
client does the one thing: an ``asyncio.Protocol`` per connection, the
``httptools`` (llhttp) response parser, the request head and body sent in a
single ``transport.write``, timeouts as loop timers (docs/performance.md,
"Upstream client").

What a caller must know:

- `UpstreamClient.post` (and `UpstreamClient.request` for another method)
  returns a `Response` once the status line and
  headers arrived (else `TimeoutError` after ``timeout`` seconds, or an
  `UpstreamError` when the connection could not be made or broke). Read the
  body with `Response.read` or `Response.iter_any` (each wait between two
  pieces is bounded by ``idle_timeout``), then call `Response.release`
  exactly once: a fully read keep-alive response returns its connection to
  the pool, anything else closes it.
- A pooled connection the upstream closed while idle is not reused: its
  ``connection_lost`` ran, it sat idle longer than `IDLE_KEEPALIVE_S`, or
  its socket is readable (a close or bytes nobody asked for arrived but
  were not processed yet; urllib3 checks the same). A request is never
  sent twice: the upstream may have acted on (and billed) a request whose
  connection then broke, so that is a `ServerDisconnected` for the caller.
- ``https`` origins are verified against the trust store (the system's, or
  the CA bundle `metis.gateway.egress.ssl_context` names) and the host name.
  The request asks for ``accept-encoding: identity``; a gzip or deflate
  answer is decoded anyway (a corrupt or truncated one is an
  `InvalidResponse`), any other content coding is an `UpstreamError`.
- Egress proxy (``proxies``, from `metis.gateway.egress.ProxyRules`): chosen
  once per URL, so a client without proxies does no proxy work per call. An
  ``https`` origin behind a proxy is reached through an HTTP ``CONNECT``
  tunnel (then TLS to the origin with its name for SNI and verification); an
  ``http`` origin gets absolute-form requests (``POST http://host/path``)
  sent to the proxy, as curl, requests and httpx do. Connections are pooled
  per (proxy, origin). A proxy that refuses or cannot be reached is a
  `ProxyError` whose message names the proxy (never its credentials).
- Header names and values with CR, LF or NUL are refused (`UpstreamError`)
  rather than written: no header injection into the upstream request.
"""

from __future__ import annotations

import asyncio
import re
import select
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from metis.errors import ConfigError
from metis.gateway.egress import Proxy, ProxyRules

IDLE_KEEPALIVE_S = 30.0
"""An idle pooled connection older than this is closed instead of reused."""
HIGH_WATER = 1 << 20
"""Buffered response bytes above which the connection stops reading (backpressure)."""


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange (the gateway's 502)."""


class ConnectFailed(UpstreamError):
    """No connection could be opened (refused, unreachable, DNS, TLS handshake)."""


class ServerDisconnected(UpstreamError):
    """The upstream closed the connection before its answer was complete."""


class InvalidResponse(UpstreamError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class ProxyError(ConnectFailed):
    """The egress proxy could not be reached or refused the tunnel (message safe to show)."""


def describe(exc: UpstreamError) -> str:
    """What a client may be told about ``exc``: the class name, or a proxy error's message.

    Other errors' messages may quote what the upstream sent; a `ProxyError`
    message is built here from the proxy's address and status code only."""
    if isinstance(exc, ProxyError):
        return f"ProxyError: {exc}"
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Origin:
    host: str
    port: int
    tls: bool
    fixed_head: bytes = field(repr=False)
    """The ``host`` header line (and ``proxy-authorization`` for an http origin via a proxy)."""
    proxy: Proxy | None = None


_BAD_HEADER = re.compile(rb"[\r\n\x00]")
_header_lines: dict[tuple[str, str], bytes] = {}


def _header_bytes(name: str, value: str) -> bytes:
    """``name: value\r\n``, checked once per distinct pair (the same few on every call)."""
    key = (name, value)
    line = _header_lines.get(key)
    if line is None:
        try:
            line = f"{name}: {value}\r\n".encode("latin-1")
        except UnicodeEncodeError:
            raise UpstreamError(f"header {name!r} is not Latin-1 text") from None
        if _BAD_HEADER.search(line, 0, len(line) - 2):
            raise UpstreamError(f"header {name!r} holds a control character")
        if len(_header_lines) >= 4096:
            _header_lines.clear()
        _header_lines[key] = line
    return line


class Response:
    """One upstream answer: ``status``, ``headers`` (lower-case names), then the body."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_exc",
        "_released",
        "_waiter",
        "headers",
        "idle_timeout",
        "status",
    )

    def __init__(self, conn: _Conn, idle_timeout: float) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        self._decoder: Any = None
        self.idle_timeout = idle_timeout

    # -- fed by the connection -------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as e:
                self._fail(InvalidResponse(f"bad compressed body: {e}"))
                return
            if not data:
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        if self._exc is not None:  # e.g. a corrupt compressed body: stays an error
            self._wake()
            return
        d = self._decoder
        if d is not None:
            tail = d.flush()
            if tail:
                self._chunks.append(tail)
            if not d.eof:
                self._fail(InvalidResponse("compressed body ends before its end marker"))
                return
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done and self._exc is None:
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- read by the caller -----------------------------------------------------
    async def _wait(self) -> None:
        loop = self._conn.loop
        w = self._waiter = loop.create_future()
        timer = loop.call_at(loop.time() + self.idle_timeout, _expire, w)
        try:
            await w
        finally:
            timer.cancel()
            self._waiter = None

    def _take(self) -> bytes:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    async def read(self) -> bytes:
        """The whole (remaining) body."""
        parts: list[bytes] = []
        while True:
            if self._exc is not None:
                raise self._exc
            if self._chunks:
                parts.append(self._take())  # taking resumes a paused connection
            if self._done:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._wait()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each piece whatever was buffered."""
        while True:
            if self._chunks:  # what arrived before an error still counts (usage events)
                yield self._take()
            elif self._exc is not None:
                raise self._exc
            elif self._done:
                return
            else:
                await self._wait()

    def release(self) -> None:
        """Give the connection back (fully read keep-alive answer) or close it."""
        if self._released:
            return
        self._released = True
        self._conn.response_released(self._done and self._exc is None)


def _expire(fut: asyncio.Future[Any]) -> None:
    _fail_future(fut, TimeoutError())


def _fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail ``fut`` and mark its exception retrieved: its awaiter still gets it,
    and a waiter cancelled at the same moment leaves no "never retrieved" log."""
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the response it is currently reading."""

    def __init__(self, client: UpstreamClient, origin: _Origin) -> None:
        self.client = client
        self.origin = origin
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._resp: Response | None = None
        self._head: asyncio.Future[Response] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._complete = False
        self._paused = False
        self._framed = False  # Content-Length or chunked: not ended by close
        # The wait for a response head is bounded by one timer per connection, not one
        # per request: it is armed when none is, and when due it fails the head still
        # awaited if that head's deadline has passed, or re-arms for a later deadline.
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline = self._head_timer_at = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # bytes nobody asked for: never reuse this connection
            self.close()
            return
        try:
            parser.feed_data(data)
        except Exception as e:  # httptools.HttpParserError, or raised by a callback below
            self._broke(InvalidResponse(f"invalid HTTP response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        resp = self._resp
        if resp is not None and not self._complete:
            head = self._head
            if head is not None and not head.done():
                _fail_future(head, ServerDisconnected("upstream closed the connection"))
            elif not self._framed and resp.status and exc is None:  # close-delimited: the end
                self._complete = True
                resp._finish()
            else:
                resp._fail(ServerDisconnected("upstream closed the connection mid-body"))

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request
            raise InvalidResponse("unsolicited bytes after the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._resp is not None
        self._resp.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        resp, parser = self._resp, self._parser
        assert resp is not None and parser is not None
        resp.status = parser.get_status_code()
        if resp.status < 200:  # 1xx (e.g. 103 Early Hints): the real answer follows
            return
        h = resp.headers
        self._framed = "content-length" in h or "chunked" in h.get("transfer-encoding", "").lower()
        coding = h.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip"):
            resp._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            resp._decoder = zlib.decompressobj()
        elif coding not in ("identity", ""):
            self._broke(InvalidResponse(f"unsupported content-encoding {coding!r}"))
            self.close()
            return
        head = self._head
        if head is not None and not head.done():
            head.set_result(resp)

    def on_body(self, body: bytes) -> None:
        assert self._resp is not None
        self._resp._feed(body)

    def on_message_complete(self) -> None:
        assert self._resp is not None and self._parser is not None
        if self._resp.status < 200:
            self._resp.status, self._resp.headers = 0, {}
            return
        self._complete = True
        keep = self._parser.should_keep_alive()
        self._parser = None  # later bytes on this connection are unsolicited
        if not keep:
            self.closed = True  # answer complete; the connection is not reused
        self._resp._finish()

    # -- used by the client and the response ------------------------------------------------
    def start(
        self, data: bytes, head_timeout: float, idle_timeout: float
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        if self.closed:  # closed between connect and use: fail now, not after the timeout
            head_done: asyncio.Future[Response] = self.loop.create_future()
            _fail_future(head_done, ServerDisconnected("upstream closed the connection"))
            return head_done
        self._resp = Response(self, idle_timeout)
        self._parser = httptools.HttpResponseParser(self)
        self._complete = self._framed = False
        head = self._head = self.loop.create_future()
        self.transport.write(data)
        self._head_deadline = deadline = self.loop.time() + head_timeout
        if self._head_timer is None or deadline < self._head_timer_at:
            if self._head_timer is not None:  # a shorter timeout than the last one
                self._head_timer.cancel()
            self._head_timer_at = deadline
            self._head_timer = self.loop.call_at(deadline, self._head_due)
        return head

    def _head_due(self) -> None:
        self._head_timer = None
        head = self._head
        if head is None or head.done() or self.closed:
            return  # no head awaited: armed again by the next request
        if self.loop.time() >= self._head_deadline:
            _expire(head)
        else:  # a later request than the one this timer was armed for
            self._head_timer_at = self._head_deadline
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_due)

    def _broke(self, exc: UpstreamError) -> None:
        head = self._head
        if head is not None and not head.done():
            _fail_future(head, exc)
        elif self._resp is not None:
            self._resp._fail(exc)

    def readable(self) -> bool:
        """Whether the socket has something to read (while idle: a close, or stray bytes)."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return True
        try:
            return bool(select.select([sock.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def response_released(self, complete: bool) -> None:
        self._resp = self._head = None
        if complete and self._complete and not self.closed:
            self.resume()  # an answer released unread may have paused it
            self.idle_since = time.monotonic()
            self.client._put(self)
        else:
            self.close()

    def close(self, *, abort: bool = False) -> None:
        """Close the connection; ``abort`` drops it at once, without TLS's close_notify
        exchange (which a tunnelled connection's raw socket would otherwise outlive the
        loop waiting for, when the client closes at shutdown)."""
        self.closed = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class UpstreamClient:
    """A pool of keep-alive connections per origin (create inside the running loop)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        idle_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        proxies: ProxyRules | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._origins: dict[str, tuple[_Origin, bytes]] = {}
        self._idle: dict[_Origin, list[_Conn]] = {}
        self._all: set[_Conn] = set()
        self._ssl = ssl_context  # default: the system trust store (honours SSL_CERT_FILE)
        self._proxies = proxies
        self._closed = False

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Response:
        """POST ``body`` to ``url``; the answer once its head arrived (see the module doc)."""
        origin, path = self._split(url)
        head = [b"POST ", path, b" HTTP/1.1\r\n", origin.fixed_head]
        for k, v in headers.items():
            head.append(_header_bytes(k, v))
        head.append(b"accept-encoding: identity\r\ncontent-length: %d\r\n\r\n" % len(body))
        head.append(body)
        data = b"".join(head)
        conn = self._pooled(origin) or await self._connect(origin)
        return await self._exchange(conn, data, timeout)

    async def request(
        self, method: str, url: str, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Response:
        """Like `post`, for any method (``GET``, ``DELETE`` …; ``body`` may be empty).

        Not for ``HEAD``: its answer has no body, which the response parser does not expect."""
        if method == "POST":
            return await self.post(url, body, headers, timeout=timeout)
        if method not in ("GET", "DELETE", "PUT", "PATCH"):
            raise UpstreamError(f"method {method!r} is not supported")
        origin, path = self._split(url)
        head = [method.encode(), b" ", path, b" HTTP/1.1\r\n", origin.fixed_head]
        for k, v in headers.items():
            head.append(_header_bytes(k, v))
        head.append(b"accept-encoding: identity\r\ncontent-length: %d\r\n\r\n" % len(body))
        head.append(body)
        data = b"".join(head)
        conn = self._pooled(origin) or await self._connect(origin)
        return await self._exchange(conn, data, timeout)

    async def _exchange(self, conn: _Conn, data: bytes, timeout: float) -> Response:
        try:
            resp = await conn.start(data, timeout, self.idle_timeout)
        except BaseException:  # timeout, broken, cancelled: the answer is not read
            conn.close()
            raise
        origin = conn.origin
        if resp.status == 407 and origin.proxy is not None and not origin.tls:  # the proxy's
            resp.release()
            conn.close()
            raise ProxyError(f"proxy {origin.proxy.shown} answered 407 {_phrase(407)}")
        return resp

    async def close(self) -> None:
        """Close every connection (idle or in use), at once: the client is done."""
        self._closed = True
        for c in list(self._all):
            c.close(abort=True)
        self._all.clear()
        self._idle.clear()

    # -- pool ---------------------------------------------------------------------------
    def _split(self, url: str) -> tuple[_Origin, bytes]:
        hit = self._origins.get(url)
        if hit is None:
            u = urlsplit(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise UpstreamError(f"not an http(s) URL: {u.scheme}://…")
            tls = u.scheme == "https"
            port = u.port or (443 if tls else 80)
            default = port == (443 if tls else 80)
            host = u.hostname
            shown = f"[{host}]" if ":" in host else host
            authority = (shown if default else f"{shown}:{port}").encode("idna")
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            fixed = b"host: " + authority + b"\r\n"
            proxy = None
            if self._proxies is not None:
                try:
                    proxy = self._proxies.for_origin(u.scheme, host, port)
                except ConfigError as e:
                    raise ProxyError(str(e)) from None
                if proxy is not None and not tls:  # absolute-form to the proxy (RFC 9112 3.2.2)
                    path = f"http://{authority.decode()}{path}"
                    if proxy.authorization is not None:
                        fixed += b"proxy-authorization: " + proxy.authorization + b"\r\n"
            hit = (_Origin(host, port, tls, fixed, proxy), path.encode("latin-1"))
            if len(self._origins) < 1024:
                self._origins[url] = hit
        return hit

    def _pooled(self, origin: _Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            c = idle.pop()
            if not c.closed and now - c.idle_since < IDLE_KEEPALIVE_S and not c.readable():
                return c
            c.close()
        return None

    def _put(self, conn: _Conn) -> None:
        if self._closed:
            conn.close()
            return
        self._idle.setdefault(conn.origin, []).append(conn)

    def _forget(self, conn: _Conn) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    async def _connect(self, origin: _Origin) -> _Conn:
        ctx: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        conn = _Conn(self, origin)
        if origin.proxy is not None:
            await self._connect_via(origin.proxy, origin, conn, ctx)
            self._all.add(conn)
            return conn
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=ctx,
                    server_hostname=origin.host if ctx is not None else None,
                )
        except TimeoutError as e:
            raise ConnectFailed("connect timed out") from e
        except OSError as e:  # refused, unreachable, DNS (socket.gaierror), TLS (ssl.SSLError)
            raise ConnectFailed(type(e).__name__) from e
        self._all.add(conn)
        return conn

    async def _connect_via(
        self, proxy: Proxy, origin: _Origin, conn: _Conn, ctx: ssl.SSLContext | None
    ) -> None:
        """Connect ``conn`` to ``origin`` through ``proxy``: plain for http, a CONNECT tunnel
        then TLS for https (the whole within ``connect_timeout``)."""
        stage = "proxy"
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                if ctx is None:  # http origin: absolute-form requests on a connection to the proxy
                    await self.loop.create_connection(lambda: conn, proxy.host, proxy.port)
                    return
                tunnel = _Tunnel(self.loop, proxy.shown)
                transport, _ = await self.loop.create_connection(
                    lambda: tunnel, proxy.host, proxy.port
                )
                shown = f"[{origin.host}]" if ":" in origin.host else origin.host
                target = f"{shown}:{origin.port}".encode("idna")
                auth = b""
                if proxy.authorization is not None:
                    auth = b"proxy-authorization: " + proxy.authorization + b"\r\n"
                transport.write(
                    b"CONNECT %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (target, target, auth)
                )
                status = await tunnel.answer
                if not 200 <= status < 300:
                    raise ProxyError(
                        f"proxy {proxy.shown} answered CONNECT {target.decode()} "
                        f"with {status} {_phrase(status)}"
                    )
                stage = "tls"
                tls = await self.loop.start_tls(transport, tunnel, ctx, server_hostname=origin.host)
                if tls is None:  # only for a transport being closed
                    raise ConnectFailed("tunnel closed during the TLS handshake")
                transport = tls
                tls.set_protocol(conn)
                conn.connection_made(tls)
        except ProxyError:
            if transport is not None:
                transport.close()
            raise
        except (TimeoutError, OSError) as e:  # OSError: refused, DNS, TLS (ssl.SSLError)
            if transport is not None:
                transport.close()
            reason = "connect timed out" if isinstance(e, TimeoutError) else type(e).__name__
            if stage == "proxy":
                raise ProxyError(f"proxy {proxy.shown} not usable: {reason}") from e
            raise ConnectFailed(reason) from e
        except BaseException:
            if transport is not None:
                transport.close()
            raise


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_CONNECT_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")
MAX_PROXY_HEAD = 64 * 1024
"""The longest CONNECT answer head a proxy may send."""


class _Tunnel(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT: `answer` resolves to its status code.

    After a 2xx answer the connection carries the origin's TLS; a proxy that
    closes first, or sends a malformed or oversized head, is a `ProxyError`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, shown: str) -> None:
        self.answer: asyncio.Future[int] = loop.create_future()
        self.shown = shown
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return  # a refused tunnel's body; the connection is being closed
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_PROXY_HEAD:
                self._refuse("sent an oversized CONNECT answer")
            return
        m = _CONNECT_STATUS.match(self._buf)
        if m is None:
            self._refuse("sent an invalid CONNECT answer")
        elif len(self._buf) > end + 4 and 200 <= int(m.group(1)) < 300:
            self._refuse("sent bytes after its CONNECT answer")
        else:
            self.answer.set_result(int(m.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._refuse("closed the connection before answering CONNECT")

    def _refuse(self, what: str) -> None:
        _fail_future(self.answer, ProxyError(f"proxy {self.shown} {what}"))
