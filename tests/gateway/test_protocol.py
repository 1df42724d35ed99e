"""The gateway's fast request cycle (metis.gateway.protocol) over real sockets.

A small app whose general path answers 404 "general" and whose ``fast_routes``
echo, stream, fail or wait for the client, served by uvicorn with the same
protocol class as ``metis serve``: if a request did not take the fast cycle
it would get the 404.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from metis.gateway import limits
from metis.util.server_thread import ServerThread

EVENTS: list[str] = []


async def _read_all(receive: Any) -> bytes:
    parts = []
    while True:
        m = await receive()
        assert m["type"] == "http.request", m
        parts.append(m["body"])
        if not m["more_body"]:
            return b"".join(parts)


async def _json(send: Any, obj: Any, status: int = 200) -> None:
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    try:
        body = await _read_all(receive)
    except TimeoutError:
        await _json(send, {"error": "body timeout"}, 408)
        return
    await _json(
        send,
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "extensions": sorted(scope.get("extensions", {})),
            "len": len(body),
            "sum": sum(body),
        },
    )


async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-s", b"1")]})
    for piece in (b"one ", b"", b"two ", b"three"):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def boom(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("boom (expected in this test)")


async def boom_late(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom late (expected in this test)")


async def hold(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _read_all(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first", "more_body": True})
    msg = await receive()  # returns only when the client goes away
    EVENTS.append(msg["type"])


async def body_or_gone(scope: dict[str, Any], receive: Any, send: Any) -> None:
    try:
        await _read_all(receive)
    except AssertionError:  # receive() reported the client gone
        EVENTS.append("gone mid-body")
        return
    await _json(send, {})


async def general(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"general"})


general.fast_routes = {  # type: ignore[attr-defined]
    "/echo": echo,
    "/stream": stream,
    "/boom": boom,
    "/boom-late": boom_late,
    "/hold": hold,
    "/body-or-gone": body_or_gone,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(general, lifespan="off", timeout_keep_alive=0.6) as srv:
        yield srv


def _raw(srv: ServerThread) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    return s


def _recv_until(s: socket.socket, done: Callable[[bytes], bool], data: bytes = b"") -> bytes:
    """Read until ``done(data)``; a connection closed before that fails the test."""
    while not done(data):
        chunk = s.recv(65536)
        assert chunk, f"closed early after {data!r}"
        data += chunk
    return data


def _read_responses(s: socket.socket, n: int) -> list[tuple[bytes, bytes]]:
    """Read ``n`` content-length responses: [(head, body)]."""
    buf, out = b"", []
    while len(out) < n:
        buf = _recv_until(s, lambda b: b"\r\n\r\n" in b, buf)
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        buf = _recv_until(s, lambda b, n=length: len(b) >= n, buf)
        out.append((head, buf[:length]))
        buf = buf[length:]
    return out


def test_gateway_paths_take_the_fast_cycle_with_a_full_scope(server: ServerThread) -> None:
    r = httpx.post(server.url + "/echo?a=1", content=b"\x01\x02\x03", headers={"X-Up": "V"})
    assert r.status_code == 200
    got = r.json()
    assert got["method"] == "POST" and got["path"] == "/echo" and got["query"] == "a=1"
    assert got["headers"]["x-up"] == "V"  # names lowercased, values as sent
    assert got["extensions"] == ["metis.body_idle_timeout"]
    assert (got["len"], got["sum"]) == (3, 6)
    assert "date" in r.headers and r.headers["content-type"] == "application/json"
    assert httpx.get(server.url + "/echo").json()["method"] == "GET"
    # Other paths and methods are uvicorn's general cycle and the app's own dispatch.
    assert httpx.get(server.url + "/other").text == "general"
    assert httpx.put(server.url + "/echo").text == "general"


def test_other_requests_on_a_gateway_connection_reach_the_full_app(
    server: ServerThread,
) -> None:
    with _raw(server) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\na")
        assert json.loads(_read_responses(s, 1)[0][1])["len"] == 1
        s.sendall(b"GET /other HTTP/1.1\r\nhost: x\r\n\r\n")  # same connection
        data = _recv_until(s, lambda b: b.endswith(b"0\r\n\r\n"))
        assert data.startswith(b"HTTP/1.1 404") and b"\r\n7\r\ngeneral\r\n" in data
        s.sendall(b"HEAD /echo HTTP/1.1\r\nhost: x\r\n\r\n")  # HEAD: headers, no body
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nbb")
        data = _recv_until(s, lambda b: b.count(b"\r\n\r\n") >= 2)
        head, rest = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 404") and b"transfer-encoding" not in head.lower()
        # No body after the HEAD answer: the next bytes are the POST's answer.
        assert rest.startswith(b"HTTP/1.1 200")


def test_a_request_line_split_across_reads_and_an_invalid_request(
    server: ServerThread,
) -> None:
    with _raw(server) as s:
        for piece in (
            b"PO",
            b"ST /ec",
            b"ho HTTP/1.1\r\nhost: x\r\ncontent-le",
            b"ngth: 0\r\n\r\n",
        ):
            s.sendall(piece)
            time.sleep(0.05)
        assert json.loads(_read_responses(s, 1)[0][1])["len"] == 0
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: zz\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400")  # and the connection is closed


def test_keep_alive_and_pipelined_requests_answer_in_order(server: ServerThread) -> None:
    with _raw(server) as s:
        reqs = b"".join(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(b), b)
            for b in (b"a", b"bb", b"ccc")
        )
        s.sendall(reqs)  # three requests in one write
        answers = _read_responses(s, 3)
        assert [json.loads(b)["len"] for _, b in answers] == [1, 2, 3]
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\ndddd")
        assert json.loads(_read_responses(s, 1)[0][1])["len"] == 4  # same connection


def test_chunked_and_large_request_bodies(server: ServerThread) -> None:
    def pieces() -> Iterator[bytes]:
        for i in range(40):
            yield bytes([i % 7]) * 50_000  # 2 MB: over the flow-control high-water mark

    r = httpx.post(server.url + "/echo", content=pieces())  # Transfer-Encoding: chunked
    assert r.json()["len"] == 2_000_000
    assert r.json()["sum"] == sum((i % 7) * 50_000 for i in range(40))


def test_expect_100_continue(server: ServerThread) -> None:
    with _raw(server) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hi")
        assert json.loads(_read_responses(s, 1)[0][1])["len"] == 2


def test_http_1_0_closes_the_connection(server: ServerThread) -> None:
    with _raw(server) as s:
        s.sendall(b"POST /echo HTTP/1.0\r\ncontent-length: 1\r\n\r\nz")
        head, body = _read_responses(s, 1)[0]
        assert b"connection: close" in head.lower() and json.loads(body)["len"] == 1
        assert s.recv(10) == b""


def test_a_streamed_response_is_chunked_and_whole(server: ServerThread) -> None:
    with httpx.stream("POST", server.url + "/stream", content=b"{}") as r:
        assert r.headers["transfer-encoding"] == "chunked" and r.headers["x-s"] == "1"
        assert b"".join(r.iter_raw()) == b"one two three"
    with _raw(server) as s:  # the wire format itself
        s.sendall(b"POST /stream HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        data = _recv_until(s, lambda b: b.endswith(b"0\r\n\r\n"))
        assert data.split(b"\r\n\r\n", 1)[1] == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"


def test_a_handler_that_raises(server: ServerThread) -> None:
    r = httpx.post(server.url + "/boom", content=b"")
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    with pytest.raises(httpx.RemoteProtocolError):  # started: the connection is cut
        httpx.post(server.url + "/boom-late", content=b"")


def test_receive_reports_a_client_that_went_away(server: ServerThread) -> None:
    EVENTS.clear()
    with _raw(server) as s:
        s.sendall(b"POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        assert b"first" in s.recv(65536)
    deadline = time.monotonic() + 5
    while not EVENTS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert EVENTS == ["http.disconnect"]


def test_a_body_that_stops_arriving_times_out(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "BODY_IDLE_TIMEOUT_S", 0.3)
    with _raw(server) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345")
        t0 = time.monotonic()
        head, _ = _read_responses(s, 1)[0]
        assert head.startswith(b"HTTP/1.1 408") and 0.25 < time.monotonic() - t0 < 3


def test_idle_keep_alive_connections_close_after_the_timeout(server: ServerThread) -> None:
    """timeout_keep_alive is 0.6 s here: a connection used every 0.3 s stays open
    past it (the one timer finds it busy or recently used), an idle one closes."""
    with _raw(server) as s:
        for _ in range(5):  # 1.5 s in all
            s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            _read_responses(s, 1)
            time.sleep(0.3)
        t0 = time.monotonic()
        s.settimeout(5)
        assert s.recv(10) == b""  # closed by the server
        assert 0.1 < time.monotonic() - t0 < 1.5


def test_concurrent_clients(server: ServerThread) -> None:
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            with httpx.Client(base_url=server.url) as c:
                for j in range(20):
                    body = bytes([i]) * (j + 1)
                    assert c.post("/echo", content=body).json()["len"] == j + 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_servers_default_headers_are_sent_and_honoured() -> None:
    with ServerThread(general, lifespan="off", headers=[("X-Served-By", "t1")]) as srv:
        r = httpx.post(srv.url + "/echo", content=b"x")
        assert r.headers["x-served-by"] == "t1" and "date" in r.headers
    # A default header the cycle must interpret takes effect, not just gets copied.
    closing = ServerThread(
        general, lifespan="off", headers=[("Connection", "close")], timeout_keep_alive=30
    )
    with closing as srv, socket.create_connection((srv.host, srv.port), timeout=3) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        head, _ = _read_responses(s, 1)[0]
        assert head.lower().count(b"connection: close") == 1
        assert s.recv(10) == b""  # and the connection is closed


def test_an_upgrade_request_is_answered_then_the_connection_closes(server: ServerThread) -> None:
    """As `curl --http2` asks: no h2c here, the request is answered over HTTP/1.1,
    never left without an answer. llhttp hands the bytes after an upgrade
    request's head to the new protocol, so its body is not read (uvicorn's
    protocol does the same; the gateway answers 400, no upstream call)."""
    with _raw(server) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
            b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
            b"content-length: 2\r\n\r\n{}"
        )
        head, body = _read_responses(s, 1)[0]
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        assert json.loads(body)["len"] == 0
        assert s.recv(10) == b""


def test_bytes_between_requests_do_not_keep_a_connection_open(server: ServerThread) -> None:
    with _raw(server) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        _read_responses(s, 1)
        s.sendall(b"\r\n")  # allowed before a request line; not a request
        t0 = time.monotonic()
        assert s.recv(10) == b""  # closed by the keep-alive timeout (0.6 s here)
        assert time.monotonic() - t0 < 3


def test_a_client_gone_mid_body_is_a_disconnect(server: ServerThread) -> None:
    EVENTS.clear()
    with _raw(server) as s:
        s.sendall(b"POST /body-or-gone HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n12345")
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while not EVENTS and time.monotonic() < deadline:
        time.sleep(0.01)
    assert EVENTS == ["gone mid-body"]


def test_connections_are_tracked_for_shutdown_across_the_hand_over() -> None:
    """uvicorn's graceful shutdown walks server_state.connections: a handed-over
    connection is there once (as uvicorn's protocol), and shutdown lets an
    answer in flight finish."""
    srv = ServerThread(general, lifespan="off").start()
    state = srv._server.server_state
    try:
        with _raw(srv) as other, _raw(srv) as gw:
            other.sendall(b"GET /ot")
            time.sleep(0.05)
            other.sendall(b"her HTTP/1.1\r\nhost: x\r\n\r\n")  # split first line: handed over
            assert _recv_until(other, lambda b: b.endswith(b"0\r\n\r\n")).startswith(
                b"HTTP/1.1 404"
            )
            gw.sendall(b"POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            assert b"first" in gw.recv(65536)
            kinds = sorted(type(c).__name__ for c in list(state.connections))
            assert kinds == ["GatewayHttpProtocol", "LimitedHttpToolsProtocol"]
            total = state.total_requests
            srv.stop(timeout=0.5)  # shutdown begins; /hold is still answering
            assert other.recv(10) == b""  # the idle one is closed at once
    finally:
        srv.stop()
    assert total == 1 and not state.connections and not state.tasks
