"""Ungrouped usage export lines built by the database, the bytes `UsageRowEncoder` writes.

Reading a row's 27 columns into Python objects costs more than a
100k-rows/s export can spend (about 90k rows per CPU-second on the
development machine before any encoding), so the database concatenates
each row's CSV or JSON Lines text and Python only joins lines.

The line is one ``printf`` (SQLite) or ``format`` (PostgreSQL) call per
row. It never has to reproduce CSV quoting, JSON escaping or the CSV
formula guard (`metis.analytics.exports.csv_safe` tests text with
``Decimal``): Python checks each batch of lines with a few C byte scans
(`PlainCheck`), and a line is used as it is only when its text cells are
printable ASCII without ``"`` (CSV) or ``\\`` (JSON Lines), hold no
comma (CSV) or quote (JSON Lines) beyond the structural ones, and, in CSV,
none begins like a formula (``=``, ``+``, ``-``, ``@``). Such text needs no
quoting or escaping in either format. Any other row, and on SQLite a row
whose values ``printf`` could not carry (a NUL in a text, a time stored in
another form), is read again by id and written by `UsageRowEncoder` from
its values. The check is conservative: a false alarm (a negative amount
after a comma) only costs that row the slow path.
tests/analytics/test_export_lines.py compares both paths on hostile rows,
on both backends.
"""

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Numeric,
    Select,
    Text,
    and_,
    case,
    cast,
    func,
    literal_column,
    select,
    true,
)

from metis.db.tables import usage_records
from metis.ledger import reconcile

Format = Literal["csv", "jsonl"]

PG_SESSION = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL jit = off",
)
"""What a PostgreSQL transaction running `line_query` must set first.

Dates and times are formatted in UTC and ISO whatever the server's or
role's defaults. JIT compilation took ~0.8 s per export (a one-off EXPLAIN
ANALYZE of 667k lines: 4.3 s with it, 3.5 s without) and the line expressions are
function calls it cannot make faster.
"""

# `metis.analytics.exports.USAGE_COLUMNS` by kind (a test checks they cover it exactly).
DATE_COLUMNS = ("usage_date",)
TIME_COLUMNS = ("window_start", "window_end")
TEXT_COLUMNS = ("workspace_id", "source", "source_ref", "granularity", "provider", "model",
                "model_raw", "cost_source", "pricing_version", "user_id", "team_id",
                "gateway_key_id", "correlation_id", "request_id", "status")  # fmt: skip
INT_COLUMNS = ("input_tokens", "output_tokens", "cached_input_tokens",
               "cache_creation_input_tokens", "reasoning_tokens", "request_count",
               "latency_ms", "revision")  # fmt: skip
MONEY_COLUMN = "cost_nanousd"


def _lit(sql: str) -> ColumnElement[Any]:
    return literal_column(sql, Text)


class _Cells:
    """Each exported value as a format template piece and its arguments, per dialect.

    The line is one ``printf`` (SQLite) or ``format`` (PostgreSQL) call: a
    chain of ``||`` copies the growing line once per cell, several times
    slower on a 28-cell line. ``%s`` of NULL is empty text in both.
    """

    def __init__(self, c: Any, dialect: str) -> None:
        self.c, self.pg = c, dialect == "postgresql"

    def date(self, name: str) -> tuple[str, list[Any]]:
        col = self.c.c[name]  # PostgreSQL: YYYY-MM-DD under `PG_SESSION`'s DateStyle
        return "%s", [cast(col, Text) if self.pg else col]

    def time(self, name: str) -> tuple[str, list[Any]]:
        """ISO 8601 UTC with ``Z``; microseconds only when not zero (`metis.timeutil.iso`)."""
        col = self.c.c[name]
        if self.pg:  # in UTC under `PG_SESSION`
            text = func.to_char(col, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            return "%s", [func.replace(text, ".000000Z", "Z")]
        # Stored as YYYY-MM-DD HH:MM:SS.ffffff (`formattable`); the fraction only when not
        # zero (NULL prints as nothing).
        t = cast(col, Text)
        return "%.10sT%.8s%sZ", [t, func.substr(t, 12), func.nullif(func.substr(t, 20), ".000000")]

    def money(self) -> tuple[str, list[Any]]:
        """Integer nano-USD as plain USD with nine decimals (`exports.nano_usd_text`)."""
        col = self.c.c[MONEY_COLUMN]
        if self.pg:  # exact: numeric times a scale-9 constant has scale 9
            return "%s", [cast(cast(col, Numeric) * literal_column("0.000000001"), Text)]
        # A negative amount takes the Python encoder (`formattable`): SQLite's integer
        # division truncates toward zero, so its whole and fraction parts would differ.
        return "%d.%09d", [col.op("/")(1_000_000_000), col % 1_000_000_000]

    def formattable(self) -> ColumnElement[bool]:
        """Whether the row's values reach the template intact (PostgreSQL: always).

        On SQLite ``printf``'s ``%s`` ends a text at a NUL character, and
        dates and times are text: `UTCDateTime` writes ``YYYY-MM-DD
        HH:MM:SS.ffffff`` (26 characters), ``Date`` ``YYYY-MM-DD``. A row
        with a NUL in a text cell, a time in another form or a negative cost
        (rare: `money`) takes the Python encoder. (PostgreSQL text cannot hold
        NUL, and its times are typed.)
        """
        if self.pg:
            return true()
        c = self.c.c

        def no_nul(n: str) -> ColumnElement[bool]:
            found = func.instr(c[n], func.char(0))
            return (func.coalesce(found, 0) if usage_records.c[n].nullable else found) == 0

        return and_(
            *(func.length(c[n]) == 26 for n in TIME_COLUMNS),
            *(func.length(c[n]) == 10 for n in DATE_COLUMNS),
            c[MONEY_COLUMN] >= 0,
            *(no_nul(n) for n in TEXT_COLUMNS),
        )

    def cell(self, name: str, fmt: Format) -> tuple[str, list[Any]]:
        """``name``'s template piece and arguments in ``fmt`` (JSON: strings quoted, null)."""
        if name in DATE_COLUMNS or name in TIME_COLUMNS:
            piece, args = self.date(name) if name in DATE_COLUMNS else self.time(name)
            return (f'"{piece}"', args) if fmt == "jsonl" else (piece, args)
        if name == MONEY_COLUMN:
            return self.money()
        col = self.c.c[name]
        if name not in TEXT_COLUMNS and name not in INT_COLUMNS:
            raise ValueError(f"no SQL text for column {name!r}")
        nullable = usage_records.c[name].nullable
        if name in INT_COLUMNS:  # %d: no text conversion (SQLite), but NULL would be 0
            piece = "%s" if nullable or self.pg else "%d"
            if nullable and fmt == "jsonl":
                return piece, [func.coalesce(cast(col, Text), "null")]
            return piece, [col]
        if fmt == "csv":
            return "%s", [col]
        if not nullable:
            return '"%s"', [col]
        return "%s", [func.coalesce(_lit("'\"'").concat(col).concat(_lit("'\"'")), "null")]


def line_query(
    c: Any,
    columns: Sequence[str],
    fmt: Format,
    counted: Sequence[str] | None,
    dialect: str,
) -> Select[Any]:
    """``(line, id, marks)`` per row of the classified stored rows ``c``, in export order.

    ``c`` is `metis.analytics.views.stored_usage`'s subquery; ``columns`` the
    exported columns in order (`exports.USAGE_COLUMNS`: the money column
    is written as ``cost_usd``, in its place in CSV and after the others in
    JSON Lines), then ``class`` and ``counted`` (``counted``: the classes the
    view counts, None when it counts every row). ``line`` is the row's text
    without its newline (bytes on SQLite, text on PostgreSQL), or None when
    its values cannot reach the template intact (`_Cells.formattable`;
    `PlainCheck` tells which other lines are as they are); ``marks`` how many
    separators (CSV) or structural quotes (JSON Lines) a plain line holds.
    """
    cells = _Cells(c, dialect)
    klass = c.c.klass
    between = "," if fmt == "csv" else '","counted":'
    # Class and counted in one simple CASE: the class (an EXISTS for plugin rows) is
    # computed once per row, not once per cell.
    class_counted: Any = case(
        {k: f"{k}{between}{'true' if counted is None or k in counted else 'false'}"
         for k in reconcile.CLASSES},
        value=klass,
    )  # fmt: skip
    pieces: list[str] = []
    args: list[Any] = []
    if fmt == "csv":
        for name in columns:
            piece, a = cells.cell(name, fmt)
            pieces.append(piece)
            args += a
        pieces += ["%s"]
    else:
        for name in [n for n in columns if n != MONEY_COLUMN] + [MONEY_COLUMN]:
            piece, a = cells.cell(name, fmt)
            key = "cost_usd" if name == MONEY_COLUMN else name
            pieces.append(f'"{key}":{piece}')
            args += a
        pieces += ['"class":"%s']
    args += [class_counted]
    template = ",".join(pieces)
    if fmt == "jsonl":
        template = "{" + template + "}"
    text: ColumnElement[Any] = (func.format if cells.pg else func.printf)(template, *args)
    if not cells.pg:  # bytes: nothing to decode here and encode again in Python
        text = cast(text, LargeBinary)
    line = case((cells.formattable(), text), else_=None)
    return select(line.label("line"), c.c.id, _marks(c, columns, fmt).label("marks")).order_by(
        c.c.window_start, c.c.id
    )


def _marks(c: Any, columns: Sequence[str], fmt: Format) -> ColumnElement[Any]:
    """How many of its counted character (`PlainCheck`) a plain line of the row holds.

    CSV: the separating commas. JSON Lines: the structural quotes, two per key
    and two per string value, but none for a null one.
    """
    cells = len(columns) + 2  # then class and counted
    if fmt == "csv":
        return literal_column(str(cells - 1))
    strings = [n for n in columns if n not in INT_COLUMNS and n != MONEY_COLUMN]
    fixed = 2 * cells + 2 * (1 + sum(not usage_records.c[n].nullable for n in strings))
    out: ColumnElement[Any] = literal_column(str(fixed))
    for n in strings:
        if usage_records.c[n].nullable:
            out = out + case((c.c[n].is_(None), 0), else_=2)
    return out


class PlainCheck:
    """Whether `line_query` lines are the encoder's bytes as they are (module docstring).

    A line is plain when its text cells need no CSV quoting, JSON escaping or
    formula guard: printable ASCII only; in CSV no ``"``, no comma but the
    separators, no cell after a separator starting with ``=``, ``+``, ``-``
    or ``@``; in JSON Lines no ``\\`` and no ``"`` but the structural ones.
    The separators and structural quotes are counted: `line_query` gives each
    row's count (``marks``). A negative number fails the formula test too; it
    only costs the row the slow path. A batch is checked at once with C byte
    scans: one ``translate`` keeps only the newlines, the counted character
    and anything not allowed, so a batch is plain when what is left is its
    newlines and exactly the counted marks.
    """

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._mark = b"," if fmt == "csv" else b'"'
        # Deleted: printable ASCII but the counted mark and `"` (CSV) or `\` (JSON Lines).
        odd = b'"' if fmt == "csv" else b"\\"
        self._delete = bytes(c for c in range(0x20, 0x7F) if bytes([c]) not in (self._mark, odd))

    def batch(self, data: bytes, n: int, marks: int) -> bool:
        """Whether ``data``, ``n`` newline-ended lines holding ``marks`` marks, is plain."""
        left = data.translate(None, self._delete)
        if len(left) != n + marks or left.count(self._mark) != marks:
            return False  # something else left: a stray byte, or a mark inside a value
        return self.fmt != "csv" or not any(f in data for f in (b",=", b",+", b",-", b",@"))
