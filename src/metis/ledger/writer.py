"""Write-behind batching for the gateway: usage records, events, counter deltas.

The request path only appends to an in-memory buffer (`WriteBehind.add`, no
I/O). A background task flushes the buffer every `FLUSH_INTERVAL_S` (0.2 s)
or as soon as `MAX_BATCH` items are waiting, in a worker thread, as **one
transaction per flush**: the usage records (`metis.ledger.upsert.upsert_usage`,
idempotent on the request id), the events, and the spend-counter deltas
(`metis.ledger.counters`).

Write-behind window: a completed call reaches the database within about
`FLUSH_INTERVAL_S` plus the flush's own duration (normally < 0.5 s). A failed
flush keeps the batch and retries on the next tick (records are idempotent, so
a retry after an ambiguous failure does not double count, and counter deltas
are re-queued only when the transaction did not commit). `close()` -- run by
the server's graceful shutdown -- flushes everything still buffered. A hard
kill loses at most the current window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Engine

from metis.events import append_events, event_row
from metis.ledger.counters import CounterKey, Delta, SpendCounters, apply_deltas
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 2000

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
    _records: list[UsageRecord] = field(default_factory=list)
    _events: list[PendingEvent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _flush_lock: asyncio.Lock | None = None
    _stopping: bool = False
    flushes: int = 0
    failures: int = 0
    on_flush: list[Callable[[int, int], None]] = field(default_factory=list)

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
        if self._wake is not None and len(self._records) + len(self._events) >= MAX_BATCH:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._records) + len(self._events)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the periodic flusher on the running loop."""
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task = asyncio.create_task(self._run(), name="metis-write-behind")

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except Exception:  # keep flushing; the batch was re-queued
                log.warning("write-behind flush failed; will retry", exc_info=True)

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
            try:
                await asyncio.to_thread(_write, self.engine, records, evs, deltas)
            except BaseException:
                self.failures += 1
                self._records[:0] = records
                self._events[:0] = evs
                if self.counters is not None:
                    self.counters.restore_deltas(deltas)
                raise
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
        for _ in range(3):
            try:
                await self.flush()
                return
            except Exception:
                log.error("final write-behind flush failed", exc_info=True)
                await asyncio.sleep(0.2)


def _write(
    engine: Engine,
    records: list[UsageRecord],
    evs: list[PendingEvent],
    deltas: dict[CounterKey, Delta],
) -> None:
    rows: list[dict[str, Any]] = [event_row(e.payload, ts=e.ts, **e.ids) for e in evs]
    with engine.begin() as conn:
        if records:
            upsert_usage(conn, records)
        if rows:
            append_events(conn, rows)
        if deltas:
            apply_deltas(conn, deltas)
