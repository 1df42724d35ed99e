"""Streaming exports: usage (raw rows or grouped) and the audit log (spec 003 §7.2).

Everything is a generator of encoded chunks: rows are read with
``yield_per`` (server-side cursors on PostgreSQL), written to a small
buffer and handed on, so exporting millions of rows holds one batch in
memory. Exports carry stable ids only; ``with_names`` joins display names
(user display name, team name, key name) at export time, never emails.
Money is exact USD in plain decimal notation (nine decimals, never an
exponent: `metis.money.plain_usd`).

The usage export reads the query layer every other surface reads
(`metis.analytics.views`), for the same window and view, so its totals are
the analytics API's: grouped, `views.usage`; ungrouped, `views.stored_usage`
and `views.residue_rows`, where each row carries its reconciliation ``class``
and whether the view ``counted`` it (the counted rows sum to
``/analytics/cost``'s total). The ungrouped lines are built by the database
(`metis.analytics.export_lines`), the bytes `UsageRowEncoder` would write.
"""

import csv
import io
import itertools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
from sqlalchemy import Connection, Engine, select

from metis import jsonutil
from metis.analytics import export_lines, views
from metis.analytics.params import Filters, ParamError, Window
from metis.analytics.query import GROUP_DIMS, aggregate_raw, filter_conds
from metis.db.tables import events, gateway_keys, teams, users
from metis.money import plain_money_fields, plain_usd, usd_json
from metis.timeutil import iso

Format = Literal["csv", "jsonl"]
_T = TypeVar("_T")
BATCH = 5000

USAGE_COLUMNS = (
    "usage_date",
    "window_start",
    "window_end",
    "workspace_id",
    "source",
    "source_ref",
    "granularity",
    "provider",
    "model",
    "model_raw",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "request_count",
    "cost_nanousd",
    "cost_source",
    "pricing_version",
    "user_id",
    "team_id",
    "gateway_key_id",
    "correlation_id",
    "request_id",
    "status",
    "latency_ms",
    "revision",
)
AUDIT_COLUMNS = (
    "kind",
    "ts",
    "date",
    "key_id",
    "user_id",
    "team_id",
    "model",
    "cost_usd",
    "scope",
    "limit_usd",
    "current_usd",
    "reason",
    "previous_user_id",
    "previous_team_id",
)
AUDIT_EVENT_TYPES = {
    "gateway.key_issued": "key_issued",
    "gateway.key_revoked": "key_revoked",
    "gateway.key_updated": "key_updated",
    "gateway.quota_exceeded": "quota_exceeded",
}


def parse_format(value: str) -> Format:
    if value not in ("csv", "jsonl"):
        raise ParamError("invalid_format", "format must be csv or jsonl")
    return value  # type: ignore[return-value]


def parse_group_by(values: Sequence[str] | None) -> list[str]:
    """Whitelisted group-by names (``day``, ``user`` …) for a grouped usage export."""
    out = []
    for v in values or []:
        for part in v.split(","):
            part = part.strip()
            if part not in GROUP_DIMS:  # an empty name too, as the OpenAPI pattern says
                raise ParamError(
                    "invalid_group_by", f"group_by must be among {', '.join(GROUP_DIMS)}"
                )
            out.append(part)
    return out


def _cell(v: Any) -> Any:
    if isinstance(v, Decimal):
        return plain_usd(v)
    if hasattr(v, "isoformat") and hasattr(v, "tzinfo"):
        return iso(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading ``'``; numbers stay.

    Model names come from gateway clients and plugins, names from admins: a
    CSV export must not make a spreadsheet evaluate them (CSV injection).
    """
    if isinstance(v, str) and v[:1] in _FORMULA_START:
        try:
            if Decimal(v).is_finite():
                return v
        except ArithmeticError:
            pass
        return "'" + v
    return v


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return csv_safe(_cell(v))


class _Encoder:
    """Rows (dicts over fixed columns) to CSV or JSON Lines bytes."""

    def __init__(self, fmt: Format, columns: Sequence[str]) -> None:
        self.fmt, self.columns = fmt, list(columns)
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")

    def header(self) -> bytes:
        if self.fmt != "csv":
            return b""
        self._csv.writerow(self.columns)
        return self._take()

    def rows(self, rows: Sequence[dict[str, Any]]) -> bytes:
        if self.fmt == "jsonl":
            return b"".join(jsonutil.dumps(r) + b"\n" for r in rows)
        for r in rows:
            self._csv.writerow([_csv_cell(r.get(c)) for c in self.columns])
        return self._take()

    def _take(self) -> bytes:
        data = self._buf.getvalue().encode()
        self._buf.seek(0)
        self._buf.truncate()
        return data


def usage_export(
    engine: Engine,
    window: Window,
    filters: Filters,
    fmt: Format,
    group_by: Sequence[str] = (),
    view: views.View = "reconciled",
) -> Iterator[bytes]:
    """Usage as CSV/JSONL chunks in ``view``: every row of the window, or totals per ``group_by``.

    Grouped: one row per group, the figures of ``/analytics/cost`` for the
    same window and view. Ungrouped: every stored row of the window (each
    source's own rows, ordered by ``window_start``) with its ``class`` and
    ``counted``, then, in the reconciled view, the residue rows (source
    ``unattributed`` / ``drift_adjustment``); the counted rows add up to the
    view's total. ``window`` is the one `metis.analytics.views.query_window`
    resolved. Opens its own connection so an HTTP response can stream after
    the handler returned.
    """
    if group_by:
        cols = [GROUP_DIMS[g] for g in group_by]
        names = [*group_by, "record_count", "request_count", "error_count", "input_tokens",
                 "output_tokens", "cached_input_tokens", "cache_creation_input_tokens",
                 "reasoning_tokens", "cost_usd"]  # fmt: skip
        enc = _Encoder(fmt, names)
        with engine.connect() as conn:
            aggs = views.usage(conn, view, window, filters, cols)
        aggs.sort(key=lambda a: tuple("" if a.dims[c] is None else str(a.dims[c]) for c in cols))
        batch = []
        for a in aggs:
            row = {g: _cell(a.dims[GROUP_DIMS[g]]) for g in group_by}
            row.update(
                record_count=a.record_count,
                request_count=a.request_count,
                error_count=a.error_count,
                input_tokens=a.input_tokens,
                output_tokens=a.output_tokens,
                cached_input_tokens=a.cached_input_tokens,
                cache_creation_input_tokens=a.cache_creation_input_tokens,
                reasoning_tokens=a.reasoning_tokens,
                cost_usd=usd_json(a.cost_nanousd),
            )
            batch.append(row)
        # One chunk, computed before anything is sent: a failure is a status, never a cut file.
        yield enc.header() + enc.rows(batch)
        return
    yield from _usage_lines(engine, window, filters, fmt, view)


def _usage_lines(
    engine: Engine, window: Window, filters: Filters, fmt: Format, view: views.View
) -> Iterator[bytes]:
    """The ungrouped export: the stored rows' lines as the database builds them
    (`export_lines`), each batch checked and its odd rows encoded here, then the residue."""
    enc = UsageRowEncoder(fmt)
    head = enc.header()  # sent with the first rows, once the query has run
    counted = views.counted_classes(view)
    check = export_lines.PlainCheck(fmt)
    c = views.stored_usage(view, window, filters)
    db = _Session(engine)
    try:
        if c is not None:
            q = export_lines.line_query(c, USAGE_COLUMNS, fmt, counted, engine.dialect.name)
            for part in db.batches(q):
                lines: list[Any] = list(map(_first, part))
                if any(type(s) is str for s in lines[:1]):  # PostgreSQL's text
                    lines = [None if s is None else s.encode() for s in lines]
                data = _plain_batch(lines, part, check)
                if data is None:  # some rows are written from their values
                    slow = [r[1] for r, line in zip(part, lines, strict=True)
                            if line is None or not check.batch(line + b"\n", 1, r[2])]  # fmt: skip
                    rows = db.run(_rows_by_id, c, slow, counted)
                    data = b"".join(
                        enc.rows([rows[r[1]]]) if r[1] in rows else line + b"\n"
                        for r, line in zip(part, lines, strict=True)
                    )
                yield head + data
                head = b""
        residue = db.run(views.residue_rows, view, window, filters, USAGE_COLUMNS)
        if residue:
            yield head + enc.rows(residue)
            head = b""
    finally:
        db.close()
    if head:
        yield head


class _Session:
    """One export's connection; on PostgreSQL it reads the next batch while this one is sent.

    On PostgreSQL every statement runs on a thread of the session's own, one
    at a time and in order (the connection is never used by two threads),
    and the next batch is fetched there while the caller checks and writes
    the current one: the server builds lines while Python works, and psycopg
    waits for it without holding Python's lock. The session reads one
    snapshot (``REPEATABLE READ``), so rows read again by id are the ones the
    lines came from. On SQLite everything runs inline: its step gives Python's
    lock back and takes it again per row, so a second thread gains nothing.
    """

    def __init__(self, engine: Engine) -> None:
        pg = engine.dialect.name == "postgresql"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="metis-export") if pg else None
        if self._pool is None:
            self.conn = self._connect(engine)
            return
        try:
            self.conn = self._pool.submit(self._connect, engine).result()
        except BaseException:
            self._pool.shutdown(wait=True)
            raise

    @staticmethod
    def _connect(engine: Engine) -> Connection:
        conn = engine.connect()
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
            for statement in export_lines.PG_SESSION:
                conn.exec_driver_sql(statement)
        return conn

    def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the session's connection."""
        if self._pool is None:
            return fn(self.conn, *args)
        return self._pool.submit(fn, self.conn, *args).result()

    def batches(self, q: Any) -> Iterator[Sequence[Any]]:
        """The rows of ``q`` in `BATCH`-row lists, streamed (a server-side cursor on PostgreSQL)."""
        parts = self.run(_stream, q)
        if self._pool is None:
            yield from parts
            return
        ahead = self._pool.submit(next, parts, None)
        while (part := ahead.result()) is not None:
            ahead = self._pool.submit(next, parts, None)
            yield part

    def close(self) -> None:
        if self._pool is None:
            self.conn.close()
            return
        self._pool.submit(self.conn.close)  # after a batch still being read
        self._pool.shutdown(wait=True)


def _stream(conn: Connection, q: Any) -> Iterator[Sequence[Any]]:
    """``q``'s rows in batches of tuples, straight from the driver's (server-side) cursor.

    ``q``'s columns need no result processing (text or bytes and integers), so
    after the first batch the rows skip SQLAlchemy's, which costs more per row
    than this export's own work. The first batch is read through the result,
    which drains the rows it read ahead (tests/analytics/test_export_lines.py
    loses rows if it does not).
    """
    result = conn.execute(q.execution_options(stream_results=True))

    def batches() -> Iterator[Sequence[Any]]:
        try:
            part: Sequence[Any] = [tuple(r) for r in result.fetchmany(BATCH)]
            while part:
                yield part
                # A short batch was the last (and the result may have closed its cursor).
                if len(part) < BATCH or result.cursor is None:
                    break
                part = result.cursor.fetchmany(BATCH)
        finally:
            result.close()

    return batches()


_first, _third = itemgetter(0), itemgetter(2)


def _plain_batch(
    lines: list[Any], part: Sequence[Any], check: export_lines.PlainCheck
) -> bytes | None:
    """The bytes of a batch's lines when every one is there and plain, else None."""
    if None in lines:
        return None
    lines.append(b"")  # the last line's newline, without copying the batch once more
    data = b"\n".join(lines)
    lines.pop()
    return data if check.batch(data, len(part), sum(map(_third, part))) else None


def _rows_by_id(
    conn: Connection, c: Any, ids: Sequence[int], counted: Sequence[str] | None
) -> dict[int, tuple[Any, ...]]:
    """The stored rows ``ids`` of subquery ``c`` as `UsageRowEncoder` tuples, by id."""
    cols = (*(c.c[n] for n in USAGE_COLUMNS), c.c.klass, c.c.id)
    out: dict[int, tuple[Any, ...]] = {}
    for i in range(0, len(ids), 500):
        for r in conn.execute(select(*cols).where(c.c.id.in_(ids[i : i + 500]))):
            out[r[-1]] = (*r[:-1], counted is None or r[-2] in counted)
    return out


_COST = USAGE_COLUMNS.index("cost_nanousd")
USAGE_CSV_COLUMNS = (*("cost_usd" if c == "cost_nanousd" else c for c in USAGE_COLUMNS),
                     "class", "counted")  # fmt: skip
"""The ungrouped usage export's CSV header: `USAGE_COLUMNS` in order, cost in USD."""
USAGE_JSONL_KEYS = (*(c for c in USAGE_COLUMNS if c != "cost_nanousd"),
                    "cost_usd", "class", "counted")  # fmt: skip
"""The ungrouped usage export's JSON Lines keys, in order (``cost_usd`` after ``revision``)."""
# One JSON Lines object, keys in that order: a Struct encodes three times faster than a dict.
_JsonlRow = msgspec.defstruct(
    "UsageJsonlRow",
    [f"f{i}" for i in range(len(USAGE_JSONL_KEYS))],
    rename={f"f{i}": k for i, k in enumerate(USAGE_JSONL_KEYS)},
)
# A CSV cell that begins like a formula, quoted (``"``) or not: a batch without one needs no
# `csv_safe` pass (see `UsageRowEncoder`). Every cell but a line's first follows a comma, and
# the first is ``usage_date``.
_MAYBE_FORMULA = re.compile(r',"?[=+\-@\t\r]')


def nano_usd_text(nanos: int) -> str:
    """Integer nano-USD as plain USD text with nine decimals: ``plain_usd(usd_json(nanos))``.

    Integer arithmetic instead of a Decimal division and quantize per row (a
    large export formats one amount per row).
    """
    whole, frac = divmod(-nanos if nanos < 0 else nanos, 1_000_000_000)
    return f"{'-' if nanos < 0 else ''}{whole}.{frac:09d}"


class UsageRowEncoder:
    """Usage tuples (`USAGE_COLUMNS`' values, class, counted) to CSV or JSON Lines bytes.

    It writes the rows `export_lines` leaves to Python (text that needs
    quoting, escaping or the formula guard) and the residue rows. The output
    is the one a per-cell encoding gives (dates and times ISO 8601 UTC with
    ``Z``, money plain USD with nine decimals, ``counted`` as true/false,
    empty CSV cells for nulls, `csv_safe` text cells): what is fast here is
    how. msgspec writes dates and times (``to_builtins`` for CSV,
    ``encode_lines`` of Structs for JSON Lines, a batch per call) exactly as
    `metis.timeutil.iso` does for the aware UTC datetimes the ledger returns
    (`views` gives no other kind); Python touches only the cost and
    ``counted`` of a row; CSV rows go to the C ``csv.writer`` in one
    ``writerows``, and the `csv_safe` pass over every text cell runs only for
    a batch whose encoded text has a cell starting like a formula (rare: a
    negative residue, a hostile model name).
    """

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n")
        self._encoder = msgspec.json.Encoder()

    def header(self) -> bytes:
        if self.fmt != "csv":
            return b""
        self._csv.writerow(USAGE_CSV_COLUMNS)
        return self._take()

    def rows(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        if self.fmt == "jsonl":
            return self._jsonl_rows(rows)
        self._csv.writerows(self._csv_rows(rows))
        text = self._buf.getvalue()
        if _MAYBE_FORMULA.search(text):
            self._buf.seek(0)
            self._buf.truncate()
            self._csv.writerows(
                [csv_safe(v) if isinstance(v, str) else v for v in r] for r in self._csv_rows(rows)
            )
        return self._take()

    @staticmethod
    def _csv_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        c = _COST
        return [
            (*r[:c], nano_usd_text(r[c]), *r[c + 1 : -1], "true" if r[-1] else "false")
            for r in msgspec.to_builtins(rows)  # dates and times to text, in C
        ]

    def _jsonl_rows(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        c, line, raw = _COST, _JsonlRow, msgspec.Raw
        return self._encoder.encode_lines(
            [
                line(*r[:c], *r[c + 1 : -2], raw(nano_usd_text(r[c]).encode()), r[-2], r[-1])
                for r in rows
            ]
        )

    def _take(self) -> bytes:
        data = self._buf.getvalue().encode()
        self._buf.seek(0)
        self._buf.truncate()
        return data


def _names(conn: Connection) -> Callable[[str, str | None], str | None]:
    cache: dict[tuple[str, str], str | None] = {}
    tables = {"user": (users, users.c.display_name), "team": (teams, teams.c.name),
              "key": (gateway_keys, gateway_keys.c.name)}  # fmt: skip

    def name(kind: str, ident: str | None) -> str | None:
        if not ident:
            return None
        if (kind, ident) not in cache:
            t, col = tables[kind]
            cache[(kind, ident)] = conn.execute(select(col).where(t.c.id == ident)).scalar()
        return cache[(kind, ident)]

    return name


def audit_export(
    engine: Engine, window: Window, filters: Filters, fmt: Format, with_names: bool = False
) -> Iterator[bytes]:
    """The audit log: key issued/revoked, quota exceeded, then who-paid-what per day.

    who-paid-what rows are ``(date, user_id, team_id, key_id, model, cost_usd)``
    from the daily rollups (raw view). ``with_names`` adds ``user_name``,
    ``team_name`` and ``key_name`` columns.
    """
    cols = list(AUDIT_COLUMNS)
    if with_names:
        cols += ["user_name", "team_name", "key_name"]
    enc = _Encoder(fmt, cols)
    head = enc.header()  # sent with the first rows, once the query has run
    e = events.c
    conds = [
        e.type.in_(list(AUDIT_EVENT_TYPES)),
        e.ts >= window.start,
        e.ts < window.end,
        *filter_conds(events, filters, source=False),
    ]
    q = (
        select(e.type, e.ts, e.user_id, e.team_id, e.gateway_key_id, e.payload)
        .where(*conds)
        .order_by(e.ts, e.id)
    )
    with engine.connect() as conn:
        name = _names(conn) if with_names else None

        def finish(row: dict[str, Any]) -> dict[str, Any]:
            if name is not None:
                row["user_name"] = name("user", row.get("user_id"))
                row["team_name"] = name("team", row.get("team_id"))
                row["key_name"] = name("key", row.get("key_id"))
            return {c: row.get(c) for c in cols}

        result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(q)
        for part in result.partitions():
            out = []
            for typ, ts, uid, tid, kid, payload in part:
                p = payload or {}
                out.append(
                    finish(
                        {
                            "kind": AUDIT_EVENT_TYPES[typ],
                            "ts": iso(ts),
                            "date": ts.date().isoformat(),
                            "key_id": kid or p.get("key_id") or p.get("gateway_key_id"),
                            "user_id": uid if uid is not None else p.get("user_id"),
                            "team_id": tid if tid is not None else p.get("team_id"),
                            "scope": p.get("scope"),
                            "limit_usd": plain_money_fields(p).get("limit_usd"),
                            "current_usd": plain_money_fields(p).get("current_usd"),
                            "reason": p.get("reason"),
                            "previous_user_id": p.get("previous_user_id"),
                            "previous_team_id": p.get("previous_team_id"),
                        }
                    )
                )
            yield head + enc.rows(out)
            head = b""
        aggs = aggregate_raw(
            conn, window, filters, ["usage_date", "user_id", "team_id", "gateway_key_id", "model"]
        )
        aggs.sort(
            key=lambda a: tuple(
                "" if a.dims[c] is None else str(a.dims[c])
                for c in ("usage_date", "user_id", "team_id", "gateway_key_id", "model")
            )
        )
        out = [
            finish(
                {
                    "kind": "who_paid_what",
                    "date": a.dims["usage_date"].isoformat(),
                    "key_id": a.dims["gateway_key_id"],
                    "user_id": a.dims["user_id"],
                    "team_id": a.dims["team_id"],
                    "model": a.dims["model"],
                    "cost_usd": usd_json(a.cost_nanousd),
                }
            )
            for a in aggs
        ]
        yield head + enc.rows(out)


def primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Run an export up to its first chunk now, then hand on the rest.

    Every export's first chunk comes after its first query ran, so calling
    this before an HTTP response starts makes a database error (or a bad
    window found late) an error status instead of a 200 whose body stops
    early. A failure after that first chunk aborts the connection: the
    chunked body is never terminated, so clients see an incomplete transfer,
    never a short file that looks whole.
    """
    first = next(chunks, None)
    return chunks if first is None else itertools.chain((first,), chunks)


def write_private(path: Path, chunks: Iterator[bytes]) -> int:
    """Write ``chunks`` to ``path`` created 0600 (exports may hold attribution); returns bytes.

    Written to a temporary file beside ``path`` and renamed into place at the
    end, so an export that fails half-way leaves no partial file that looks
    like a complete one (the error is raised, the temporary file removed).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    n = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                n += len(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
