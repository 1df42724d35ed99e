"""Rendering helpers: money formatting, CSV cells, SVG charts (escaping, scales, cap levels)."""

from datetime import date
from decimal import Decimal

from metis.web.charts import _nice_max, cap_bar, stacked_bars
from metis.web.tables import Column, Table, csv_cell, fmt_usd


def test_fmt_usd_rounds_half_even_to_six_decimals() -> None:
    assert fmt_usd(Decimal("1234.5678905")) == "$1,234.567890"
    assert fmt_usd(Decimal("1234.5678915")) == "$1,234.567892"
    assert fmt_usd(Decimal("-0.1")) == "-$0.100000"
    assert fmt_usd(None) == "—"


def test_csv_cells() -> None:
    assert csv_cell(Decimal("0.000000001")) == "0.000000001"
    assert csv_cell(Decimal("-2")) == "-2"
    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"
    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx"):
        assert csv_cell(bad) == "'" + bad
    t = Table(
        id="t",
        title="t",
        columns=[
            Column("a", "a"),
            Column("bar", "bar", "bar"),
            Column("v", "v", "usd", hidden=True),
        ],
        rows=[{"a": "x,y", "bar": "<svg/>", "v": Decimal("1.5")}],
        footer={"a": "total", "v": Decimal("1.5")},
    )
    assert t.to_csv() == 'a,v\r\n"x,y",1.5\r\ntotal,1.5\r\n'  # bars are drawings: not exported
    assert [c.key for c in t.shown] == ["a", "bar"]


def test_nice_max() -> None:
    assert _nice_max(Decimal(0)) == 1
    assert _nice_max(Decimal("0.0042")) == Decimal("0.005")
    assert _nice_max(Decimal("3.2")) == 5
    assert _nice_max(Decimal("10")) == 10
    assert _nice_max(Decimal("10.01")) == 20


def test_stacked_bars_escape_names_and_stack() -> None:
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    svg = str(
        stacked_bars(
            days,
            [
                ("<b>evil</b>", {days[0]: Decimal(3)}),
                ("ops", {days[0]: Decimal(1), days[1]: Decimal(2)}),
            ],
            title='spend "x" & <y>',
        )
    )
    assert "<b>" not in svg and "&lt;b&gt;evil&lt;/b&gt;" in svg
    assert """aria-label='spend "x" &amp; &lt;y&gt;'""" in svg  # quoteattr picks the quote
    assert svg.count("<rect ") == 3 + 2  # three segments, two legend swatches
    assert "style=" not in svg  # presentation attributes only (CSP forbids inline styles)


def test_cap_bar_levels() -> None:
    assert "no cap" in str(cap_bar(Decimal(1), None, label="t"))
    assert 'class="capbar ok"' in str(cap_bar(Decimal("1"), Decimal(10), label="t"))
    assert 'class="capbar warn"' in str(cap_bar(Decimal("8"), Decimal(10), label="t"))
    over = str(cap_bar(Decimal("12"), Decimal(10), label="t"))
    assert 'class="capbar over"' in over and "(120%)" in over
    assert 'class="capbar over"' in str(cap_bar(Decimal("0.01"), Decimal(0), label="t"))
