"""Oversized and unfinished requests on the real server (docs/gateway.md "Limits").

Raw sockets against ``metis serve``'s HTTP protocol on 127.0.0.1: a request
head over 64 KiB or with over 100 headers gets 431, one that never finishes
408; a body over 32 MiB gets 413 in the inbound shape's envelope (before it
is read when Content-Length says so), one that stalls 408. Never a 500, the
connection is closed, and the server answers normally afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from metis.gateway import limits
from tests.plugins.servers import GatewayServer


def _port(gw: GatewayServer) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def exchange(gw: GatewayServer, data: bytes, *, wait: float = 10.0) -> tuple[int | None, bytes]:
    """Send ``data`` on a fresh connection; (status or None if closed without one, body)."""
    with socket.create_connection(("127.0.0.1", _port(gw)), timeout=wait) as s:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            s.sendall(data)
        return _read(s)


def _read(s: socket.socket) -> tuple[int | None, bytes]:
    buf = b""
    try:
        while chunk := s.recv(65536):
            buf += chunk
    except OSError:
        pass
    if not buf.startswith(b"HTTP/1.1 "):
        return None, buf
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def post_head(path: str, secret: str, extra: bytes = b"", length: int | None = None) -> bytes:
    h = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    if length is not None:
        h += f"Content-Length: {length}\r\n".encode()
    return h + extra + b"\r\n"


def assert_healthy(gw: GatewayServer, secret: str) -> None:
    """The server still answers a normal request."""
    r = gw.openai(secret).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content


@pytest.fixture
def key(gateway: GatewayServer) -> str:
    return gateway.issue_key("limits")[1]


def test_oversized_heads_get_431(gateway: GatewayServer, key: str) -> None:
    big = b"X-Big: " + b"a" * (limits.MAX_HEAD_BYTES + 1) + b"\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(limits.MAX_HEADERS + 1))
    for extra in (big, many, b"X-Huge: " + b"a" * (8 * 1024 * 1024) + b"\r\n"):
        status, body = exchange(gateway, post_head("/v1/chat/completions", key, extra, 2) + b"{}")
        assert status == 431, (len(extra), status, body[:100])
    # Just under both limits is an ordinary request (400: the body lacks a model).
    ok = b"X-Big: " + b"a" * (limits.MAX_HEAD_BYTES // 2) + b"\r\n"
    ok += b"".join(b"X-H%d: v\r\n" % i for i in range(limits.MAX_HEADERS - 10))
    status, body = exchange(gateway, post_head("/v1/chat/completions", key, ok, 2) + b"{}")
    assert status == 400 and b"'model' is required" in body
    assert_healthy(gateway, key)


@pytest.mark.parametrize(
    ("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")]
)
def test_bodies_over_the_limit_get_413_in_the_shape(
    gateway: GatewayServer, key: str, path: str, shape: str
) -> None:
    # Announced by Content-Length: refused before any of it is read.
    t0 = time.monotonic()
    status, body = exchange(gateway, post_head(path, key, length=limits.MAX_BODY_BYTES + 1))
    assert status == 413 and time.monotonic() - t0 < 5
    err = json.loads(body)["error"]
    assert (err["type"] if shape == "anthropic" else err["code"]) == "request_too_large"
    # Chunked, no length: refused once it grows past the limit.
    chunk = b"%x\r\n" % (1024 * 1024) + b"a" * (1024 * 1024) + b"\r\n"
    head = post_head(path, key, b"Transfer-Encoding: chunked\r\n")
    status, body = exchange(gateway, head + chunk * (limits.MAX_BODY_BYTES // 2**20 + 2))
    assert status in (413, None), body[:200]  # 413, or closed while we were still sending
    if status == 413:
        assert b"request_too_large" in body
    assert_healthy(gateway, key)


def test_unfinished_requests_get_408(
    gateway: GatewayServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_S", 0.5)
    monkeypatch.setattr(limits, "BODY_IDLE_TIMEOUT_S", 0.5)
    # A head that never ends: 408. A connection on which nothing is sent: closed.
    for data, want in (
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: a", 408),
        (b"", None),
    ):
        t0 = time.monotonic()
        status, body = exchange(gateway, data)
        assert status == want and time.monotonic() - t0 < 5
        if want is None:
            assert body == b""
    # A body that never finishes: 10 of the 1000 announced bytes.
    t0 = time.monotonic()
    status, body = exchange(gateway, post_head("/v1/messages", key, length=1000) + b'{"model":')
    assert status == 408 and time.monotonic() - t0 < 5
    assert json.loads(body)["error"]["message"] == "request body not received in time"
    assert_healthy(gateway, key)


def test_the_head_limits_hold_on_connections_handed_to_uvicorn(
    gateway: GatewayServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that does not begin with a gateway request is uvicorn's
    (metis.gateway.protocol): the same 431 and 408, the head timer counted
    from the connection's opening, not from the hand-over."""
    big = b"X-Big: " + b"a" * (limits.MAX_HEAD_BYTES + 1) + b"\r\n"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(limits.MAX_HEADERS + 1))
    for extra in (big, many):
        status, _ = exchange(gateway, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        assert status == 431
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_S", 0.6)
    with socket.create_connection(("127.0.0.1", _port(gateway)), timeout=10) as s:
        t0 = time.monotonic()
        time.sleep(0.4)  # most of the head timeout passes before the first byte
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        status, _ = _read(s)
        assert status == 408 and time.monotonic() - t0 < 0.6 + 0.4
    assert_healthy(gateway, key)


def test_no_500_was_answered(gateway: GatewayServer, key: str) -> None:
    """The limits answer before the gateway's own error paths: the stats count none."""
    exchange(gateway, post_head("/v1/chat/completions", key, length=limits.MAX_BODY_BYTES + 1))
    exchange(gateway, post_head("/v1/chat/completions", key, b"X: " + b"a" * 100_000 + b"\r\n"))
    assert_healthy(gateway, key)
    assert gateway.gw.stats.requests >= 2
