"""Reconciliation cells for the drift / unattributed alert rules.

Computes, per cell (workspace, provider, model, UTC day), the provider total
(``provider_api_key`` rows) and the attributed total (gateway rows plus
plugin rows whose correlation id the gateway did not also record), which is
steps 1 and 2 of the reconciliation policy in DESIGN.md.

Partial by design: the reconciliation component (``metis.ledger.reconcile``)
was being built concurrently and exposed no stable per-cell function when
this was written, so the alert rule computes the two figures itself with the
same policy. When that module offers per-cell results, `recent_cells` should
delegate to it so alerts and ``GET /analytics/reconciliation`` can never
disagree.

Only completed days are evaluated (yesterday back to ``DAYS`` days ago):
today's provider bucket is still growing, so it would look like drift.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, and_, func, select

from metis.db.tables import usage_records

DAYS = 7
PROVIDER_SOURCE = "provider_api_key"
GATEWAY_SOURCE = "gateway"


@dataclass(frozen=True)
class Cell:
    workspace_id: str
    provider: str
    model: str
    day: date
    provider_cost_nanousd: int | None
    attributed_cost_nanousd: int


def recent_cells(conn: Connection, today: date, days: int = DAYS) -> list[Cell]:
    """Cells of the completed days ``[today - days, today)`` that have provider data."""
    r = usage_records.c
    start, end = today - timedelta(days=days), today
    in_range = and_(r.usage_date >= start, r.usage_date < end)
    key = (r.workspace_id, r.provider, r.model, r.usage_date)
    provider_rows = conn.execute(
        select(*key, func.sum(r.cost_nanousd))
        .where(in_range, r.source == PROVIDER_SOURCE)
        .group_by(*key)
    ).all()
    if not provider_rows:
        return []
    totals = {(w, p, m, d): int(c or 0) for w, p, m, d, c in provider_rows}

    g = usage_records.alias("g")
    dup = (
        select(g.c.id)
        .where(
            g.c.workspace_id == r.workspace_id,
            g.c.source == GATEWAY_SOURCE,
            g.c.correlation_id == r.correlation_id,
        )
        .exists()
    )
    attributed_q = (
        select(*key, func.sum(r.cost_nanousd))
        .where(
            in_range,
            r.source != PROVIDER_SOURCE,
            # A plugin row with the gateway's correlation id is the same call: the gateway stands.
            (r.source == GATEWAY_SOURCE) | r.correlation_id.is_(None) | ~dup,
        )
        .group_by(*key)
    )
    attributed = {(w, p, m, d): int(c or 0) for w, p, m, d, c in conn.execute(attributed_q)}
    return [
        Cell(w, p, m, d, total, attributed.get((w, p, m, d), 0))
        for (w, p, m, d), total in sorted(totals.items())
    ]
