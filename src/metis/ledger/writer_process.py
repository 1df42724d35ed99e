"""The write-behind flush in a child process, so a flush never holds the gateway's GIL.

In-thread, a flush of N requests runs ~100 us of Python per request on a
worker thread of the gateway process; while it runs, the event loop gets the
GIL back only every switch interval, which is what made the gateway's tail
latency (docs/performance.md, "Gateway"). Here the gateway encodes the batch
(msgspec msgpack; each event's payload as the JSON text it is stored as,
so it is encoded once: a few microseconds per request, on the event loop)
and sends it over a pipe to ``python -m metis.ledger.writer_process``, which does
exactly what the in-thread flush does (`metis.ledger.writer._WriterConnection`:
one transaction of records, events and counter deltas) and answers ``ok`` or
the driver's one-line error. Nothing else changes: the parent keeps the
buffer, the retry/backoff policy and the counter bookkeeping
(`metis.ledger.writer.WriteBehind`).

Failure handling: an error answer raises `WriterError` (the batch is
re-queued by the caller, as for an in-thread failure). A child that dies or
stops answering is treated the same way and replaced at the next flush; as in
the thread, a child killed after its commit but before its answer makes the
retry replay the batch (records are idempotent; events and counter deltas of
that one batch would be written twice -- the same window as an in-thread
commit whose acknowledgement is lost).

The database URL (with its password) reaches the child on its stdin, never
in its argv or environment. Timestamps cross the pipe as msgpack timestamps
(UTC): the gateway's records and events are UTC already.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
import sys
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Engine

from metis.events import event_parts, parts_values
from metis.ledger.counters import CounterKey, Delta
from metis.ledger.record import UsageRecord

_LEN = struct.Struct("!I")
START_TIMEOUT_S = 60.0
"""How long the first answer (imports + connecting) may take."""
ANSWER_TIMEOUT_S = 120.0
"""How long one flush may take before the child is considered stuck."""


class WriterError(Exception):
    """The writer process could not write a batch (the message is the driver's first line)."""


class _Event(msgspec.Struct, array_like=True):
    kind: str
    ts: datetime
    typed: tuple[str | None, ...]
    payload: str  # JSON text, stored as is


class _Batch(msgspec.Struct, array_like=True):
    records: list[UsageRecord]
    events: list[_Event]
    deltas: list[tuple[str, str, str, int, int]]


class _Answer(msgspec.Struct, array_like=True):
    ok: bool
    error: str = ""


_enc = msgspec.msgpack.Encoder()
_dec_batch = msgspec.msgpack.Decoder(_Batch)
_dec_answer = msgspec.msgpack.Decoder(_Answer)


def encode_batch(
    records: list[UsageRecord], evs: list[Any], deltas: dict[CounterKey, Delta]
) -> bytes:
    """The batch as one msgpack message (``evs``: `metis.ledger.writer.PendingEvent`)."""
    return _enc.encode(
        _Batch(
            records,
            [_Event(*event_parts(e.payload, e.ts, e.ids)) for e in evs],
            [(k[0], k[1], k[2], d.spent, d.reserved) for k, d in deltas.items()],
        )
    )


def decode_batch(
    data: bytes,
) -> tuple[list[UsageRecord], list[tuple[Any, ...]], dict[CounterKey, Delta]]:
    """Inverse of `encode_batch`: records, event rows (`metis.events.event_values`), deltas."""
    b = _dec_batch.decode(data)
    rows = [parts_values((e.kind, e.ts, e.typed, e.payload)) for e in b.events]
    deltas = {(s, i, p): Delta(spent=sp, reserved=rs) for s, i, p, sp, rs in b.deltas}
    return b.records, rows, deltas


class WriterProcess:
    """The parent's handle on one writer child (spawned lazily, replaced when it dies)."""

    def __init__(self, engine: Engine) -> None:
        self.url = engine.url.render_as_string(hide_password=False)
        self._proc: asyncio.subprocess.Process | None = None

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "metis.ledger.writer_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._proc = proc
        try:
            await self._exchange(proc, self.url.encode(), START_TIMEOUT_S)
        except BaseException:
            await self._kill()
            raise
        return proc

    async def start(self) -> None:
        """Spawn the child now (so the first flush does not wait for its imports)."""
        if self._proc is None:
            await self._spawn()

    async def write(
        self, records: list[UsageRecord], evs: list[Any], deltas: dict[CounterKey, Delta]
    ) -> None:
        """Write one batch in one transaction in the child; raises on any failure."""
        data = encode_batch(records, evs, deltas)
        proc = self._proc if self._proc is not None else await self._spawn()
        try:
            await self._exchange(proc, data, ANSWER_TIMEOUT_S)
        except WriterError:
            raise
        except BaseException:
            await self._kill()  # dead, stuck or cancelled mid-exchange: never reuse it
            raise

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, data: bytes, timeout: float) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_LEN.pack(len(data)) + data)
            await proc.stdin.drain()
            head = await asyncio.wait_for(proc.stdout.readexactly(_LEN.size), timeout)
            body = await asyncio.wait_for(proc.stdout.readexactly(_LEN.unpack(head)[0]), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as e:
            raise RuntimeError("the writer process exited") from e
        except TimeoutError as e:
            raise RuntimeError("the writer process did not answer") from e
        ans = _dec_answer.decode(body)
        if not ans.ok:
            raise WriterError(ans.error)

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self, timeout: float = 10.0) -> None:
        """Let the child finish and exit (end of its stdin); kill it if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _serve() -> None:
    """Child: read the URL, then batches; answer each one."""
    from metis.db.engine import make_engine
    from metis.ledger.writer import _reason, _WriterConnection

    # Ctrl-C reaches the whole process group: the parent shuts down gracefully
    # and still needs this child for its final flush (it ends us by closing stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def read() -> bytes | None:
        head = inp.read(_LEN.size)
        if len(head) < _LEN.size:
            return None
        return inp.read(_LEN.unpack(head)[0])

    def answer(a: _Answer) -> None:
        data = _enc.encode(a)
        out.write(_LEN.pack(len(data)) + data)
        out.flush()

    url = read()
    if url is None:
        return
    engine = make_engine(url.decode())
    db = _WriterConnection(engine)
    answer(_Answer(True))
    try:
        while (data := read()) is not None:
            try:
                db.write_rows(*decode_batch(data))
            except Exception as e:
                answer(_Answer(False, _reason(e)))
            else:
                answer(_Answer(True))
    finally:
        db.discard()
        engine.dispose()


if __name__ == "__main__":
    _serve()
