"""A real HTTP proxy on 127.0.0.1 for egress tests: CONNECT tunnels and absolute-form forwarding.

It runs its own event loop in a thread, so the gateway (a `ServerThread`),
a sync SDK client and an async test can all use it. Every request head it
gets is kept in `ConnectProxy.seen` (method, target, Proxy-Authorization)
before it answers. ``hosts`` maps names to addresses, so an upstream named
``upstream.test`` is reachable only through the proxy; ``auth`` makes it
demand ``Proxy-Authorization`` (407 otherwise); ``refuse`` makes it answer
every request with that status.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    authorization: str | None


class ConnectProxy:
    def __init__(
        self,
        *,
        hosts: dict[str, str] | None = None,
        auth: str | None = None,
        refuse: int | None = None,
    ) -> None:
        self.hosts = hosts or {}
        self.auth = auth
        self.refuse = refuse
        self.seen: list[Seen] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connect-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConnectProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("proxy did not start")
        return self

    def stop(self) -> None:
        async def shut() -> None:
            for w in list(self._open):
                w.close()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:  # closed sockets end the handlers; wait for them to finish
                await asyncio.wait(tasks, timeout=5)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(listen())
        self._ready.set()
        self._loop.run_forever()

    def _address(self, host: str) -> str:
        return self.hosts.get(host.strip("[]"), host.strip("[]"))

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self._open.add(w)
        uw: asyncio.StreamWriter | None = None
        try:
            head = await r.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            got = headers.get("proxy-authorization")
            self.seen.append(Seen(method, target, got))
            if self.auth is not None and got != self.auth:
                w.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'proxy-authenticate: Basic realm="test"\r\ncontent-length: 0\r\n\r\n'
                )
                await w.drain()
                return
            if self.refuse is not None:
                w.write(b"HTTP/1.1 %d Refused\r\ncontent-length: 0\r\n\r\n" % self.refuse)
                await w.drain()
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                ur, uw = await asyncio.open_connection(self._address(host), int(port))
                self._open.add(uw)
                w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:  # absolute-form: forward this connection to the request's origin
                u = urlsplit(target)
                assert u.hostname is not None
                ur, uw = await asyncio.open_connection(self._address(u.hostname), u.port or 80)
                self._open.add(uw)
                uw.write(head)
            await asyncio.gather(_pipe(r, uw), _pipe(ur, w))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            for x in (w, uw):
                if x is not None:
                    x.close()
                    self._open.discard(x)


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        w.close()
