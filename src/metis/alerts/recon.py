"""Reconciliation cells for the drift / unattributed alert rules.

Delegates to `metis.ledger.reconcile.reconciled_cells`, the same per-cell
computation ``GET /analytics/reconciliation`` shows, so an alert and the
reconciliation view can never disagree. Only cells the provider covers for a
whole UTC day (no ``provider_lagging`` flag) and that carry a provider
cost are returned: a day the provider has only partly reported, or reported
without money, would look like drift or unattributed spend that is not.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection

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
