"""Engine creation for the configured database.

SQLite gets WAL, foreign keys and a busy timeout on every connection so
several processes (gateway, sync, CLI) can share one file. PostgreSQL URLs
are normalized to the psycopg 3 driver.
"""

import os
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool, QueuePool

from metis.config import Settings, get_settings


def normalize_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other backends and memory."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _secure_sqlite_file(path: Path) -> None:
    """Create the database file 0600 (and its folder 0700) before SQLite does."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)


def make_engine(
    url: str | None = None, *, settings: Settings | None = None, pooled: bool = False, **kw: Any
) -> Engine:
    """Create an engine for ``url`` or the configured database.

    SQLite engines open a connection per use (NullPool) unless ``pooled``:
    a long-running poller (the gateway's key cache and spend counters, a few
    reads a second) keeps a few connections open instead of opening the file
    and setting its pragmas each time. A pooled connection holds no lock
    between uses (each use ends with a commit or rollback).
    """
    if url is None:
        url = (settings or get_settings()).effective_database_url
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is not None:
        _secure_sqlite_file(path)
        # One file, several threads: SQLite connections are cheap, and NullPool
        # avoids holding a write lock in a pooled connection.
        if pooled:
            kw.setdefault("poolclass", QueuePool)
            kw.setdefault("pool_size", 2)
            kw.setdefault("max_overflow", 6)
        else:
            kw.setdefault("poolclass", NullPool)
        kw.setdefault("connect_args", {"check_same_thread": False, "timeout": 10})
        engine = create_engine(url, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kw.setdefault("pool_pre_ping", True)
    return create_engine(url, **kw)
