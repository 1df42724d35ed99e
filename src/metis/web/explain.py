"""What the rows without a user or team are: a note the pages put under such tables.

"(no user)" and "(no team)" are often the biggest rows, and they mix three
different things, which the note splits (same window, view and filters as
the table it explains, from the same query layer):

- spend the provider reported that no gateway or plugin row accounts for
  (reconciled view: the cell's unattributed remainder; raw view: every
  provider-reported row, which never carries a user or team) -- traffic that
  bypassed Metis, detailed on the reconciliation page, which the note links;
- calls through gateway keys issued without a user or team;
- usage pushed by agent plugins whose records carry none.
"""

from decimal import Decimal
from urllib.parse import urlencode

from markupsafe import Markup, escape
from sqlalchemy import Connection

from metis.analytics.views import usage
from metis.ledger.reconcile import PROVIDER_SOURCE, RESIDUE_SOURCES
from metis.web.params import PageQuery
from metis.web.tables import fmt_usd, usd

WORD = {"user_id": "user", "team_id": "team"}


def no_group_breakdown(conn: Connection, q: PageQuery, col: str) -> dict[str, Decimal]:
    """Spend without ``col`` (user_id / team_id) by origin: provider, gateway, plugin."""
    out = {"provider": Decimal(0), "gateway": Decimal(0), "plugin": Decimal(0)}
    for a in usage(conn, q.view, q.window, q.filters, [col, "source"]):
        if a.dims[col] is not None:
            continue
        src = a.dims["source"]
        # The reconciled view carries the provider's remainder as residue rows
        # (``unattributed`` / ``drift_adjustment``), the raw view as provider rows.
        provider = src == PROVIDER_SOURCE or src in RESIDUE_SOURCES
        kind = "provider" if provider else "gateway" if src == "gateway" else "plugin"
        out[kind] += usd(a.cost_nanousd) or Decimal(0)
    return out


def no_group_note(conn: Connection, q: PageQuery, col: str) -> Markup | None:
    """The explanation of the "(no user)"/"(no team)" row, or None when there is none."""
    b = no_group_breakdown(conn, q, col)
    if not any(b.values()):
        return None
    word = WORD[col]
    link = "/ui/reconciliation?" + urlencode(q.params())
    parts: list[str] = []
    if b["provider"]:
        if q.view == "reconciled":
            what = (
                "provider-reported spend no gateway or plugin row accounts for (traffic that "
                "bypassed Metis, e.g. provider keys used directly)"
            )
        else:
            what = "provider-reported rows (a provider's report never names a " + word + ")"
        parts.append(
            f'<span data-usd="{b["provider"]:f}">{escape(fmt_usd(b["provider"]))}</span> '
            f'{escape(what)}, see <a href="{escape(link)}">Reconciliation</a>'
        )
    if b["gateway"]:
        parts.append(
            f"{escape(fmt_usd(b['gateway']))} through gateway keys issued without a {word}"
        )
    if b["plugin"]:
        parts.append(f"{escape(fmt_usd(b['plugin']))} pushed by agent plugins without a {word}")
    return Markup(  # noqa: S704 - every dynamic part is escaped
        f"<strong>(no {word})</strong> is " + "; ".join(parts) + "."
    )
