"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, works offline.

`stacked_bars` draws spend per day stacked by a series (team or source), twice:
a wide drawing for screens and a narrow one with fewer, larger labels that the
stylesheet shows instead on a phone (an SVG scaled down to a phone's width
makes 11 px labels unreadable). `cap_bar` draws one spend-against-cap bar,
with ticks where soft caps (routing rules) sit. The y axis ends at the
smallest round value at or above the data (`nice_scale`), so bars use the
height. Only SVG presentation attributes are used (no ``style=``), so the
page's Content-Security-Policy holds, and every value is escaped. Each
segment carries a ``<title>`` with its exact figure, which browsers show on
hover and screen readers read.
"""

from datetime import date, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

from metis.web.tables import fmt_usd

PALETTE = (
    "#3b6fd8",
    "#e07b39",
    "#3aa17e",
    "#c94f7c",
    "#8a6fd1",
    "#c9a227",
    "#4aa3c4",
    "#7f8c8d",
    "#b5534a",
    "#5d8a3a",
)
OTHER_COLOR = "#b0b7c3"


STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5))


def nice_scale(v: Decimal) -> tuple[Decimal, Decimal, int]:
    """The y axis for data peaking at ``v``: (top, step, ticks), ``top = step * ticks``.

    The smallest ``step * ticks`` at or above ``v`` with a round step (1, 2,
    2.5 or 5 x 10^n) and 3 to 7 ticks: the axis ends at most 25% above the
    data (for $5 it ends at $5, not $10).
    """
    if v <= 0:
        return Decimal(1), Decimal("0.25"), 4
    best: tuple[Decimal, Decimal, int] | None = None
    for exp in (v.adjusted() - 2, v.adjusted() - 1, v.adjusted()):
        for s in STEPS:
            step = s.scaleb(exp)
            for ticks in range(3, 8):
                top = step * ticks
                if top >= v and (
                    best is None or top < best[0] or (top == best[0] and ticks < best[2])
                ):
                    best = (top, step, ticks)
    assert best is not None
    return best


def _axis_label(v: Decimal, step: Decimal) -> str:
    """``$2.50`` or ``$10``: cents only when the step needs them."""
    if step == step.to_integral_value() and v == v.to_integral_value():
        return f"${v:,.0f}"
    return fmt_usd(v) if v < 1 or step < Decimal("0.01") else f"${v:,.2f}"


def stacked_bars(
    days: list[date],
    series: list[tuple[str, dict[date, Decimal]]],
    *,
    title: str,
) -> Markup:
    """Spend per day stacked per series: a wide and a narrow drawing, and one legend."""
    wide = _bars(days, series, title=title, width=960, height=250, font=11, css="chart wide")
    narrow = _bars(days, series, title=title, width=400, height=260, font=13, css="chart narrow")
    legend = ['<ul class="legend">']
    for ci, (name, _) in enumerate(series):
        color = PALETTE[ci % len(PALETTE)] if name != "other" else OTHER_COLOR
        legend.append(
            '<li><svg width="12" height="12" aria-hidden="true" '
            f'xmlns="http://www.w3.org/2000/svg"><rect width="12" height="12" fill="{color}"/>'
            f"</svg>{escape(name)}</li>"
        )
    legend.append("</ul>")
    return Markup(wide + narrow + "".join(legend))  # noqa: S704 - built from escaped parts


def _bars(
    days: list[date],
    series: list[tuple[str, dict[date, Decimal]]],
    *,
    title: str,
    width: int,
    height: int,
    font: int,
    css: str,
) -> str:
    """One drawing of `stacked_bars` at ``width`` x ``height`` with ``font`` px labels."""
    left, right, top, bottom = 6 + font * 5, font * 2, 10, 16 + font * 2  # room for end labels
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum((s.get(d, Decimal(0)) for _, s in series), Decimal(0)) for d in days]
    ymax, step, ticks = nice_scale(max(totals, default=Decimal(0)))
    n = max(len(days), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.7, 48.0), 1.0)
    parts: list[str] = [
        f'<svg class="{css}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label={quoteattr(title)} xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(ticks + 1):  # grid lines and y labels
        value = step * i
        y = top + plot_h - float(value / ymax) * plot_h
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'stroke="#e3e6eb" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + font * 0.35:.1f}" text-anchor="end" '
            f'font-size="{font}" fill="#5b6472">{escape(_axis_label(value, step))}</text>'
        )
    # at most ~12 day labels on the wide drawing, ~5 on the narrow one
    label_every = max(1, -(-n // max(3, width // (font * 7))))
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for ci, (name, values) in enumerate(series):
            v = values.get(d, Decimal(0))
            if v <= 0:
                continue
            h = float(v / ymax) * plot_h
            y -= h
            color = PALETTE[ci % len(PALETTE)] if name != "other" else OTHER_COLOR
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{color}"><title>{escape(f"{d.isoformat()} {name}: {fmt_usd(v)}")}'
                "</title></rect>"
            )
        if (n - 1 - i) % label_every == 0:  # always label the last day (today)
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + font + 5}" '
                f'text-anchor="middle" font-size="{font}" fill="#5b6472">'
                f"{d.strftime('%m-%d')}</text>"
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#9aa3af" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def day_range(start: date, end_inclusive: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end_inclusive - start).days + 1)]


def cap_bar(
    spent: Decimal,
    cap: Decimal | None,
    *,
    label: str,
    soft: tuple[Decimal, ...] = (),
) -> Markup:
    """One bar of ``spent`` against the hard ``cap``; warns at 80%, 100%.

    ``soft`` are soft caps (routing thresholds) of the same period: drawn as
    dashed ticks on the bar and named in its text. Without a hard cap the
    figure is plain text, with the soft caps if any.
    """
    width, height = 240, 16
    soft_text = " · soft " + ", ".join(fmt_usd(s) for s in sorted(soft)) if soft else ""
    if cap is None:
        return Markup(  # noqa: S704 - every dynamic part is escaped
            f'<span class="nocap">{escape(fmt_usd(spent))} · no hard cap{escape(soft_text)}</span>'
        )
    ratio = spent / cap if cap > 0 else (Decimal(1) if spent > 0 else Decimal(0))
    level = "over" if ratio >= 1 else "warn" if ratio >= Decimal("0.8") else "ok"
    color = {"over": "#c0392b", "warn": "#d68910", "ok": "#2e8b57"}[level]
    fill_w = float(min(ratio, Decimal(1))) * width
    pct = f"{float(ratio) * 100:.0f}%"
    text = f"{fmt_usd(spent)} of {fmt_usd(cap)} ({pct}){soft_text}"
    ticks = "".join(
        f'<line x1="{float(s / cap) * width:.1f}" y1="0" x2="{float(s / cap) * width:.1f}" '
        f'y2="{height}" stroke="#1d2330" stroke-width="2" stroke-dasharray="3 2"/>'
        for s in soft
        if cap > 0 and 0 < s < cap
    )
    return Markup(  # noqa: S704 - every dynamic part is escaped
        f'<span class="capbar {level}"><svg viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label={quoteattr(label + ": " + text)} '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="{width}" height="{height}" rx="3" fill="#e9ecf1"/>'
        f'<rect width="{fill_w:.1f}" height="{height}" rx="3" fill="{color}"/>{ticks}'
        f"<title>{escape(label + ': ' + text)}</title></svg>"
        f'<span class="captext">{escape(text)}</span></span>'
    )
