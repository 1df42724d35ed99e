"""``wide_sum``: an exact SQL ``SUM`` of 64-bit integers that cannot overflow, on both backends.

PostgreSQL already sums ``bigint`` as ``numeric`` (arbitrary precision): the
construct is plain ``sum(x)`` there and the value comes back as an ``int``.
SQLite's ``sum()`` raises ``integer overflow`` past 2^63 − 1, so there the
value is split into its high and low 32 bits and the halves are summed
separately::

    CAST(sum(x >> 32) AS TEXT) || ':' || CAST(sum(x & 4294967295) AS TEXT)

and the result processor adds them back (``hi * 2^32 + lo``) in Python. Each
half-sum stays inside 64 bits for up to 2^31 summed rows of values up to
2^62 (the ledger's per-cell bound, `metis.ledger.bounds.CELL_MAX`), which is
the guarantee docs/security.md states. Values are integers of magnitude at most
2^62 (negative ones, e.g. provider credits, split as floor and remainder, as in
Python).

Use it for sums whose result Python reads (analytics, reconciliation,
exports). Do not use it inside ``INSERT … SELECT`` (the SQLite form is text),
nor on expressions with bound parameters (the argument is rendered twice on
SQLite): pass a plain column.

The split costs a text decode per value on SQLite, which adds up on queries
returning tens of thousands of groups; `rows_with_exact_sums` runs such a
query with a plain ``sum`` first and falls back to `wide_sum` only when
SQLite reports the overflow (an error, never a wrong value).
"""

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Row, func
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String, TypeDecorator


class WideInt(TypeDecorator[int]):
    """The result type of `wide_sum`: an exact Python ``int`` (or None for no rows)."""

    impl = String
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            hi, _, lo = value.partition(":")
            return (int(hi) << 32) + int(lo)
        return int(value)


class wide_sum(FunctionElement[int]):
    """``SUM`` of one integer column, exact whatever the total (module docstring)."""

    type = WideInt()
    inherit_cache = True
    name = "wide_sum"


@compiles(wide_sum)
def _sum_default(element: wide_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(wide_sum, "sqlite")
def _sum_sqlite(element: wide_sum, compiler: SQLCompiler, **kw: Any) -> str:
    arg = compiler.process(element.clauses, **kw)
    return f"(CAST(sum(({arg}) >> 32) AS TEXT) || ':' || CAST(sum(({arg}) & 4294967295) AS TEXT))"


SumFn = Callable[[Any], Any]


def rows_with_exact_sums(conn: Connection, build: Callable[[SumFn], Any]) -> Sequence[Row[Any]]:
    """The rows of ``build(sum_fn)`` with exact integer sums, cheaply when they fit 64 bits.

    ``build`` makes the query from a sum function applied to plain columns.
    On SQLite it first gets ``func.sum``: SQLite's integer ``sum`` raises
    ``integer overflow`` rather than return a wrong value, and then the query
    runs again with `wide_sum`. On PostgreSQL (numeric sums) `wide_sum` is
    plain ``sum`` already. Sums come back as Python ints either way.
    """
    if conn.dialect.name == "sqlite":
        try:
            return conn.execute(build(func.sum)).all()
        except OperationalError as exc:
            if "integer overflow" not in str(exc.orig):
                raise
    return conn.execute(build(wide_sum)).all()
