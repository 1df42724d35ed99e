"""``metis serve`` without a running server: ``--no-scheduler``, the schema check at start-up."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, text

from metis.db.migrate import head_revision
from metis.server import create_app
from metis.util.server_thread import free_port


def _startup_hooks() -> int:
    app: Any = create_app()
    return len(app.components.startup)


def test_no_scheduler_switches_the_sync_scheduler_off(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")  # restored at teardown
    with_scheduler = _startup_hooks()
    seen: dict[str, Any] = {}

    def fake_run(target: str, **kw: Any) -> None:
        # What the uvicorn workers would build from the factory.
        seen["target"], seen["kw"] = target, kw
        seen["hooks"] = _startup_hooks()

    monkeypatch.setattr(uvicorn, "run", fake_run)
    cli.ok("serve", "--port", "0", "--no-scheduler")
    assert seen["target"] == "metis.server:create_app" and seen["kw"]["factory"] is True
    assert seen["hooks"] == with_scheduler - 1


def test_scheduler_on_by_default(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "true")
    seen: dict[str, int] = {}
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: seen.update(h=_startup_hooks()))
    cli.ok("serve", "--port", "0")
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
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: started.append(target))
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
