"""``metis serve``: ``--no-scheduler``, the schema check at start-up, the start banner.

Most tests replace `metis.cli.serve.run_uvicorn` (the seam after the socket
is bound) to look at what would be served; the subprocess tests run the real
command and talk to it over HTTP.
"""

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from metis.cli import serve as serve_cli
from metis.db.migrate import head_revision
from metis.server import create_app
from metis.util.server_thread import free_port
from tests.procs import get_until_up, read_lines_until, start_metis, stop


def _startup_hooks() -> int:
    app: Any = create_app()
    return len(app.components.startup)


def test_no_scheduler_switches_the_sync_scheduler_off(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")  # restored at teardown
    with_scheduler = _startup_hooks()
    seen: dict[str, Any] = {}

    def fake_run(config: Any, sock: socket.socket) -> None:
        # What the uvicorn workers would build from the factory.
        seen["config"] = config
        seen["hooks"] = _startup_hooks()

    monkeypatch.setattr(serve_cli, "run_uvicorn", fake_run)
    r = cli.ok("serve", "--port", "0", "--no-scheduler")
    assert seen["config"].app == "metis.server:create_app" and seen["config"].factory is True
    assert seen["hooks"] == with_scheduler - 1
    assert "scheduler: off" in r.stdout


def test_scheduler_on_by_default(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")
    seen: dict[str, int] = {}
    monkeypatch.setattr(serve_cli, "run_uvicorn", lambda c, s: seen.update(h=_startup_hooks()))
    assert "scheduler: on" in cli.ok("serve", "--port", "0").stdout
    assert seen["h"] == _startup_hooks()
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "false")
    assert seen["h"] == _startup_hooks() + 1


# ------------------------------------------------- schema check at start-up


@pytest.fixture
def revision(engine: Engine) -> Iterator[Callable[[str | None], None]]:
    """Set the database's recorded schema revision (None: as if never initialized).

    The tables stay; only ``alembic_version`` changes, and it is restored after
    the test (on PostgreSQL the test database is shared by the session).
    """
    with engine.connect() as c:
        saved = c.execute(text("SELECT version_num FROM alembic_version")).scalar_one()

    def set_to(rev: str | None) -> None:
        with engine.begin() as c:
            c.execute(text("DELETE FROM alembic_version"))
            if rev is not None:
                c.execute(text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": rev})

    yield set_to
    set_to(saved)


def _no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    started: list[str] = []
    monkeypatch.setattr(serve_cli, "run_uvicorn", lambda config, sock: started.append(config.app))
    return started


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uninitialized_database_is_refused(
    cli: Any, monkeypatch: pytest.MonkeyPatch, revision: Callable[[str | None], None], workers: str
) -> None:
    started = _no_uvicorn(monkeypatch)
    revision(None)
    r = cli.run("serve", "--port", "0", "--workers", workers)
    assert r.exit_code == 1 and started == []  # no server, no worker processes
    assert r.stdout == ""
    assert r.stderr.startswith("error: database at ") and r.stderr.count("\n") == 1
    assert r.stderr.rstrip().endswith("is not initialized: run `metis init`")


def test_database_behind_the_code_is_refused(
    cli: Any, monkeypatch: pytest.MonkeyPatch, revision: Callable[[str | None], None]
) -> None:
    started = _no_uvicorn(monkeypatch)
    head = head_revision()
    # Not a real revision: 0001 is the only one so far; ready_engine refuses any
    # revision other than the head, as a database behind (or ahead of) the code.
    revision("0000")
    r = cli.run("serve", "--port", "0")
    assert r.exit_code == 1 and started == []
    assert r.stderr == (
        f"error: database schema is at 0000, this Metis needs {head}: run `metis db upgrade`\n"
    )
    revision(head)
    cli.ok("serve", "--port", "0")
    assert started == ["metis.server:create_app"]


def test_serve_process_exits_at_once_on_an_old_schema(
    metis_env: dict[str, str], revision: Callable[[str | None], None]
) -> None:
    """The real command in a subprocess: exit 1 and one line, before binding the port."""
    revision("0000")
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-c", "from metis.cli.main import run; run()",
         "serve", "--port", str(port), "--workers", "2"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "METIS_INGEST_SCHEDULER": "false"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith("run `metis db upgrade`")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing ever listened


# ------------------------------------------------- the start banner, for real


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_0_prints_the_url_it_listens_on(metis_env: dict[str, str], workers: str) -> None:
    env = {**os.environ, "METIS_INGEST_SCHEDULER": "false"}
    proc = start_metis(["serve", "--port", "0", "--workers", workers], env)
    try:
        lines = read_lines_until(proc, "Ctrl-C")
        m = re.fullmatch(r"Metis listening on (http://127\.0\.0\.1:(\d+)) \(.*\)", lines[0])
        assert m, lines
        url, port = m.group(1), int(m.group(2))
        assert port != 0
        text = "\n".join(lines)
        for needle in (f"gateway:   {url}/v1", f"dashboard: {url}/ui", "scheduler: off",
                       f"API:       {url} (OpenAPI at {url}/openapi.json"):  # fmt: skip
            assert needle in text, text
        # The printed URL is the server: its API and dashboard answer there.
        assert get_until_up(url + "/openapi.json").json()["info"]["title"] == "Metis API"
        assert httpx.get(url + "/ui/login", timeout=30).status_code == 200
        assert httpx.get(url + "/v1/models", timeout=30).status_code == 401  # the gateway
    finally:
        err = stop(proc)
    assert "Traceback" not in err


def test_a_taken_port_is_one_line(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    started = _no_uvicorn(monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli.run("serve", "--port", str(s.getsockname()[1]))
    assert r.exit_code == 1 and started == [] and r.stdout == ""
    assert r.stderr.startswith("error: cannot listen on 127.0.0.1:") and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "HTTPS_PROXY",
            "socks5://u:generated-pw-1@proxy:1080",
            "error: HTTPS_PROXY: a socks5:// proxy is not supported",
        ),
        (
            "METIS_UPSTREAM_CA_BUNDLE",
            "/nonexistent/ca.pem",
            "error: METIS_UPSTREAM_CA_BUNDLE: cannot load CA bundle /nonexistent/ca.pem",
        ),
    ],
)
def test_an_unusable_egress_setting_is_refused_in_one_line(
    cli: Any, monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    cli.ok("init")
    monkeypatch.setenv(var, value)
    r = cli.run("serve", "--port", "1")  # refused before anything binds
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith(message), r.output
    assert "generated-pw-1" not in r.output and "Traceback" not in r.output
