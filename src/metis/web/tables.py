"""Tables of the dashboard: one definition rendered as HTML and as CSV.

Every table on a page is a `Table`; the page template renders it and the
same object answers ``?csv=<table id>``, so an export always holds exactly
what the page shows. Money is exact, nine decimals, in the CSV; on screen it
is rounded for reading (`fmt_usd`: cents, or two significant digits below a
dollar), with the exact value in ``data-usd`` and in the cell's ``title``
(shown on hover).

Cells carry their column's label in ``data-label``: on a phone the
stylesheet lays each row out as a card of ``label value`` lines instead of a
table too wide for the screen.
"""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from markupsafe import Markup, escape

from metis.money import from_nanousd
from metis.timeutil import iso, parse_iso

Kind = str  # text | id | usd | int | ms | datetime | bool | pct | bar | link

_CENT = Decimal("0.01")
_MAX_PLACES = 6


def usd(nanos: int | None) -> Decimal | None:
    """Exact USD of an integer nano-USD amount (None stays None)."""
    return None if nanos is None else from_nanousd(nanos)


def fmt_usd(value: Decimal | None) -> str:
    """Money for reading: ``$1,234.57``; below a dollar two significant digits (``$0.0042``).

    Half-even rounding; at most six decimals (``$0.00`` for less than half a
    millionth). Exports and ``data-usd``/``title`` keep the exact amount.
    """
    if value is None:
        return "—"
    a = abs(value)
    places = 2
    if 0 < a < 1:
        # two significant digits: 0.42 -> 2 places, 0.042 -> 3, 0.0000042 -> 6 (at most)
        places = min(max(2, -a.adjusted() + 1), _MAX_PLACES)
    q = a.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if places > 2:
        q = q.normalize() if q != 0 else q.quantize(_CENT)
        if q.as_tuple().exponent > -2:  # type: ignore[operator]
            q = q.quantize(_CENT)
    sign = "-" if value < 0 and q != 0 else ""
    return f"{sign}${q:,f}"


def exact_usd(value: Decimal | None) -> str:
    """The exact amount as text (``$25.000000123``), for hover titles."""
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value).normalize():,f}"


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_cell(kind: Kind, value: Any) -> str:
    """How a cell shows on the page."""
    if value is None or value == "":
        return "—"
    if kind == "usd":
        return fmt_usd(Decimal(value))
    if kind == "int":
        return fmt_int(int(value))
    if kind == "pct":
        return f"{Decimal(value) * 100:.1f}%"
    if kind == "ms":
        return f"{int(value):,} ms"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "datetime":
        if isinstance(value, str):  # ISO 8601 from an API-shaped answer
            value = parse_iso(value)
        if isinstance(value, datetime):
            return iso(value).replace("T", " ")[:19] + "Z"
    return str(value)


def csv_cell(value: Any) -> str:
    """How a cell goes into the CSV: exact, and never a spreadsheet formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    s = str(value)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        s = "'" + s  # CSV injection guard for text cells (names come from users)
    return s


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: Kind = "text"
    hidden: bool = False  # in the CSV only (e.g. the exact figures a bar draws)


@dataclass
class Table:
    """``rows`` are dicts keyed by column key; ``row_class`` may mark rows (e.g. drift)."""

    id: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    row_class: Callable[[dict[str, Any]], str] | None = None
    empty: str = "No data in this range."
    footer: dict[str, Any] | None = None
    note: str | None = None
    actions: Callable[[dict[str, Any]], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shown(self) -> list[Column]:
        return [c for c in self.columns if not c.hidden]

    def cells_html(self, row: dict[str, Any]) -> Markup:
        """The row's ``<td>`` cells (built here, not per cell in Jinja: big tables render fast).

        Money cells keep the exact amount in ``data-usd``; bars are already markup.
        """
        out: list[str] = []
        for c in self.shown:
            v = row.get(c.key)
            col = f'data-col="{escape(c.key)}" data-label="{escape(c.label)}"'
            if c.kind == "usd":
                exact = (
                    ""
                    if v is None or v == ""
                    else f' data-usd="{format(Decimal(v), "f")}" title="{exact_usd(Decimal(v))}"'
                )
                out.append(f'<td class="num" {col}{exact}>{escape(fmt_cell("usd", v))}</td>')
            elif c.kind in ("int", "pct", "ms"):
                out.append(f'<td class="num" {col}>{escape(fmt_cell(c.kind, v))}</td>')
            elif c.kind == "bar":
                out.append(f'<td class="bar" {col}>{escape(v) if v is not None else ""}</td>')
            elif c.kind == "id":
                out.append(f'<td class="id" {col}>{escape(fmt_cell(c.kind, v))}</td>')
            elif c.kind == "link":  # (text, href) of a page of this dashboard
                text, href = v if isinstance(v, tuple) else (v, None)
                cell = escape(fmt_cell("text", text))
                if href:
                    cell = Markup(f'<a href="{escape(href)}">{cell}</a>')  # noqa: S704
                out.append(f"<td {col}>{cell}</td>")
            else:
                out.append(f'<td class="{escape(c.kind)}" {col}>{escape(fmt_cell(c.kind, v))}</td>')
        return Markup("".join(out))  # noqa: S704 - every dynamic part is escaped

    def css(self, row: dict[str, Any]) -> str:
        return self.row_class(row) if self.row_class else ""

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        cols = [c for c in self.columns if c.kind != "bar"]  # bars are drawings of other cells
        w.writerow([c.key for c in cols])
        for row in self.rows:
            w.writerow([csv_cell(row.get(c.key)) for c in cols])
        if self.footer is not None:
            w.writerow([csv_cell(self.footer.get(c.key)) for c in cols])
        return buf.getvalue()
