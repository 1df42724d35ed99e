"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, works offline.

`stacked_bars` draws spend per day stacked by a series (team or source);
`cap_bar` draws one spend-against-cap bar. Only SVG presentation attributes
are used (no ``style=``), so the page's Content-Security-Policy holds, and
every value is escaped. Each segment carries a ``<title>`` with its exact
figure, which browsers show on hover and screen readers read.
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


def _nice_max(v: Decimal) -> Decimal:
    """A round axis maximum at or above ``v`` (1, 2, 5 x 10^n)."""
    if v <= 0:
        return Decimal(1)
    exp = v.adjusted()
    for m in (1, 2, 5, 10):
        top = Decimal(m).scaleb(exp)
        if top >= v:
            return top
    return Decimal(10).scaleb(exp)  # pragma: no cover - the loop always returns


def stacked_bars(
    days: list[date],
    series: list[tuple[str, dict[date, Decimal]]],
    *,
    title: str,
    width: int = 960,
    height: int = 250,
) -> Markup:
    """Spend per day, one stacked bar per day, one color per series (legend below)."""
    left, right, top, bottom = 70, 10, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum((s.get(d, Decimal(0)) for _, s in series), Decimal(0)) for d in days]
    ymax = _nice_max(max(totals, default=Decimal(0)))
    n = max(len(days), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.7, 48.0), 1.0)
    parts: list[str] = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label={quoteattr(title)} xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # grid lines and y labels
        frac = Decimal(i) / 4
        y = top + plot_h - float(frac) * plot_h
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'stroke="#e3e6eb" stroke-width="1"/>'
        )
        label = fmt_usd(ymax * frac).rstrip("0").rstrip(".")
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6472">{escape(label)}</text>'
        )
    label_every = max(1, n // 12)
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
        if i % label_every == 0:
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle" font-size="11" fill="#5b6472">{d.strftime("%m-%d")}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#9aa3af" stroke-width="1"/>'
    )
    parts.append("</svg>")
    legend = ['<ul class="legend">']
    for ci, (name, _) in enumerate(series):
        color = PALETTE[ci % len(PALETTE)] if name != "other" else OTHER_COLOR
        legend.append(
            '<li><svg width="12" height="12" aria-hidden="true" '
            f'xmlns="http://www.w3.org/2000/svg"><rect width="12" height="12" fill="{color}"/>'
            f"</svg>{escape(name)}</li>"
        )
    legend.append("</ul>")
    return Markup("".join(parts) + "".join(legend))  # noqa: S704 - built from escaped parts


def day_range(start: date, end_inclusive: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end_inclusive - start).days + 1)]


def cap_bar(spent: Decimal, cap: Decimal | None, *, label: str) -> Markup:
    """One bar of ``spent`` against ``cap`` (none: a plain figure); warns at 80%, 100%."""
    width, height = 240, 16
    if cap is None:
        return Markup(f'<span class="nocap">{escape(fmt_usd(spent))} · no cap</span>')  # noqa: S704
    ratio = spent / cap if cap > 0 else (Decimal(1) if spent > 0 else Decimal(0))
    level = "over" if ratio >= 1 else "warn" if ratio >= Decimal("0.8") else "ok"
    color = {"over": "#c0392b", "warn": "#d68910", "ok": "#2e8b57"}[level]
    fill_w = float(min(ratio, Decimal(1))) * width
    pct = f"{float(ratio) * 100:.0f}%"
    text = f"{fmt_usd(spent)} of {fmt_usd(cap)} ({pct})"
    return Markup(  # noqa: S704 - every dynamic part is escaped
        f'<span class="capbar {level}"><svg viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label={quoteattr(label + ": " + text)} '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<rect width="{width}" height="{height}" rx="3" fill="#e9ecf1"/>'
        f'<rect width="{fill_w:.1f}" height="{height}" rx="3" fill="{color}"/>'
        f"<title>{escape(label + ': ' + text)}</title></svg>"
        f'<span class="captext">{escape(text)}</span></span>'
    )
