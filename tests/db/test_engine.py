"""SQLite engines: per-use connections by default, a small pool for pollers."""

import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool

from metis.db.engine import make_engine


def test_a_pooled_connection_holds_no_lock_between_uses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    polled = make_engine(url, pooled=True)
    assert isinstance(polled.pool, QueuePool)
    assert isinstance(make_engine(url).pool, NullPool)
    with polled.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
        c.execute(text("INSERT INTO t VALUES (1)"))
    with polled.connect() as c:  # a read, returned to the pool
        assert c.execute(text("SELECT count(*) FROM t")).scalar() == 1
    assert polled.pool.checkedin() >= 1  # kept open, not closed
    # Another process's writer (a plain sqlite3 connection, no busy wait) can
    # take the write lock and checkpoint: the idle pooled connection holds nothing.
    other = sqlite3.connect(tmp_path / "m.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (2)")
    other.commit()
    assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
    other.close()
    with polled.connect() as c:  # and the pooled connection sees the new row
        assert c.execute(text("SELECT count(*) FROM t")).scalar() == 2
    polled.dispose()
