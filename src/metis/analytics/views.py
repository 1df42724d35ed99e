"""Which ledger rows the analytics sum: the ``raw`` or the ``reconciled`` view.

Every surface (analytics API, exports, ``metis report``, ``metis export``,
the dashboard) asks the functions here for the same window and view, so
their totals cannot disagree (DESIGN.md "Every surface reads one query
layer"):

- `query_window`: the window a surface answers for (`parse_window`'s
  defaults; the reconciled view widened to whole UTC days, its resolution);
- `usage`: totals grouped by dimensions;
- `stored_usage` and `residue_rows`: the rows themselves (an ungrouped
  export), each with its reconciliation class; `counted_classes` says which
  the view counts.

``raw`` sums the rows of every source (or one ``source``) as stored; summing
several sources double counts calls seen by more than one feed. The
``reconciled`` view (one true total per (workspace, provider, model, day)
cell, DESIGN.md "Sources and reconciliation") is
`metis.ledger.reconcile.reconciled_aggregate`: the attributed rows (gateway
rows, and plugin rows that are neither duplicates of a gateway row nor sent
through the gateway) keep their user/team/key/source, and each
provider-covered cell adds its residue rows, source ``unattributed``
(provider − attributed where positive) and ``drift_adjustment`` (negative:
attributed above a closed day's provider figure), with no user/team/key, so
every grouping sums to the reconciled cells exactly. Responses always say
which view answered.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection

from metis.analytics.params import Filters, ParamError, Window, parse_window
from metis.analytics.query import Agg, aggregate_raw
from metis.db.tables import usage_records
from metis.ledger import reconcile
from metis.timeutil import day_start

View = Literal["raw", "reconciled"]
COUNTED_CLASSES = ("gateway", "plugin")
"""Classes of stored rows the reconciled view counts as they are (the attributed rows)."""


def default_view() -> View:
    return "reconciled"


def parse_view(value: str | None) -> View:
    if value is None or value == "":
        return default_view()
    if value in ("raw", "reconciled"):
        return value  # type: ignore[return-value]
    raise ParamError("invalid_view", "view must be raw or reconciled")


def query_window(
    start: str | None, end: str | None, view: View, *, now: datetime | None = None
) -> Window:
    """The window every surface answers ``from``/``to`` with in ``view``.

    `metis.analytics.params.parse_window` (default: the last 7 whole UTC days
    through today), widened to whole UTC days for the reconciled view.
    """
    w = parse_window(start, end, now=now)
    return day_window(w) if view == "reconciled" else w


def usage(
    conn: Connection, view: View, window: Window, filters: Filters, cols: Sequence[str]
) -> list[Agg]:
    """Grouped usage totals from ``view`` (see module docstring)."""
    cols = list(dict.fromkeys(cols))
    if view == "reconciled":
        out: list[Agg] = reconcile.reconciled_aggregate(conn, window, filters, cols)
        return out
    return aggregate_raw(conn, window, filters, cols)


def day_window(window: Window) -> Window:
    """The window widened to whole UTC days (the reconciled view's resolution)."""
    start = day_start(window.start.date())
    end = day_start(window.end.date())
    if end < window.end:
        end += timedelta(days=1)
    return Window(start, end)


def counted_classes(view: View) -> tuple[str, ...] | None:
    """The classes of stored rows ``view`` counts; None: every row (the raw view)."""
    return COUNTED_CLASSES if view == "reconciled" else None


def stored_usage(view: View, window: Window, filters: Filters) -> Any | None:
    """The stored rows behind `usage` as a subquery with a ``klass`` column, or None.

    The subquery has every ``usage_records`` column and ``klass``, the row's
    reconciliation class: ``gateway``, ``plugin``, ``plugin_duplicate``,
    ``plugin_via_gateway`` or ``provider``. Exports order it by
    ``window_start``, then ``id``, and follow it with `residue_rows`. The
    rows ``view`` counts (`counted_classes`) and the residue rows sum to
    `usage`'s total for the same window, view and filters, to the nano-dollar:
    in the raw view every stored row counts; in the reconciled view the
    attributed rows (gateway, plugin) count, duplicates and provider rows do
    not, and one residue row per covered cell makes the cell's figure the
    reconciled one. None when the view and filters show no stored rows
    (``source=unattributed``: residue rows only).
    """
    if view == "reconciled":
        if filters.source in reconcile.RESIDUE_SOURCES:
            return None
        window = day_window(window)
    urls = reconcile.gateway_url_variants(reconcile.gateway_urls_from_env())
    ur = usage_records.c
    conds: list[Any] = [ur.window_start >= window.start, ur.window_start < window.end]
    for col, v in (*_identity(filters).items(), ("source", filters.source)):
        if v is not None:
            conds.append(ur[col] == v)
    d0 = window.start.date()
    d1 = (window.end - timedelta(microseconds=1)).date() + timedelta(days=1)
    return reconcile._classified(d0, d1, filters.workspace_id, urls, conds)


def residue_rows(
    conn: Connection, view: View, window: Window, filters: Filters, columns: Sequence[str]
) -> list[tuple[Any, ...]] | None:
    """The reconciled view's residue rows that follow the stored ones (`stored_usage`).

    Tuples of ``columns`` (times aware UTC datetimes), then ``class``
    (``unattributed`` or ``drift_adjustment``, also the row's source) and
    ``counted`` (True). None when there are none to show: the raw view, an identity filter (residue
    rows have no user, team or key) or a ``source`` filter naming a stored source.
    """
    if view == "raw" or any(v is not None for v in _identity(filters).values()):
        return None
    source = filters.source
    if source is not None and source not in reconcile.RESIDUE_SOURCES:
        return None
    return list(_residue_rows(conn, day_window(window), filters.workspace_id, columns, source))


def _identity(filters: Filters) -> dict[str, str | None]:
    return {
        "user_id": filters.user_id,
        "team_id": filters.team_id,
        "gateway_key_id": filters.gateway_key_id,
    }


def _residue_rows(
    conn: Connection,
    window: Window,
    workspace_id: str | None,
    columns: Sequence[str],
    only: str | None,
) -> Iterator[tuple[Any, ...]]:
    """One row per covered cell and residue kind of whole-day ``window`` (see `residue_rows`)."""
    cells = reconcile.reconciled_cells(conn, window.start.date(), window.end.date(), workspace_id)
    for cell in cells:
        for kind, t, sign in (
            (reconcile.UNATTRIBUTED_SOURCE, cell.unattributed, 1),
            (reconcile.DRIFT_SOURCE, cell.drift, -1),
        ):
            if t.is_zero() or (only is not None and only != kind):
                continue
            start = day_start(cell.day)
            base: dict[str, Any] = dict.fromkeys(columns)
            base.update(
                usage_date=cell.day,
                window_start=start,
                window_end=start + timedelta(days=1),
                workspace_id=cell.workspace_id,
                source=kind,
                granularity="1d",
                provider=cell.provider,
                model=cell.model,
                model_raw=cell.model,
                cost_source="reconciled",
            )
            for m, v in t.measures().items():
                base[m] = sign * v
            yield (*(base[n] for n in columns), kind, True)
