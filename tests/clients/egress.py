"""An egress trap: an HTTP proxy on 127.0.0.1 that records and refuses every request.

The harness points a CLI's ``HTTPS_PROXY`` / ``HTTP_PROXY`` (and their lower-case
forms) at it, with ``NO_PROXY=127.0.0.1,localhost`` so the gateway and the
simulator are reached directly. Anything the CLI tries to send to the internet
(telemetry, update checks, feature flags, model lists, marketplaces) then lands
here instead: the trap answers ``403`` and keeps the request line
(``CONNECT statsig.anthropic.com:443``, ``GET http://host/path``), so a test can
both keep the run offline and assert that the disabling switches worked.
It never reads past the request head and never connects anywhere.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    method: str
    target: str  # "host:port" for CONNECT, the absolute URL otherwise

    @property
    def host(self) -> str:
        hostport = self.target.split("://", 1)[-1].split("/", 1)[0]
        return hostport.rsplit(":", 1)[0] if ":" in hostport else hostport


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) >= 2:
            with self.server.lock:
                self.server.attempts.append(Attempt(parts[0], parts[1]))
        with contextlib.suppress(OSError):
            sock.sendall(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()


class EgressTrap:
    """``with EgressTrap() as trap: env.update(trap.proxy_env())``; then ``trap.attempts``."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="egress-trap", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def attempts(self) -> list[Attempt]:
        with self._server.lock:
            return list(self._server.attempts)

    def proxy_env(self) -> dict[str, str]:
        """Proxy variables sending everything but loopback to the trap."""
        no_proxy = "127.0.0.1,localhost,::1"
        return {
            "HTTPS_PROXY": self.url,
            "HTTP_PROXY": self.url,
            "ALL_PROXY": self.url,
            "https_proxy": self.url,
            "http_proxy": self.url,
            "all_proxy": self.url,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }

    def start(self) -> EgressTrap:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> EgressTrap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
