"""Which ledger rows the analytics sum: the ``raw`` or the ``reconciled`` view.

``raw`` sums the rows of every source (or one ``source``) as stored. The
``reconciled`` view (one true total per (workspace, provider, model, day)
cell, DESIGN.md "Sources and reconciliation") comes from
`metis.ledger.reconcile`, owned by the reconciliation component.

The grouped reconciled aggregation (`reconciled_aggregate`) is built here on
the reconciliation component's row classification and per-cell settlement:
per cell, the attributed rows (gateway rows and plugin rows that are neither
duplicates of a gateway row nor sent through the gateway) keep their
user/team/key/source; for a provider-covered cell one more row, with no
user/team/key and source ``provider_api_key``, carries ``reconciled −
attributed`` (the unattributed traffic, or a negative drift correction), so
every grouping sums to the cell's reconciled figure exactly. Reconciliation
is per UTC day, so the reconciled view widens the window to whole days (the
response's ``window`` says so). It reads raw rows (classification needs
correlation ids at write time: ``usage_rollups_reconcile``), so like
``view=raw`` it answers from the rollups (`metis.ledger.reconcile.standing_rows`,
`reconciled_cells`); ``from_raw=True`` classifies the raw rows at query time
instead (the reference the tests compare against). Responses always say
which view answered.
"""

import importlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, and_, case, func, select

from metis.analytics.params import Filters, ParamError, Window
from metis.analytics.query import Agg, aggregate_raw
from metis.db.sums import wide_sum
from metis.ledger.rollups import MEASURES, NULLABLE_DIMS, SUCCESS_STATUSES, TOKEN_MEASURES
from metis.timeutil import day_start

View = Literal["raw", "reconciled"]


def reconciled_view_available() -> bool:
    """Whether the reconciliation component provides grouped reconciled totals."""
    try:
        mod = importlib.import_module("metis.ledger.reconcile")
    except ImportError:
        return False
    return all(hasattr(mod, n) for n in ("reconciled_cells", "_classified"))


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
        return reconciled_aggregate(conn, window, filters, cols)
    return aggregate_raw(conn, window, filters, cols)


def day_window(window: Window) -> Window:
    """The window widened to whole UTC days (the reconciled view's resolution)."""
    start = day_start(window.start.date())
    end = day_start(window.end.date())
    if end < window.end:
        end += timedelta(days=1)
    return Window(start, end)


_CELL = ("workspace_id", "provider", "model", "usage_date")


def reconciled_aggregate(
    conn: Connection,
    window: Window,
    filters: Filters,
    cols: Sequence[str],
    *,
    from_raw: bool = False,
) -> list[Agg]:
    """Grouped totals of the reconciled view (see module docstring) over whole UTC days."""
    rc: Any = importlib.import_module("metis.ledger.reconcile")
    w = day_window(window)
    d0, d1 = w.start.date(), w.end.date()
    urls = rc.gateway_url_variants(rc.gateway_urls_from_env())
    cols = list(dict.fromkeys(cols))
    c = rc._classified(d0, d1, filters.workspace_id, urls)
    gcols = list(dict.fromkeys([*_CELL, *cols]))
    dim_exprs = [
        func.coalesce(c.c[g], "").label(g) if g in NULLABLE_DIMS else c.c[g] for g in gcols
    ]
    err = case(
        (and_(c.c.status.is_not(None), func.lower(c.c.status).not_in(SUCCESS_STATUSES)), 1),
        else_=0,
    )
    conds: list[Any] = [c.c.klass.in_(["gateway", "plugin"])]
    for col, v in (
        ("user_id", filters.user_id),
        ("team_id", filters.team_id),
        ("source", filters.source),
        ("gateway_key_id", filters.gateway_key_id),
    ):
        if v is not None:
            conds.append(c.c[col] == v)
    q = (
        select(
            *dim_exprs,
            func.count().label("record_count"),
            wide_sum(c.c.request_count).label("request_count"),
            func.sum(err).label("error_count"),
            *(wide_sum(c.c[m]).label(m) for m in TOKEN_MEASURES),
            wide_sum(c.c.cost_nanousd).label("cost_nanousd"),
        )
        .where(*conds)
        .group_by(*dim_exprs)
    )
    out: dict[tuple[Any, ...], Agg] = {}

    def put(dims: dict[str, Any], vals: dict[str, int]) -> None:
        key = tuple(dims[g] for g in cols)
        a = out.get(key)
        if a is None:
            a = out[key] = Agg(dims={g: dims[g] for g in cols})
        for m, v in vals.items():
            setattr(a, m, getattr(a, m) + v)

    if from_raw:
        for row in conn.execute(q).mappings():
            dims = {g: (row[g] or None) if g in NULLABLE_DIMS else row[g] for g in gcols}
            put(dims, {m: int(row[m] or 0) for m in MEASURES})
    else:
        narrow = {
            "user_id": filters.user_id,
            "team_id": filters.team_id,
            "gateway_key_id": filters.gateway_key_id,
            "source": filters.source,
        }
        for dims, vals in rc.standing_rows(conn, d0, d1, filters.workspace_id, narrow, cols, urls):
            put(dims, vals)
    # Provider-covered cells: the residual (unattributed, or a drift correction) row.
    residual_visible = (
        filters.user_id is None
        and filters.team_id is None
        and filters.gateway_key_id is None
        and filters.source in (None, rc.PROVIDER_SOURCE)
    )
    if residual_visible:
        cells = rc.reconciled_cells(conn, d0, d1, filters.workspace_id, urls, from_raw=from_raw)
        for cell in cells:
            if not cell.covered:
                continue
            delta = {
                m: getattr(cell.reconciled, m) - getattr(cell.attributed, m)
                for m in ("request_count", *TOKEN_MEASURES, "cost_nanousd")
            }
            if not any(delta.values()):
                continue
            dims = {
                "workspace_id": cell.workspace_id,
                "provider": cell.provider,
                "model": cell.model,
                "usage_date": cell.day,
                "source": rc.PROVIDER_SOURCE,
                "user_id": None,
                "team_id": None,
                "gateway_key_id": None,
            }
            put(dims, {**delta, "record_count": 0})
    return list(out.values())
