"""Fixture ``demo_server``: one real ``metis demo --port 0`` subprocess per session.

The demo runs on the session's backend: SQLite in its own METIS_HOME, or,
when ``METIS_TEST_DATABASE_URL`` is set, a PostgreSQL database of its own
(created here and dropped at teardown; the per-test databases are truncated
between tests, so the demo cannot share them). The fixture parses the lines
the demo prints (``Dashboard: …``, ``Admin token: …``, ``API: …``,
``Gateway: …``, ``Gateway key (…): …``) and, at teardown, stops it with SIGINT
and asserts a clean exit (code 0, no traceback on stderr)::

    def test_x(demo_server):
        r = demo_server.api("/analytics/by_team")      # admin token attached
        page = httpx.get(demo_server.dashboard_url)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from metis.db.engine import normalize_url

START_TIMEOUT = 120.0
READY_LINE = "Press Ctrl-C to stop"
# The `metis` console script, without relying on the venv's bin/ being on PATH.
METIS = [
    sys.executable,
    "-c",
    "import sys; from metis.cli.main import run; sys.argv[0] = 'metis'; run()",
]


@dataclass
class DemoProcess:
    """A running ``metis demo`` and what it printed."""

    proc: subprocess.Popen[str]
    home: Path
    database_url: str | None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def dashboard_url(self) -> str:
        return self.fields["Dashboard"]

    @property
    def admin_token(self) -> str:
        return self.fields["Admin token"]

    @property
    def url(self) -> str:
        """The server's root URL (gateway, API and dashboard share it)."""
        return self.dashboard_url.removesuffix("/ui")

    @property
    def gateway_key(self) -> str:
        return self.fields["Gateway key"]

    def api(self, path: str, **params: Any) -> httpx.Response:
        """GET an admin API path with the demo's admin token."""
        return httpx.get(
            self.url + path,
            params=params,
            headers={"authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )

    def output(self) -> str:
        return "".join(self.stdout) + "--- stderr ---\n" + "".join(self.stderr)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:  # pragma: no cover - only when the demo hangs
                self.proc.kill()
                self.proc.wait(10)


_FIELD = re.compile(r"^(Dashboard|Admin token|API|Gateway|Gateway key)(?: \([^)]*\))?: (\S+)")


def _pump(stream: Any, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
    stream.close()


def start_demo(home: Path, env: dict[str, str], *args: str) -> DemoProcess:
    """Start ``metis demo --port 0 ARGS`` and wait until it printed its URLs."""
    proc = subprocess.Popen(
        [*METIS, "demo", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    demo = DemoProcess(proc, home, env.get("METIS_DATABASE_URL"))
    assert proc.stdout is not None and proc.stderr is not None
    for stream, sink in ((proc.stdout, demo.stdout), (proc.stderr, demo.stderr)):
        threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not any(READY_LINE in line for line in list(demo.stdout)):
        if proc.poll() is not None:
            time.sleep(0.2)  # let the pumps read what is left
            raise AssertionError(f"metis demo exited with {proc.returncode}:\n{demo.output()}")
        if time.monotonic() > deadline:
            demo.stop(signal.SIGKILL)
            raise AssertionError(f"metis demo not ready in {START_TIMEOUT} s:\n{demo.output()}")
        time.sleep(0.05)
    for line in demo.stdout:
        m = _FIELD.match(line)
        if m:
            demo.fields.setdefault(m.group(1), m.group(2))
    return demo


def demo_env(home: Path, database_url: str | None) -> dict[str, str]:
    """The test process's environment without METIS_* settings, plus home and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METIS_")}
    env["METIS_HOME"] = str(home)
    if database_url:
        env["METIS_DATABASE_URL"] = database_url
    return env


def assert_clean_exit(demo: DemoProcess, code: int) -> None:
    time.sleep(0.2)  # the pump threads finish reading
    out = demo.output()
    assert code == 0, f"metis demo exited with {code}:\n{out}"
    assert "Traceback" not in "".join(demo.stderr), out


class _PgDatabase:
    """A database of its own on the test PostgreSQL server."""

    def __init__(self, base: str) -> None:
        self.base = normalize_url(base)
        self.name = f"metis_demo_{uuid.uuid4().hex[:12]}"
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(self.base).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


@contextmanager
def demo_database_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database URL for a demo (dropped after), or None on SQLite."""
    base = os.environ.get("METIS_TEST_DATABASE_URL")
    if not base:
        yield None
        return
    db = _PgDatabase(base)
    try:
        yield db.url
    finally:
        db.drop()


@pytest.fixture(scope="session")
def demo_database() -> Iterator[str | None]:
    """The session demo's database (see `demo_database_url`)."""
    with demo_database_url() as url:
        yield url


@pytest.fixture(scope="session")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, demo_database: str | None
) -> Iterator[DemoProcess]:
    """``metis demo --port 0`` running for the session; SIGINT and a clean exit at the end."""
    home = tmp_path_factory.mktemp("demo") / "home"
    demo = start_demo(home, demo_env(home, demo_database))
    try:
        yield demo
    finally:
        code = demo.stop(signal.SIGINT)
    assert_clean_exit(demo, code)
