"""A real ``metis serve`` in a subprocess, for fault tests (kill, term, restart).

The in-process ``gateway`` fixture cannot be SIGKILLed; these tests need the
real process with its own event loop, write-behind and shutdown path.
`ServeProcess` starts ``metis serve`` on a free loopback port with the test's
``METIS_*`` environment (plus overrides), waits until it answers, and stops it
with SIGTERM (graceful: in-flight requests finish, the buffer is flushed) or
SIGKILL (nothing runs). Its stderr goes to a file, so a chatty server never
blocks on a full pipe; `log()` reads it for assertions and failure messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from metis.util.server_thread import free_port

GRACEFUL_EXIT = (0, -signal.SIGTERM)
"""Exit codes of a graceful stop: uvicorn finishes its shutdown (in-flight
requests, lifespan hooks, the write-behind flush) and then re-raises the
SIGTERM it caught, so the usual code is -SIGTERM."""


class ServeProcess:
    """One ``metis serve`` subprocess; call `start`, then `term` or `kill`."""

    def __init__(
        self,
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        preexec: Callable[[], Any] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "METIS_INGEST_SCHEDULER": "false", **(env or {})}
        self.log_path = log_dir / f"serve-{self.port}.log"
        self._preexec = preexec
        self._wrap = wrap or []  # a launcher that ends in `exec "$@"` (same pid)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start the server and wait until its gateway routes answer."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> ServeProcess:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        argv = [
            *self._wrap,
            sys.executable,
            "-c",
            "from metis.cli.main import run; run()",
            "serve",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as err:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=self._preexec,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> ServeProcess:
        """Wait until the gateway answers (a 401 to a keyless request)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"metis serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # No key: a quick 401 from the gateway's own route means it is serving.
                if httpx.get(self.url + "/v1/models", timeout=1).status_code == 401:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"metis serve did not start in {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def term(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server process (no shutdown hook runs), reap it, and wait
        for its children (the write-behind's writer process) to exit by themselves:
        a batch the writer was committing may still land just after the kill, so
        the database is only read once it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            kids = _descendants(self.proc.pid)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            deadline = time.monotonic() + 15
            while any(_alive(k) for k in kids):
                assert time.monotonic() < deadline, f"orphaned children still running: {kids}"
                time.sleep(0.02)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        for path in Path(f"/proc/{stack.pop()}/task").glob("*/children"):
            try:
                kids = [int(x) for x in path.read_text().split()]
            except OSError:
                continue
            out += kids
            stack += kids
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
