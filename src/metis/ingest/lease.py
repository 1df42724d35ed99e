"""Database leases: at most one worker syncs a credential at a time.

A lease is a row in ``leases`` (name, holder, acquired_at, expires_at). It is
taken by inserting the row, or by taking over a row that expired, or whose
holder is a process on this host that no longer exists (a worker killed with
SIGKILL leaves its lease behind; the next run on the same host need not wait
for the expiry). Every step is a single statement in its own transaction, so
it works across processes on PostgreSQL and SQLite alike: the primary key
decides who wins a race.
"""

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from metis.db.tables import leases
from metis.timeutil import utcnow


def new_holder() -> str:
    """``host:pid:random``: unique per worker, and tells which process holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire(engine: Engine, name: str, holder: str, ttl_seconds: int) -> str | None:
    """Take lease ``name`` for ``holder``; None on success, else the current holder."""
    now = utcnow()
    exp = now + timedelta(seconds=ttl_seconds)
    try:
        with engine.begin() as conn:
            conn.execute(
                leases.insert().values(name=name, holder=holder, acquired_at=now, expires_at=exp)
            )
        return None
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
        ).first()
        if row is None:  # released meanwhile: try once more, in a savepoint
            try:
                with conn.begin_nested():
                    conn.execute(
                        leases.insert().values(
                            name=name, holder=holder, acquired_at=now, expires_at=exp
                        )
                    )
            except IntegrityError:
                return "another worker"
            return None
        current, expires = row
        if current != holder and expires > now and not _holder_is_dead(current):
            return str(current)
        res = conn.execute(
            update(leases)
            .where(leases.c.name == name, leases.c.holder == current)
            .values(holder=holder, acquired_at=now, expires_at=exp)
        )
        return None if res.rowcount == 1 else str(current)


def renew(engine: Engine, name: str, holder: str, ttl_seconds: int) -> bool:
    """Extend our lease; False if we lost it (someone took it over after expiry)."""
    with engine.begin() as conn:
        res = conn.execute(
            update(leases)
            .where(leases.c.name == name, leases.c.holder == holder)
            .values(expires_at=utcnow() + timedelta(seconds=ttl_seconds))
        )
        return res.rowcount == 1


def release(engine: Engine, name: str, holder: str) -> None:
    """Drop our lease (no-op if it is no longer ours)."""
    with engine.begin() as conn:
        conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))


def holder_of(engine: Engine, name: str) -> tuple[str, datetime] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)
        ).first()
    return None if row is None else (str(row[0]), row[1])
