"""Write-behind while the database fails: backoff, logs once, bounded buffer, shutdown loss.

The failing databases are real: a SQLite file whose folder is gone (then
restored), and a PostgreSQL URL on a loopback port nobody listens on. The
end-to-end version (PostgreSQL stopped under ``metis serve``) is
tests/reliability/test_db_down.py.
"""

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from metis.db.engine import make_engine
from metis.db.migrate import upgrade
from metis.db.tables import usage_records
from metis.ledger.writer import WriteBehind
from metis.util.server_thread import free_port
from metis.workspaces import add_workspace
from tests.ledger.test_writer import ev, rec


def _dead() -> Engine:
    return make_engine(f"postgresql+psycopg://metis@127.0.0.1:{free_port()}/none")


async def _until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_outage_backs_off_logs_once_and_writes_everything_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good" / "metis.db"
    eng = make_engine(f"sqlite:///{good}")
    upgrade(eng)
    with eng.begin() as c:
        ws = add_workspace(c, "w").id
    eng.dispose()
    gone = tmp_path / "gone"
    engine = make_engine(f"sqlite:///{gone / 'metis.db'}")
    shutil.rmtree(gone)  # the database's folder is gone: every connection fails
    caplog.set_level(logging.INFO, "metis.ledger.writer")
    w = WriteBehind(engine, flush_interval_s=0.01)
    w.start()
    w.add(rec(ws, 1), [ev(1)])
    await asyncio.sleep(0.5)
    # Backing off (0.01 s doubling to 2 s): a handful of attempts, not one per 0.01 s.
    assert w.down_for is not None and 3 <= w.failures <= 9, w.failures
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("database write failed" in m for m in msgs) == 1, msgs
    assert "OperationalError: unable to open database file" in msgs[0]
    w.add(rec(ws, 2), [ev(2)])
    gone.mkdir()
    shutil.copyfile(good, gone / "metis.db")  # the database is back
    await _until(lambda: w.down_for is None, timeout=5)
    assert any("database writes resumed" in r.getMessage() for r in caplog.records)
    await w.close()
    with engine.connect() as c:
        keys = sorted(c.execute(select(usage_records.c.dedupe_key)).scalars())
    engine.dispose()
    assert keys == ["req_1", "req_2"]


async def test_full_buffer_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "metis.ledger.writer")
    w = WriteBehind(_dead(), flush_interval_s=0.01, max_items=4, close_timeout_s=0.05)
    w.start()
    w.add(rec("ws", 1), [ev(1)])
    assert not w.full
    w.add(rec("ws", 2), [ev(2)])
    assert w.full  # the gateway now refuses new calls with 503
    await _until(lambda: any("buffer full" in r.getMessage() for r in caplog.records))
    await asyncio.sleep(0.2)
    full_logs = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(full_logs) == 1 and "METIS_WRITE_BUFFER_MAX_ITEMS=4" in full_logs[0].getMessage()
    await w.close()  # gives up after close_timeout_s and says what is lost
    lost = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(lost) == 1 and "2 usage records and 2 events not written" in lost[0], lost


async def test_a_batch_being_written_still_counts_toward_full(tmp_path: Path) -> None:
    """A flush attempt takes the batch out of the buffer while it writes; if that
    left room, calls admitted meanwhile would overrun the bound on every retry."""
    w = WriteBehind(_dead(), max_items=2)
    w.add(rec("ws_x", 1), [ev(1)])
    assert w.full
    seen: list[bool] = []

    async def watch() -> None:
        while True:
            seen.append(w.full)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    with pytest.raises(Exception):  # noqa: B017 - the dead database's own error
        await w.flush()
    watcher.cancel()
    assert seen and all(seen), seen  # full throughout the failing attempt
    assert w.full and w.pending == 2
