"""Egress through an HTTP proxy: the upstream client, then the whole gateway.

A real proxy on 127.0.0.1 (tests/gateway/connect_proxy.py) and TLS upstreams
with certificates from a generated CA. The upstream's name ``upstream.test``
resolves only inside the proxy, so a call that succeeds went through it; the
certificate names only ``upstream.test``, so success also shows SNI and host
name verification against the upstream (not the proxy).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from metis.gateway.egress import ProxyRules
from metis.gateway.http_client import ConnectFailed, ProxyError, UpstreamClient, describe
from metis.util.server_thread import ServerThread
from tests.gateway.connect_proxy import ConnectProxy, Seen
from tests.gateway.tls_certs import ca_and_server_cert

NAME = "upstream.test"


class Upstream:
    """A keep-alive HTTPS (or HTTP) server answering ``{"n": <request number>}``."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.sni: list[str | None] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.status = b"200 OK"
        self.port = 0
        self._srv: asyncio.Server | None = None

    async def start(self, certs: tuple[Path, Path, Path] | None) -> Upstream:
        ctx = None
        if certs is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certs[1], certs[2])
            ctx.sni_callback = lambda sock, name, c: self.sni.append(name)  # type: ignore[assignment,misc,return-value]
        self._srv = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        self.port = self._srv.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(w)
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await r.readexactly(length))
                body = b'{"n":%d}' % len(self.requests)
                head = b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n" % (self.status, len(body))
                w.write(head + body)
                await w.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def stop(self) -> None:
        """Close the listener and every connection, and wait until they are closed."""
        assert self._srv is not None
        self._srv.close()
        for w in self.writers:
            w.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await w.wait_closed()


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return ca_and_server_cert(tmp_path, [NAME])


@pytest.fixture
async def tls_upstream(certs: tuple[Path, Path, Path]) -> AsyncIterator[Upstream]:
    u = await Upstream().start(certs)
    yield u
    await u.stop()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy(hosts={NAME: "127.0.0.1"}) as p:
        yield p


def rules(monkeypatch: pytest.MonkeyPatch, **env: str) -> ProxyRules | None:
    """The proxy rules `new_client` would read with exactly ``env`` set."""
    for k in ("https_proxy", "http_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
        monkeypatch.delenv(k.upper(), raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return ProxyRules.from_environ()


def client(ca: Path | None, proxies: ProxyRules | None) -> UpstreamClient:
    return UpstreamClient(
        connect_timeout=5,
        idle_timeout=5,
        ssl_context=ssl.create_default_context(cafile=ca) if ca else None,
        proxies=proxies,
    )


async def _get(c: UpstreamClient, url: str) -> tuple[int, bytes]:
    resp = await c.post(url, b"{}", {"authorization": "Bearer k"}, timeout=5)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_https_goes_through_a_connect_tunnel_with_tls_to_the_upstream(
    monkeypatch: pytest.MonkeyPatch,
    certs: tuple[Path, Path, Path],
    tls_upstream: Upstream,
    proxy: ConnectProxy,
) -> None:
    c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=proxy.url))
    url = f"https://{NAME}:{tls_upstream.port}/v1/chat/completions"
    assert await _get(c, url) == (200, b'{"n":1}')
    assert await _get(c, url) == (200, b'{"n":2}')  # the tunnelled connection is pooled
    assert proxy.seen == [Seen("CONNECT", f"{NAME}:{tls_upstream.port}", None)]
    assert tls_upstream.connections == 1 and tls_upstream.sni == [NAME]
    head = tls_upstream.requests[0].split(b"\r\n")
    assert head[0] == b"POST /v1/chat/completions HTTP/1.1"  # origin-form inside the tunnel
    assert f"host: {NAME}:{tls_upstream.port}".encode() in head
    assert not any(h.lower().startswith(b"proxy-") for h in head)
    tls_upstream.status = b"407 Proxy Authentication Required"  # the origin's own answer
    assert await _get(c, url) == (407, b'{"n":3}')  # relayed: the tunnel was fine
    await c.close()


async def test_the_upstream_certificate_is_verified_for_the_upstream_host(
    monkeypatch: pytest.MonkeyPatch,
    certs: tuple[Path, Path, Path],
    tls_upstream: Upstream,
) -> None:
    with ConnectProxy(hosts={"other.test": "127.0.0.1"}) as p:
        c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=p.url))
        with pytest.raises(ConnectFailed, match="SSLCertVerificationError") as e:
            await _get(c, f"https://other.test:{tls_upstream.port}/v1/x")
        assert not isinstance(e.value, ProxyError)  # the tunnel was made; TLS refused
        assert [s.method for s in p.seen] == ["CONNECT"]
        await c.close()


async def test_no_proxy_bypasses_the_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy: ConnectProxy
) -> None:
    ca, cert, key = ca_and_server_cert(tmp_path, ["127.0.0.1"])
    up = await Upstream().start((ca, cert, key))
    for no_proxy in ("127.0.0.1", "localhost,127.0.0.1", f"127.0.0.1:{up.port}", "*"):
        c = client(ca, rules(monkeypatch, HTTPS_PROXY=proxy.url, NO_PROXY=no_proxy))
        assert (await _get(c, f"https://127.0.0.1:{up.port}/v1/x"))[0] == 200
        await c.close()
    assert proxy.seen == []
    c = client(ca, rules(monkeypatch, HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1:1"))
    assert (await _get(c, f"https://127.0.0.1:{up.port}/v1/x"))[0] == 200  # other port: proxied
    assert proxy.seen == [Seen("CONNECT", f"127.0.0.1:{up.port}", None)]
    await c.close()
    await up.stop()


async def test_proxy_credentials_are_sent_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, certs: tuple[Path, Path, Path], tls_upstream: Upstream
) -> None:
    user, password = "alice", "p@ss:w0rd-generated"
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    url = f"https://{NAME}:{tls_upstream.port}/v1/x"
    with ConnectProxy(hosts={NAME: "127.0.0.1"}, auth=auth) as p:
        good = f"http://{user}:p%40ss%3Aw0rd-generated@127.0.0.1:{p.port}"
        c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=good))
        assert await _get(c, url) == (200, b'{"n":1}')
        await c.close()
        assert p.seen == [Seen("CONNECT", f"{NAME}:{tls_upstream.port}", auth)]

        bad = f"http://{user}:wrong-{password}@127.0.0.1:{p.port}"
        c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=bad))
        with pytest.raises(ProxyError) as e:
            await _get(c, url)
        await c.close()
    msg = describe(e.value)
    assert msg == (
        f"ProxyError: proxy http://127.0.0.1:{p.port} answered CONNECT "
        f"{NAME}:{tls_upstream.port} with 407 Proxy Authentication Required"
    )
    assert password not in repr(e.value) and user not in msg


async def test_a_refusing_or_unreachable_proxy_is_a_proxy_error(
    monkeypatch: pytest.MonkeyPatch, certs: tuple[Path, Path, Path], tls_upstream: Upstream
) -> None:
    url = f"https://{NAME}:{tls_upstream.port}/v1/x"
    with ConnectProxy(refuse=502) as p:
        c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=p.url))
        with pytest.raises(ProxyError, match=r"answered CONNECT .* with 502 Bad Gateway"):
            await _get(c, url)
        await c.close()
    port = p.port  # stopped: nothing listens there now
    c = client(certs[0], rules(monkeypatch, HTTPS_PROXY=f"http://127.0.0.1:{port}"))
    with pytest.raises(ProxyError, match=f"proxy http://127.0.0.1:{port} not usable: Connection"):
        await _get(c, url)
    await c.close()


async def test_a_silent_proxy_is_a_proxy_error_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heads: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        heads.append(await r.readuntil(b"\r\n\r\n"))
        await r.read()  # never answers; returns when the client gives up

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    c = UpstreamClient(
        connect_timeout=0.5,
        idle_timeout=5,
        proxies=rules(monkeypatch, HTTPS_PROXY=f"127.0.0.1:{port}"),
    )
    with pytest.raises(ProxyError, match=f"http://127.0.0.1:{port} not usable: connect timed out"):
        await _get(c, f"https://{NAME}/v1/x")
    assert heads == [f"CONNECT {NAME}:443 HTTP/1.1\r\nhost: {NAME}:443\r\n\r\n".encode()]
    await c.close()
    srv.close()
    for w in writers:
        w.close()
        await w.wait_closed()


async def test_http_upstream_gets_absolute_form_requests_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: ConnectProxy
) -> None:
    up = await Upstream().start(None)
    c = client(None, rules(monkeypatch, http_proxy=proxy.url, HTTPS_PROXY=""))
    url = f"http://{NAME}:{up.port}/v1/x?y=1"
    assert await _get(c, url) == (200, b'{"n":1}')
    assert await _get(c, url) == (200, b'{"n":2}')
    assert proxy.seen == [Seen("POST", url, None)]  # one pooled connection to the proxy
    assert up.requests[0].startswith(f"POST {url} HTTP/1.1\r\nhost: {NAME}:{up.port}\r\n".encode())
    await c.close()

    with ConnectProxy(hosts={NAME: "127.0.0.1"}, auth="Basic x") as p:
        c = client(None, rules(monkeypatch, HTTP_PROXY=p.url))
        with pytest.raises(ProxyError, match="answered 407 Proxy Authentication Required"):
            await _get(c, url)
        await c.close()
    await up.stop()


# -- the whole gateway: an SDK call through `metis serve`'s app to a TLS simulator -------


def _records(g: Any) -> list[dict[str, Any]]:
    g.flush()
    with g.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(usage_records)).mappings()]


@pytest.fixture
def tls_simulator(certs: tuple[Path, Path, Path]) -> Iterator[ServerThread]:
    from metis.simulator import create_app

    with ServerThread(create_app(), ssl_certfile=str(certs[1]), ssl_keyfile=str(certs[2])) as s:
        yield s


def _gateway_env(monkeypatch: pytest.MonkeyPatch, ca: Path, **env: str) -> None:
    rules(monkeypatch, **env)
    monkeypatch.setenv("METIS_UPSTREAM_CA_BUNDLE", str(ca))


def test_a_gateway_call_reaches_a_tls_simulator_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
    certs: tuple[Path, Path, Path],
    tls_simulator: ServerThread,
    proxy: ConnectProxy,
    gateway_factory: Any,
) -> None:
    _gateway_env(monkeypatch, certs[0], HTTPS_PROXY=proxy.url)
    g = gateway_factory(f"https://{NAME}:{tls_simulator.port}")
    _, secret = g.issue_key(user="alice")
    r = g.openai(secret).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "via the proxy"}]
    )
    assert proxy.seen == [Seen("CONNECT", f"{NAME}:{tls_simulator.port}", None)]
    assert r.usage is not None
    [rec] = _records(g)
    assert rec["correlation_id"] == r.id
    assert (rec["input_tokens"], rec["output_tokens"]) == (
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
    )


def test_a_gateway_call_to_a_no_proxy_host_goes_direct(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    proxy: ConnectProxy,
    gateway_factory: Any,
) -> None:
    from metis.simulator import create_app

    ca, cert, key = ca_and_server_cert(tmp_path, ["127.0.0.1"])
    _gateway_env(monkeypatch, ca, HTTPS_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1")
    with ServerThread(create_app(), ssl_certfile=str(cert), ssl_keyfile=str(key)) as sim:
        g = gateway_factory(f"https://127.0.0.1:{sim.port}")
        _, secret = g.issue_key(user="alice")
        r = g.anthropic(secret).messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        assert [rec["correlation_id"] for rec in _records(g)] == [r.id]
    assert proxy.seen == []


def test_a_refusing_proxy_is_a_502_in_the_provider_shape_naming_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
    certs: tuple[Path, Path, Path],
    tls_simulator: ServerThread,
    gateway_factory: Any,
) -> None:
    password = "generated-proxy-password-7f3a"
    with ConnectProxy(hosts={NAME: "127.0.0.1"}, auth="Basic nope") as p:
        _gateway_env(monkeypatch, certs[0], HTTPS_PROXY=f"http://u:{password}@127.0.0.1:{p.port}")
        g = gateway_factory(f"https://{NAME}:{tls_simulator.port}")
        _, secret = g.issue_key(user="alice")
        with pytest.raises(openai.APIStatusError) as e:
            g.openai(secret).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
    assert e.value.status_code == 502
    body = e.value.response.json()
    assert body["error"]["message"] == (
        f"upstream connection failed: ProxyError: proxy http://127.0.0.1:{p.port} answered "
        f"CONNECT {NAME}:{tls_simulator.port} with 407 Proxy Authentication Required"
    )
    assert password not in e.value.response.text
    assert [s.method for s in p.seen] == ["CONNECT"]
