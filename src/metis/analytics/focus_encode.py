"""FOCUS rows to bytes: CSV, or Parquet through pyarrow (the ``parquet`` extra).

Both encoders take the day batches of `metis.analytics.focus.focus_rows` and
yield bytes as each batch is encoded (Parquet: one row group per day), so an
export holds one day of rows in memory. Neither writes anything that depends
on when the export ran: the same ledger gives the same bytes.
"""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from metis.analytics import focus
from metis.analytics.exports import csv_safe
from metis.analytics.params import ParamError, Window
from metis.timeutil import iso

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def focus_export(
    engine: Any, window: Window, version: focus.Version, fmt: focus.FocusFormat
) -> Iterator[bytes]:
    """The FOCUS export of whole-day ``window`` as ``fmt`` chunks (the first after the
    first day's query ran, so `metis.analytics.exports.primed` can turn an early error
    into a status)."""
    cols = focus.columns(version)
    days = focus.focus_rows(engine, window, version)
    if fmt == "parquet":
        return parquet_chunks(cols, days)
    return csv_chunks(cols, days)


def csv_chunks(cols: Sequence[str], days: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    """A header line, then the rows; null is an empty cell (FOCUS CSV convention)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for rows in days:
        for r in rows:
            w.writerow([csv_safe(focus.text_cell(c, r[c])) for c in cols])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():  # a window with no days at all (cannot happen: windows are ≥ 1 day)
        yield buf.getvalue().encode()


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParamError(
            "parquet_unavailable",
            "Parquet needs pyarrow: pip install 'metis[parquet]' (or ask for format=csv)",
        ) from None
    return pa, pq


def arrow_schema(cols: Sequence[str]) -> Any:
    """FOCUS types: Decimal → decimal128(38, 9), Date/Time → timestamp[s, UTC], JSON and
    String → string; Metis's token and request counts → int64."""
    pa, _ = _pyarrow()
    fields = []
    for c in cols:
        if c in focus.DECIMAL_COLUMNS:
            t = pa.decimal128(38, 9)
        elif c in focus.DATETIME_COLUMNS:
            t = pa.timestamp("s", tz="UTC")
        elif c in focus.INTEGER_COLUMNS:
            t = pa.int64()
        else:
            t = pa.string()
        fields.append(pa.field(c, t))
    return pa.schema(fields)


class _Sink(io.RawIOBase):
    """A write-only file that hands on what was written (pyarrow writes into it)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def parquet_chunks(cols: Sequence[str], days: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    """A Parquet file, one row group per day with rows; written as each day is read."""
    pa, pq = _pyarrow()
    schema = arrow_schema(cols)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        first = True
        for rows in days:
            if rows:
                data = {c: [r[c] for r in rows] for c in cols}
                writer.write_table(pa.Table.from_pydict(data, schema=schema))
            chunk = sink.take()
            if chunk or first:
                first = False
                yield chunk
    finally:
        writer.close()
    yield sink.take()


def describe(window: Window, version: str) -> str:
    """The one-line summary the CLI prints on stderr."""
    return f"FOCUS {version}, [{iso(window.start)}, {iso(window.end)}) (reconciled view)"
