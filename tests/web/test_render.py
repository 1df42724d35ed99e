"""Rendering helpers: money formatting, CSV cells, SVG charts (escaping, scales, cap levels)."""

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from metis.web.charts import cap_bar, nice_scale, stacked_bars
from metis.web.tables import Column, Table, csv_cell, exact_usd, fmt_usd


def test_fmt_usd_rounds_for_reading() -> None:
    assert fmt_usd(Decimal("25.000000")) == "$25.00"  # not $25.000000
    assert fmt_usd(Decimal("1234.565")) == "$1,234.56"  # half-even
    assert fmt_usd(Decimal("1234.575")) == "$1,234.58"
    assert fmt_usd(Decimal("-0.1")) == "-$0.10"
    assert fmt_usd(Decimal("0.5")) == "$0.50"
    # below a dollar: two significant digits, so small amounts do not read as $0.00
    assert fmt_usd(Decimal("0.0042")) == "$0.0042"
    assert fmt_usd(Decimal("0.004249")) == "$0.0042"
    assert fmt_usd(Decimal("0.000012")) == "$0.000012"
    assert fmt_usd(Decimal("0.000000001")) == "$0.00"  # under half a millionth
    assert fmt_usd(Decimal("0.995")) == "$1.00"
    assert fmt_usd(Decimal(0)) == "$0.00"
    assert fmt_usd(None) == "—"
    assert exact_usd(Decimal("25.000000123")) == "$25.000000123"
    assert exact_usd(Decimal("-1234.5")) == "-$1,234.5"


def test_money_cells_keep_the_exact_value_for_hover_and_scripts() -> None:
    t = Table(id="t", title="t", columns=[Column("v", "cost", "usd")], rows=[])
    cell = str(t.cells_html({"v": Decimal("25.000000123")}))
    assert ">$25.00</td>" in cell
    assert 'data-usd="25.000000123"' in cell and 'title="$25.000000123"' in cell
    assert 'data-label="cost"' in cell  # the phone layout's label


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


def test_nice_scale_ends_close_to_the_data() -> None:
    assert nice_scale(Decimal(0)) == (1, Decimal("0.25"), 4)
    assert nice_scale(Decimal(5))[0] == 5  # data peaking at $5: the axis ends at $5, not $10
    assert nice_scale(Decimal("5.01"))[0] == 6
    assert nice_scale(Decimal("0.0042"))[0] == Decimal("0.005")
    assert nice_scale(Decimal("10.01"))[0] == 12


@given(st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9), places=6))
def test_nice_scale_is_round_and_at_most_a_quarter_above(v: Decimal) -> None:
    top, step, ticks = nice_scale(v)
    assert v <= top <= v * Decimal("1.25") and top == step * ticks and 3 <= ticks <= 7
    mantissa = step.scaleb(-step.adjusted()).normalize()
    assert mantissa in (1, 2, Decimal("2.5"), 5)


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
    # three segments in each of the two drawings (wide, narrow), two legend swatches
    assert svg.count("<rect ") == 3 * 2 + 2
    assert 'class="chart wide"' in svg and 'class="chart narrow"' in svg
    assert 'font-size="13"' in svg  # the narrow drawing's labels stay readable on a phone
    assert "style=" not in svg  # presentation attributes only (CSP forbids inline styles)


def test_cap_bar_levels() -> None:
    assert "no hard cap" in str(cap_bar(Decimal(1), None, label="t"))
    soft = str(cap_bar(Decimal(1), Decimal(10), label="t", soft=(Decimal(5),)))
    assert "soft $5.00" in soft and soft.count("stroke-dasharray") == 1  # a tick at 50%
    assert 'x1="120.0"' in soft
    assert "soft $2.00" in str(cap_bar(Decimal(1), None, label="t", soft=(Decimal(2),)))
    assert 'class="capbar ok"' in str(cap_bar(Decimal("1"), Decimal(10), label="t"))
    assert 'class="capbar warn"' in str(cap_bar(Decimal("8"), Decimal(10), label="t"))
    over = str(cap_bar(Decimal("12"), Decimal(10), label="t"))
    assert 'class="capbar over"' in over and "(120%)" in over
    assert 'class="capbar over"' in str(cap_bar(Decimal("0.01"), Decimal(0), label="t"))
