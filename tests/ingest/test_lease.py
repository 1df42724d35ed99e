import os
import socket

from sqlalchemy import Engine, update

from metis.db.tables import leases
from metis.ingest import lease
from metis.timeutil import utcnow


def test_acquire_renew_release(engine: Engine) -> None:
    a, b = lease.new_holder(), lease.new_holder()
    assert lease.acquire(engine, "x", a, 60) is None
    assert lease.acquire(engine, "x", b, 60) == a  # held
    assert lease.renew(engine, "x", a, 60)
    assert not lease.renew(engine, "x", b, 60)
    lease.release(engine, "x", b)  # not b's: no effect
    assert lease.holder_of(engine, "x") is not None
    lease.release(engine, "x", a)
    assert lease.holder_of(engine, "x") is None
    assert lease.acquire(engine, "x", b, 60) is None


def test_expired_lease_is_taken_over(engine: Engine) -> None:
    a, b = "otherhost:1:aaaa", lease.new_holder()
    assert lease.acquire(engine, "y", a, 60) is None
    assert lease.acquire(engine, "y", b, 60) == a
    with engine.begin() as conn:
        conn.execute(update(leases).values(expires_at=utcnow()))
    assert lease.acquire(engine, "y", b, 60) is None
    assert not lease.renew(engine, "y", a, 60)  # the old holder learns it lost it


def test_dead_local_holder_is_taken_over_at_once(engine: Engine) -> None:
    pid = os.fork()
    if pid == 0:  # child exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    dead = f"{socket.gethostname()}:{pid}:dead"
    assert lease.acquire(engine, "z", dead, 600) is None
    assert lease.acquire(engine, "z", lease.new_holder(), 600) is None
    live = f"{socket.gethostname()}:{os.getppid()}:live"  # our parent is alive
    assert lease.acquire(engine, "w", live, 600) is None
    assert lease.acquire(engine, "w", lease.new_holder(), 600) == live
