"""Run an ASGI app with uvicorn in a background thread (tests, demo, benchmarks).

``with ServerThread(app) as srv: srv.url`` binds 127.0.0.1 on a free port,
waits until it accepts connections, and shuts down gracefully on exit
(running the app's lifespan shutdown, so write-behind buffers flush).
"""

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from metis.gateway.limits import HTTP


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.host = host
        self.port = port or free_port(host)
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "on")
        config.setdefault("http", HTTP)  # as serve
        self._server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, **config))
        self._thread = threading.Thread(
            target=self._server.run, name=f"uvicorn:{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on {self.url} did not start in {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
