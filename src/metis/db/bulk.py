"""Compiled statements executed with plain tuples, for the hot write paths.

SQLAlchemy's per-row parameter handling (a dict per row, ``construct_params``,
type processors looked up per execution) costs several microseconds per row
and column; the gateway's write-behind flush writes three rows per request,
so it dominated the flush's CPU time (docs/performance.md, "Gateway"). Here a
statement is compiled once per dialect by SQLAlchemy itself (same SQL, same
bind casts on PostgreSQL), the bind processors of its columns are looked up
once, and rows go to the DBAPI cursor as tuples (``exec_driver_sql``). The
values stored are exactly those SQLAlchemy would store: each column's own
bind processor is applied (UTC datetimes, dates on SQLite, JSON, booleans).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any]

_NAMED = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True, slots=True)
class Compiled:
    """One statement compiled for one dialect with positional placeholders.

    ``values`` is the ``VALUES (…)`` group of one row (for multi-row
    statements, `many_sql` repeats it); ``processors`` has one entry per
    column of ``columns``, None where the column's type needs no conversion.
    """

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    values: str
    memoize: frozenset[int] = frozenset()
    """Columns (indexes) whose processor is pure and whose values repeat
    (datetimes, dates: a batch's rows share a few timestamps), so each distinct
    value is converted once per call."""

    def process(self, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Apply the columns' bind processors to every row (rows in column order)."""
        procs = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        if not procs:
            return [tuple(r) for r in rows]
        memo: dict[tuple[int, Any], Any] = {}
        plain = [(i, p) for i, p in procs if i not in self.memoize]
        cached = [(i, p) for i, p in procs if i in self.memoize]
        out = []
        for r in rows:
            row = list(r)
            for i, p in plain:
                row[i] = p(row[i])
            for i, p in cached:
                k = (i, row[i])
                v = memo.get(k, memo)
                if v is memo:
                    v = memo[k] = p(row[i])
                row[i] = v
            out.append(tuple(row))
        return out

    unnest_sql: str | None = None
    """PostgreSQL: the same statement reading its rows from ``unnest`` of one
    array per column (`many`)."""

    def many_sql(self, n: int) -> str:
        """The statement with ``n`` VALUES groups (one multi-row INSERT)."""
        if n == 1:
            return self.sql
        return self.sql.replace(self.values, ", ".join([self.values] * n), 1)

    def many(self, rows: list[tuple[Any, ...]]) -> tuple[str, tuple[Any, ...]]:
        """One statement and its parameters inserting all ``rows`` (processed rows).

        On PostgreSQL the rows travel as one array per column (``unnest``): the
        statement text is the same for every batch, where a multi-row VALUES
        with thousands of placeholders cost psycopg milliseconds to parse on
        every execution. Elsewhere: VALUES repeated per row.
        """
        if self.unnest_sql is not None:
            return self.unnest_sql, tuple(list(col) for col in zip(*rows, strict=True))
        return self.many_sql(len(rows)), tuple(x for row in rows for x in row)


def compile_insert(
    stmt: ClauseElement,
    table: Table,
    columns: Sequence[str],
    dialect: Dialect,
    *,
    raw: Collection[str] = (),
) -> Compiled:
    """Compile ``stmt`` (an INSERT into ``table`` of ``columns``) for ``dialect``.

    The statement must bind nothing but the inserted values (use
    ``literal_column`` for constants elsewhere). Placeholders become
    positional (``?`` on SQLite, ``%s`` on psycopg) in ``columns`` order.
    Columns named in ``raw`` get their values as the driver takes them
    (no bind processor: e.g. JSON already encoded as text).
    """
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    sql = compiled.string
    if dialect.paramstyle == "qmark":
        order = list(getattr(compiled, "positiontup", None) or ())
        values = "(" + ", ".join(["?"] * len(order)) + ")"
    elif dialect.paramstyle in ("pyformat", "format"):
        order = _NAMED.findall(sql)
        sql = _NAMED.sub("%s", sql)
        start = sql.index(" VALUES (") + len(" VALUES ")
        values = sql[start : _closing(sql, start) + 1]
    else:  # pragma: no cover - only SQLite and psycopg are supported
        raise RuntimeError(f"unsupported paramstyle {dialect.paramstyle}")
    if order != list(columns):
        raise RuntimeError(f"statement binds {order}, expected {list(columns)}")
    if values not in sql:  # pragma: no cover - SQLAlchemy renders one VALUES group
        raise RuntimeError("cannot find the VALUES group of the compiled statement")
    procs: list[Processor | None] = []
    memoize = set()
    for i, name in enumerate(columns):
        typ = table.c[name].type
        if name in raw:
            procs.append(None)
        else:
            procs.append(typ.dialect_impl(dialect).bind_processor(dialect))
        if _python_type(typ) in (datetime, date):
            memoize.add(i)
    unnest_sql = None
    if dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
        rows_from = f" SELECT * FROM unnest({arrays})"  # noqa: S608 - schema types, not input
        unnest_sql = sql.replace(" VALUES " + values, rows_from, 1)
    return Compiled(sql, tuple(columns), tuple(procs), values, frozenset(memoize), unnest_sql)


def _python_type(typ: Any) -> type | None:
    typ = getattr(typ, "impl_instance", typ)  # a TypeDecorator: its underlying type
    try:
        t = typ.python_type
    except NotImplementedError:
        return None
    return t if isinstance(t, type) else None


def _closing(sql: str, start: int) -> int:
    """Index of the parenthesis closing the one at ``start``."""
    depth = 0
    for i in range(start, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    raise RuntimeError("unbalanced parentheses in compiled statement")  # pragma: no cover


def executemany(conn: Connection, compiled: Compiled, rows: list[tuple[Any, ...]]) -> None:
    """Run ``compiled`` once per row (processed rows from `Compiled.process`)."""
    if rows:
        conn.exec_driver_sql(compiled.sql, rows)
