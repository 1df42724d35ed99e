"""Reconciliation cells for the drift / unattributed alert rules.

Delegates to `metis.ledger.reconcile.reconciled_cells`, the same per-cell
computation ``GET /analytics/reconciliation`` shows, so an alert and the
reconciliation view can never disagree. Only cells the provider covers for a
whole UTC day (no ``provider_lagging`` flag) and that carry a provider
cost are returned: a day the provider has only partly reported, or reported
without money, would look like drift or unattributed spend that is not.

Gateway calls recorded at their worst-case estimate (``cost_source = estimated``,
`metis.gateway.estimate`) are upper bounds the provider's figure replaces; a
drift they can explain is not a mis-attribution, so the drift rule discounts
them (`estimated_cost`).
"""

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, select

from metis.db.sums import wide_sum
from metis.db.tables import usage_records

DAYS = 7


@dataclass(frozen=True)
class Cell:
    workspace_id: str
    provider: str
    model: str
    day: date
    provider_cost_nanousd: int | None
    attributed_cost_nanousd: int


def recent_cells(conn: Connection, today: date, days: int = DAYS) -> list[Cell]:
    """Fully covered cells of the UTC days ``[today - days, today]``."""
    from metis.ledger.reconcile import reconciled_cells

    out = []
    for c in reconciled_cells(conn, today - timedelta(days=days), today + timedelta(days=1)):
        if not c.covered or c.provider_cost_unknown or c.lagging:
            continue
        out.append(
            Cell(
                c.workspace_id,
                c.provider,
                c.model,
                c.day,
                c.provider_reported.cost_nanousd,
                c.attributed.cost_nanousd,
            )
        )
    return out


def estimated_cost(conn: Connection, cell: Cell) -> int:
    """Nano-USD of the cell's gateway rows recorded at a worst-case estimate.

    Read only for a cell whose drift is over its threshold (rare), through the
    (usage_date, workspace_id) index."""
    ur = usage_records
    q = select(wide_sum(ur.c.cost_nanousd)).where(
        ur.c.usage_date == cell.day,
        ur.c.workspace_id == cell.workspace_id,
        ur.c.provider == cell.provider,
        ur.c.model == cell.model,
        ur.c.source == "gateway",
        ur.c.cost_source == "estimated",
    )
    return int(conn.execute(q).scalar_one() or 0)
