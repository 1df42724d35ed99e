"""Write-behind batching for the gateway: usage records, events, counter deltas.

The request path only appends to an in-memory buffer (`WriteBehind.add`, no
I/O). A background task flushes the buffer every `FLUSH_INTERVAL_S` (0.2 s)
or as soon as `MAX_BATCH` items are waiting, in a worker thread, as **one
transaction per flush**: the usage records (`metis.ledger.upsert.upsert_usage`,
idempotent on the request id), the events, and the spend-counter deltas
(`metis.ledger.counters`).

Write-behind window: a completed call reaches the database within about
`FLUSH_INTERVAL_S` plus the flush's own duration (normally < 0.5 s). A failed
flush keeps the batch and retries (records are idempotent, so a retry after an
ambiguous failure does not double count, and counter deltas are re-queued only
when the transaction did not commit). `close()` -- run by the server's
graceful shutdown -- flushes everything still buffered. A hard kill loses at
most the current window.

The flusher keeps one database connection open between flushes
(`_WriterConnection`; dropped after a failed flush and reopened by the next).
On SQLite this matters: the engine does not pool connections, and closing the
last connection to a WAL database checkpoints it (~10 ms of checkpoint and
fsync on every flush, and the WAL file recreated on the next open).

With ``process=True`` (`metis serve`, see `metis.ledger.writer_process`) the
same transaction runs in a child process instead of a worker thread, so the
flush's Python work never competes with the event loop for the GIL.

Database unavailable (docs/gateway.md "When the database is unavailable"):
retries back off from `FLUSH_INTERVAL_S` to `RETRY_MAX_S`; the outage is
logged once when it starts, every `REPORT_EVERY_S` while it lasts and once
when writes resume. The buffer is bounded by ``max_items``
(``METIS_WRITE_BUFFER_MAX_ITEMS``): once it holds that many items `full` is
true and the gateway refuses new inference requests with 503 (logged once
per outage) rather than drop records it could not keep; calls already in
flight still add theirs. Shutdown keeps retrying for ``close_timeout_s`` and
then logs how many records and events it could not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine

from metis.events import EVENT_COLUMNS, append_event_values, event_values
from metis.identity.forgotten import pseudonyms_for_forgotten
from metis.ledger.counters import CounterKey, Delta, SpendCounters, apply_deltas
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.ledger.writer_process import WriterProcess

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 2000
MAX_BUFFERED = 100_000
"""Default bound of the buffer in items (records + events; about 3 per call)."""
RETRY_MAX_S = 2.0
"""Longest wait between flush attempts while the database fails."""
REPORT_EVERY_S = 10.0
CLOSE_TIMEOUT_S = 10.0

log = logging.getLogger("metis.ledger.writer")


@dataclass(slots=True)
class PendingEvent:
    """An event payload and its typed ids, turned into a row at flush time."""

    payload: msgspec.Struct
    ts: datetime
    ids: dict[str, str | None]


@dataclass
class WriteBehind:
    """The buffer and its flusher. One per gateway process."""

    engine: Engine
    counters: SpendCounters | None = None
    flush_interval_s: float = FLUSH_INTERVAL_S
    max_items: int = MAX_BUFFERED
    close_timeout_s: float = CLOSE_TIMEOUT_S
    _records: list[UsageRecord] = field(default_factory=list)
    _events: list[PendingEvent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _flush_lock: asyncio.Lock | None = None
    _stopping: bool = False
    _down_since: float | None = None  # monotonic start of a write outage
    _retry_in: float = 0.0
    _reported_at: float = 0.0
    _overflow_logged: bool = False
    _in_flight: int = 0  # items of the batch being written (still not stored)
    flushes: int = 0
    failures: int = 0
    on_flush: list[Callable[[int, int], None]] = field(default_factory=list)
    process: bool = False
    """Flush in a child process (`metis.ledger.writer_process`) instead of a worker thread."""
    _sink: _ThreadSink | WriterProcess | None = None  # where batches go, made on first use

    # -- request path ---------------------------------------------------------
    def add(
        self,
        record: UsageRecord | None = None,
        events: tuple[PendingEvent, ...] | list[PendingEvent] = (),
    ) -> None:
        """Buffer a record and/or events (no I/O; safe to call from the event loop)."""
        if record is not None:
            self._records.append(record)
        if events:
            self._events.extend(events)
        if (
            self._wake is not None
            and len(self._records) + len(self._events) >= MAX_BATCH
            and self._down_since is None  # backing off: do not hammer a failing database
        ):
            self._wake.set()

    @property
    def pending(self) -> int:
        """Items not stored yet: buffered plus the batch being written."""
        return len(self._records) + len(self._events) + self._in_flight

    @property
    def full(self) -> bool:
        """The buffer reached ``max_items``: the gateway admits no new calls.

        The batch a flush is writing counts too, so a flush attempt against a
        failing database does not open room for calls it cannot store.
        """
        return self.pending >= self.max_items

    @property
    def down_for(self) -> float | None:
        """Seconds since writes started failing, or None while they succeed."""
        return None if self._down_since is None else time.monotonic() - self._down_since

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the periodic flusher on the running loop."""
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._run(), name="metis-write-behind")

    async def _run(self) -> None:
        assert self._wake is not None
        if self.process:
            # Spawn the writer child now, so the first flush does not wait for its
            # imports; under the flush lock, so a flush never spawns a second one.
            assert self._flush_lock is not None
            async with self._flush_lock:
                try:
                    await self._the_sink().start()
                except Exception:
                    log.warning("writer process did not start; will retry", exc_info=True)
        while not self._stopping:
            delay = self.flush_interval_s if self._down_since is None else self._retry_in
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            if self._stopping:
                return
            try:
                n = await self.flush()
            except Exception as exc:  # keep flushing; the batch was re-queued
                self._failed(exc)
            else:
                if self._down_since is not None:
                    log.warning(
                        "database writes resumed after %.1f s; wrote %d buffered items",
                        time.monotonic() - self._down_since,
                        n,
                    )
                    self._down_since = None
                    self._overflow_logged = False

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._reported_at = now
            self._retry_in = self.flush_interval_s
            log.error(
                "database write failed (%s); keeping %d buffered items, retrying",
                _reason(exc),
                self.pending,
                exc_info=True,
            )
        else:
            self._retry_in = min(self._retry_in * 2, RETRY_MAX_S)
            if now - self._reported_at >= REPORT_EVERY_S:
                self._reported_at = now
                log.warning(
                    "database writes failing for %.0f s (%s); %d items buffered",
                    now - self._down_since,
                    _reason(exc),
                    self.pending,
                )
        if self.full and not self._overflow_logged:
            self._overflow_logged = True
            log.error(
                "write-behind buffer full (%d items, METIS_WRITE_BUFFER_MAX_ITEMS=%d): "
                "new gateway requests get 503 until the database accepts writes",
                self.pending,
                self.max_items,
            )

    async def flush(self) -> int:
        """Write everything buffered now, in one transaction; returns items written."""
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            records, self._records = self._records, []
            evs, self._events = self._events, []
            deltas = self.counters.take_deltas() if self.counters is not None else {}
            if not records and not evs and not deltas:
                return 0
            self._in_flight = len(records) + len(evs)
            try:
                await self._the_sink().write(records, evs, deltas)
            except BaseException:
                self.failures += 1
                self._records[:0] = records
                self._events[:0] = evs
                if self.counters is not None:
                    self.counters.restore_deltas(deltas)
                raise
            finally:
                self._in_flight = 0
            if self.counters is not None:
                self.counters.deltas_applied(deltas)
            self.flushes += 1
            for cb in self.on_flush:
                cb(len(records), len(evs))
            return len(records) + len(evs)

    async def close(self) -> None:
        """Stop the flusher and flush what is left (graceful shutdown).

        The flusher is stopped cooperatively (never cancelled mid-write), so a
        flush already in its worker thread completes before the final one.
        """
        self._stopping = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            await self._task
            self._task = None
        try:
            await self._final_flush()
        finally:
            if self._sink is not None:
                await self._sink.close()

    def _the_sink(self) -> _ThreadSink | WriterProcess:
        if self._sink is None:
            self._sink = WriterProcess(self.engine) if self.process else _ThreadSink(self.engine)
        return self._sink

    async def _final_flush(self) -> None:
        deadline = time.monotonic() + self.close_timeout_s
        delay = self.flush_interval_s
        while True:
            try:
                await self.flush()
                return
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    log.error(
                        "shutting down with %d usage records and %d events not written "
                        "(database unavailable for %.0f s: %s); they are lost",
                        len(self._records),
                        len(self._events),
                        self.close_timeout_s,
                        _reason(exc),
                    )
                    return
                if delay == self.flush_interval_s:
                    log.warning("final flush failed (%s); retrying", _reason(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


def _reason(exc: BaseException) -> str:
    """The driver's own first line (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}"


_USER_COL = EVENT_COLUMNS.index("user_id")
_PAYLOAD_COL = EVENT_COLUMNS.index("payload")
_USER_SCOPES = ("user_daily", "user_monthly")


def _forget_forgotten(
    conn: Connection,
    records: list[UsageRecord],
    rows: list[tuple[Any, ...]],
    deltas: dict[CounterKey, Delta],
) -> tuple[list[UsageRecord], list[tuple[Any, ...]], dict[CounterKey, Delta]]:
    """The batch with every forgotten user's id replaced by a pseudonym (see
    `metis.identity.forgotten`): a call completed before, or in flight during, a
    ``forget`` is written without a link to the user. One indexed read per flush."""
    ids = {r.user_id for r in records}
    ids.update(row[_USER_COL] for row in rows)
    ids.update(k[1] for k in deltas if k[0] in _USER_SCOPES)
    gone = pseudonyms_for_forgotten(conn, ids)
    if not gone:
        return records, rows, deltas
    records = [
        msgspec.structs.replace(r, user_id=gone[r.user_id]) if r.user_id in gone else r
        for r in records
    ]
    out_rows = []
    for row in rows:
        uid = row[_USER_COL]
        payload = row[_PAYLOAD_COL]
        for old, new in gone.items():
            if isinstance(payload, str) and old in payload:
                payload = payload.replace(f'"{old}"', f'"{new}"')
        if uid in gone or payload is not row[_PAYLOAD_COL]:
            cols = list(row)
            cols[_USER_COL] = gone.get(uid, uid)
            cols[_PAYLOAD_COL] = payload
            row = tuple(cols)
        out_rows.append(row)
    out_deltas = {
        ((k[0], gone[k[1]], k[2]) if k[0] in _USER_SCOPES and k[1] in gone else k): d
        for k, d in deltas.items()
    }
    return records, out_rows, out_deltas


class _ThreadSink:
    """The in-thread flush: a `_WriterConnection` used from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.db = _WriterConnection(engine)

    async def start(self) -> None:
        return  # nothing to start: the connection opens at the first write

    async def write(
        self, records: list[UsageRecord], evs: list[PendingEvent], deltas: dict[CounterKey, Delta]
    ) -> None:
        await asyncio.to_thread(self.db.write, records, evs, deltas)

    async def close(self) -> None:
        await asyncio.to_thread(self.db.discard)


class _WriterConnection:
    """The flusher's own connection, kept open between flushes (used by one thread at a time)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def write(
        self,
        records: list[UsageRecord],
        evs: list[PendingEvent],
        deltas: dict[CounterKey, Delta],
    ) -> None:
        """One transaction: records, events, counter deltas. A failure drops the connection."""
        self.write_rows(records, [event_values(e.payload, e.ts, e.ids) for e in evs], deltas)

    def write_rows(
        self,
        records: list[UsageRecord],
        rows: list[tuple[Any, ...]],
        deltas: dict[CounterKey, Delta],
    ) -> None:
        """`write` with the events as `metis.events.event_values` rows already."""
        try:
            if self.conn is None:
                self.conn = self.engine.connect()
            with self.conn.begin():
                records, rows, deltas = _forget_forgotten(self.conn, records, rows, deltas)
                if records:
                    upsert_usage(self.conn, records)
                if rows:
                    append_event_values(self.conn, rows)
                if deltas:
                    apply_deltas(self.conn, deltas)
        except BaseException:
            self.discard()  # it may be broken (server restarted, file replaced…)
            raise

    def discard(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()
