"""Which ledger rows the analytics sum: the ``raw`` or the ``reconciled`` view.

``raw`` sums the rows of every source (or one ``source``) as stored. The
``reconciled`` view (one true total per (workspace, provider, model, day)
cell, DESIGN.md "Sources and reconciliation") comes from
`metis.ledger.reconcile`, owned by the reconciliation component.

GAP (documented): until `metis.ledger.reconcile` provides a grouped reconciled
aggregation, ``view=reconciled`` is not offered and the default view is
``raw``; responses always say which view answered (``"view"``).
"""

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import Connection

from metis.analytics.params import Filters, ParamError, Window
from metis.analytics.query import Agg, aggregate_raw

View = Literal["raw", "reconciled"]


def reconciled_view_available() -> bool:
    """Whether the reconciliation component provides grouped reconciled totals."""
    import importlib

    try:
        mod = importlib.import_module("metis.ledger.reconcile")
    except ImportError:
        return False
    return hasattr(mod, "reconciled_aggregate")


def default_view() -> View:
    return "reconciled" if reconciled_view_available() else "raw"


def parse_view(value: str | None) -> View:
    if value is None or value == "":
        return default_view()
    if value == "raw":
        return "raw"
    if value == "reconciled":
        if not reconciled_view_available():
            raise ParamError(
                "invalid_view", "view=reconciled is not available in this build; use view=raw"
            )
        return "reconciled"
    raise ParamError("invalid_view", "view must be raw or reconciled")


def usage(
    conn: Connection, view: View, window: Window, filters: Filters, cols: Sequence[str]
) -> list[Agg]:
    """Grouped usage totals from ``view`` (see module docstring)."""
    if view == "reconciled":
        import importlib

        fn = importlib.import_module("metis.ledger.reconcile").reconciled_aggregate
        rows: list[Agg] = fn(conn, window, filters, cols)
        return rows
    return aggregate_raw(conn, window, filters, cols)
