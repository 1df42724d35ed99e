"""The upstream HTTP/1.1 client against real sockets on 127.0.0.1.

Each test runs a small scripted HTTP server (asyncio streams) that answers
the way an upstream or a proxy in front of it might: keep-alive, chunked,
close-delimited, gzip, slow, broken, closing idle connections, TLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from metis.gateway import http_client
from metis.gateway.http_client import (
    ConnectFailed,
    InvalidResponse,
    ServerDisconnected,
    UpstreamClient,
    UpstreamError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._srv: asyncio.Server | None = None

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> Server:
        self._srv = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        self.port = self._srv.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(w)
        try:
            await self.handler(r, w, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    async def read_request(self, r: asyncio.StreamReader) -> bytes:
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        req = head + await r.readexactly(length)
        self.requests.append(req)
        return req

    async def stop(self) -> None:
        assert self._srv is not None
        for w in self.writers:
            w.close()
        self._srv.close()
        await self._srv.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(connect_timeout=2, idle_timeout=2)
    yield c
    await c.close()
    await asyncio.sleep(0)  # let the transports finish closing


async def serve(handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> Server:
    return await Server(handler).start(ssl_ctx)


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def keep_alive(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
    while True:
        req = await s.read_request(r)
        w.write(ok(b'{"n":%d,"len":%d}' % (len(s.requests), len(req))))
        await w.drain()


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(
    client: UpstreamClient,
) -> None:
    s = await serve(keep_alive)
    url = f"http://127.0.0.1:{s.port}/v1/chat/completions?x=1"
    for i in range(3):
        resp = await client.post(url, b'{"model":"m"}', {"authorization": "Bearer k"}, timeout=2)
        assert resp.status == 200 and resp.headers["content-type"] == "application/json"
        assert (await resp.read()).startswith(b'{"n":%d,' % (i + 1))
        resp.release()
    assert s.connections == 1
    head, body = s.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?x=1 HTTP/1.1"
    assert f"host: 127.0.0.1:{s.port}".encode() in lines
    assert b"authorization: Bearer k" in lines and b"content-length: 13" in lines
    assert body == b'{"model":"m"}'
    await s.stop()


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused(
    client: UpstreamClient,
) -> None:
    async def one_per_connection(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(r)
        w.write(ok(b"{}"))  # keep-alive answer, then the server hangs up anyway
        await w.drain()

    s = await serve(one_per_connection)
    url = f"http://127.0.0.1:{s.port}/v1/x"
    for _ in range(3):
        resp = await client.post(url, b"{}", {}, timeout=2)
        assert await resp.read() == b"{}"
        resp.release()
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
    assert s.connections == 3
    await s.stop()


async def test_a_close_not_processed_yet_is_seen_before_reuse(client: UpstreamClient) -> None:
    """The upstream's FIN is in the socket, but the loop has not read it yet."""

    async def answer_then_close(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(r)
        w.write(ok(b"{}"))
        await w.drain()
        await asyncio.sleep(0.05)  # then hang up (no "connection: close" was announced)

    s = await serve(answer_then_close)
    url = f"http://127.0.0.1:{s.port}/v1/x"
    resp = await client.post(url, b"{}", {}, timeout=2)
    assert await resp.read() == b"{}"
    conn = resp._conn
    resp.release()
    assert conn.transport is not None
    conn.transport.pause_reading()  # the loop will not notice the close by itself
    await asyncio.sleep(0.2)
    assert not conn.closed
    resp = await client.post(url, b"{}", {}, timeout=2)  # a new connection, not an error
    assert await resp.read() == b"{}"
    resp.release()
    assert s.connections == 2
    await s.stop()


async def test_a_request_is_never_sent_twice(client: UpstreamClient) -> None:
    """The upstream may have acted on (and billed) a request before its connection broke."""

    async def drop_second(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(ok(b"first"))
        await w.drain()
        await s.read_request(r)  # the next request on this connection: work, then hang up
        await asyncio.sleep(0.1)

    s = await serve(drop_second)
    url = f"http://127.0.0.1:{s.port}/v1/x"
    resp = await client.post(url, b"{}", {}, timeout=2)
    assert await resp.read() == b"first"
    resp.release()
    with pytest.raises(ServerDisconnected):
        await client.post(url, b"{}", {}, timeout=2)
    assert s.connections == 1 and len(s.requests) == 2
    await s.stop()


async def test_no_retry_once_the_upstream_answered_something(client: UpstreamClient) -> None:
    async def half_head(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-")
        await w.drain()

    s = await serve(half_head)
    with pytest.raises(ServerDisconnected):
        await client.post(f"http://127.0.0.1:{s.port}/v1/x", b"{}", {}, timeout=2)
    assert len(s.requests) == 1
    await s.stop()


async def test_an_answer_released_unread_does_not_leave_its_connection_paused(
    client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading pauses past HIGH_WATER; a pooled connection must read again."""
    monkeypatch.setattr(http_client, "HIGH_WATER", 10)
    s = await serve(keep_alive)
    url = f"http://127.0.0.1:{s.port}/v1/x"
    resp = await client.post(url, b"{}", {}, timeout=2)
    await asyncio.sleep(0.05)  # all of it arrived: more than HIGH_WATER buffered
    resp.release()  # e.g. the caller failed before reading it
    resp = await client.post(url, b"{}", {}, timeout=2)
    assert (await resp.read()).startswith(b'{"n":2,')
    resp.release()
    assert s.connections == 1
    await s.stop()


async def test_chunked_close_delimited_and_gzip_bodies(client: UpstreamClient) -> None:
    payload = b'{"usage":{"prompt_tokens":3}}'

    async def varied(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while True:
            req = await s.read_request(r)
            if b"/chunked" in req:
                w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for piece in (payload[:10], payload[10:]):
                    w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                w.write(b"0\r\n\r\n")
            elif b"/gzip" in req:
                w.write(ok(gzip.compress(payload), b"content-encoding: gzip\r\n"))
            else:  # HTTP/1.0 style: the body ends when the connection closes
                w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + payload)
                await w.drain()
                return
            await w.drain()

    s = await serve(varied)
    for path in ("/chunked", "/gzip", "/close"):
        resp = await client.post(f"http://127.0.0.1:{s.port}{path}", b"{}", {}, timeout=2)
        assert await resp.read() == payload, path
        resp.release()
    await s.stop()


async def test_streamed_pieces_arrive_as_sent_and_a_large_body_reads_whole(
    client: UpstreamClient,
) -> None:
    big = b"x" * (3 * http_client.HIGH_WATER)  # past the backpressure mark

    async def sse(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while True:
            req = await s.read_request(r)
            if b"/big" in req:
                w.write(ok(big))
                await w.drain()
                continue
            w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
            w.write(b"transfer-encoding: chunked\r\n\r\n")
            for i in range(3):
                ev = b"data: %d\n\n" % i
                w.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                await w.drain()
                await asyncio.sleep(0.05)
            w.write(b"0\r\n\r\n")
            await w.drain()

    s = await serve(sse)
    resp = await client.post(f"http://127.0.0.1:{s.port}/stream", b"{}", {}, timeout=2)
    pieces = [p async for p in resp.iter_any()]
    resp.release()
    assert pieces == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    resp = await client.post(f"http://127.0.0.1:{s.port}/big", b"{}", {}, timeout=2)
    assert await resp.read() == big
    resp.release()
    await s.stop()


async def test_timeouts_for_the_head_and_between_body_pieces() -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        req = await s.read_request(r)
        if b"/head" in req:
            await asyncio.sleep(5)
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        await w.drain()
        await asyncio.sleep(5)

    s = await serve(slow)
    c = UpstreamClient(connect_timeout=2, idle_timeout=0.2)
    with pytest.raises(TimeoutError):
        await c.post(f"http://127.0.0.1:{s.port}/head", b"{}", {}, timeout=0.2)
    resp = await c.post(f"http://127.0.0.1:{s.port}/body", b"{}", {}, timeout=2)
    with pytest.raises(TimeoutError):
        await resp.read()
    resp.release()  # an unfinished answer: the connection is closed, not pooled
    assert c._idle.get(next(iter(c._origins.values()))[0], []) == []
    await c.close()
    await s.stop()


async def test_the_head_timeout_of_each_request_on_a_reused_connection() -> None:
    """One head timer per connection serves every request on it: a later request's
    deadline, shorter or longer than the one the timer was armed for, still holds."""

    async def fast_or_hang(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        while True:
            req = await s.read_request(r)
            if b"/hang" in req:
                await asyncio.sleep(10)
            w.write(ok(b"{}"))
            await w.drain()

    s = await serve(fast_or_hang)
    base = f"http://127.0.0.1:{s.port}"
    loop = asyncio.get_running_loop()
    for first, second, wait in ((5.0, 0.2, 0.0), (0.3, 0.4, 0.2)):
        c = UpstreamClient(connect_timeout=2, idle_timeout=2)
        (await c.post(base + "/ok", b"{}", {}, timeout=first)).release()
        await asyncio.sleep(wait)  # (second case) the first timer falls due mid-request
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await c.post(base + "/hang", b"{}", {}, timeout=second)
        took = loop.time() - t0
        assert second - 0.05 <= took < second + 0.5, (first, second, took)
        await c.close()
    assert s.connections == 2  # each client reused its one connection
    await s.stop()


async def test_broken_answers_are_upstream_errors(client: UpstreamClient) -> None:
    async def broken(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        req = await s.read_request(r)
        if b"/garbage" in req:
            w.write(b"SMTP ready\r\n\r\n")
        elif b"/brotli" in req:
            w.write(ok(b"\x00\x01", b"content-encoding: br\r\n"))
        else:  # promises 100 bytes, sends 5, hangs up
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n12345")
        await w.drain()

    s = await serve(broken)
    base = f"http://127.0.0.1:{s.port}"
    with pytest.raises(InvalidResponse):
        await client.post(base + "/garbage", b"{}", {}, timeout=2)
    with pytest.raises(InvalidResponse, match="content-encoding"):
        await client.post(base + "/brotli", b"{}", {}, timeout=2)
    resp = await client.post(base + "/short", b"{}", {}, timeout=2)
    with pytest.raises(ServerDisconnected):
        await resp.read()
    resp.release()
    await s.stop()


async def test_cut_or_corrupt_bodies_are_never_a_success(client: UpstreamClient) -> None:
    payload = b'{"usage":{"prompt_tokens":3}}' * 20
    packed = gzip.compress(payload)

    async def damaged(r: asyncio.StreamReader, w: asyncio.StreamWriter, s: Server) -> None:
        req = await s.read_request(r)
        if b"/corrupt-gzip" in req:
            w.write(ok(packed[:30] + b"\xff" * 20 + packed[50:], b"content-encoding: gzip\r\n"))
        elif b"/short-gzip" in req:
            w.write(ok(packed[: len(packed) // 2], b"content-encoding: gzip\r\n"))
        elif b"/chunked" in req:  # capitalised, and cut before the last chunk
            w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n")
        else:  # close-delimited, then a reset instead of a clean close
            w.write(b"HTTP/1.1 200 OK\r\n\r\n" + payload[:10])
            await w.drain()
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            return
        await w.drain()

    s = await serve(damaged)
    base = f"http://127.0.0.1:{s.port}"
    for path, err in (
        ("/corrupt-gzip", InvalidResponse),
        ("/short-gzip", InvalidResponse),
        ("/chunked", ServerDisconnected),
        ("/reset", ServerDisconnected),
    ):
        resp = await client.post(base + path, b"{}", {}, timeout=2)
        with pytest.raises(err):
            await resp.read()
        resp.release()
    # A stream cut short still hands over what arrived (a usage event may be in it).
    resp = await client.post(base + "/chunked", b"{}", {}, timeout=2)
    pieces = []
    with pytest.raises(ServerDisconnected):
        async for piece in resp.iter_any():
            pieces.append(piece)
    resp.release()
    assert pieces == [b"hello"]
    await s.stop()


async def test_connect_failures_and_header_injection(client: UpstreamClient) -> None:
    s = await serve(keep_alive)
    port = s.port
    await s.stop()
    with pytest.raises(ConnectFailed):
        await client.post(f"http://127.0.0.1:{port}/v1/x", b"{}", {}, timeout=2)
    with pytest.raises(UpstreamError, match="control character"):
        await client.post("http://127.0.0.1:1/v1/x", b"{}", {"x-a": "v\r\nx-b: 1"}, timeout=2)
    with pytest.raises(UpstreamError, match="Latin-1"):  # a client's header value, e.g.
        await client.post(
            "http://127.0.0.1:1/v1/x", b"{}", {"anthropic-beta": "b-\u20ac"}, timeout=2
        )
    with pytest.raises(UpstreamError, match="not an http"):
        await client.post("ftp://127.0.0.1/v1/x", b"{}", {}, timeout=2)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_p, key_p = tmp / "cert.pem", tmp / "key.pem"
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_p.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_p, key_p


async def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    s = await serve(keep_alive, server_ctx)
    url = f"https://127.0.0.1:{s.port}/v1/x"

    untrusting = UpstreamClient(connect_timeout=2, idle_timeout=2)  # system trust store
    with pytest.raises(ConnectFailed, match="SSLCertVerificationError"):
        await untrusting.post(url, b"{}", {}, timeout=2)
    await untrusting.close()

    trusting = UpstreamClient(
        connect_timeout=2, idle_timeout=2, ssl_context=ssl.create_default_context(cafile=cert)
    )
    for _ in range(2):
        resp = await trusting.post(url, b"{}", {}, timeout=2)
        assert resp.status == 200 and (await resp.read()).startswith(b'{"n":')
        resp.release()
    assert s.connections == 1
    await trusting.close()
    await asyncio.sleep(0.05)
    await s.stop()
