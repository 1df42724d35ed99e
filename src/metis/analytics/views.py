"""Which ledger rows the analytics sum: the ``raw`` or the ``reconciled`` view.

Every surface (analytics API, exports, ``metis report``, ``metis export``,
the dashboard) asks the functions here for the same window and view, so
their totals cannot disagree (DESIGN.md "Every surface reads one query
layer"):

- `query_window`: the window a surface answers for (`parse_window`'s
  defaults; the reconciled view widened to whole UTC days, its resolution);
- `usage`: totals grouped by dimensions;
- `usage_rows`: the rows themselves (an ungrouped export), each with its
  reconciliation class and whether the view counts it.

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

from sqlalchemy import Connection, select

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


def usage_rows(
    conn: Connection,
    view: View,
    window: Window,
    filters: Filters,
    columns: Sequence[str],
    batch: int = 5000,
) -> Iterator[list[tuple[Any, ...]]]:
    """The usage rows behind `usage`, in batches: stored rows, then residue rows.

    Each row is a tuple: the values of ``columns`` (of ``usage_records``; times
    are aware UTC datetimes, as every ledger read gives them), then
    ``class`` (its reconciliation class: ``gateway``, ``plugin``,
    ``plugin_duplicate``, ``plugin_via_gateway``, ``provider``, or for the
    synthetic rows ``unattributed`` / ``drift_adjustment``) and ``counted``
    (whether ``view`` counts it). Tuples, not mappings: an export reads
    millions of them. The counted rows sum to `usage`'s total for the same
    window, view and filters, to the nano-dollar: in the raw view every stored
    row counts; in the reconciled view the attributed rows (gateway, plugin)
    count, duplicates and provider rows do not, and one row per covered cell
    carries the residue that makes the cell's figure the reconciled one.
    Stored rows stream (``yield_per``: a server-side cursor on PostgreSQL),
    one batch in memory at a time; ordered by ``window_start``, then ``id``.
    """
    if view == "reconciled":
        window = day_window(window)
    urls = reconcile.gateway_url_variants(reconcile.gateway_urls_from_env())
    ur = usage_records.c
    ident = {
        "user_id": filters.user_id,
        "team_id": filters.team_id,
        "gateway_key_id": filters.gateway_key_id,
    }
    source = filters.source
    stored = view == "raw" or source not in reconcile.RESIDUE_SOURCES
    if stored:
        conds: list[Any] = [ur.window_start >= window.start, ur.window_start < window.end]
        for col, v in (*ident.items(), ("source", source)):
            if v is not None:
                conds.append(ur[col] == v)
        d0 = window.start.date()
        d1 = (window.end - timedelta(microseconds=1)).date() + timedelta(days=1)
        c = reconcile._classified(d0, d1, filters.workspace_id, urls, conds)
        q = select(*(c.c[n] for n in columns), c.c.klass).order_by(c.c.window_start, c.c.id)
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
        counted = COUNTED_CLASSES if view == "reconciled" else None
        for part in result.partitions():
            if counted is None:
                yield [(*r, True) for r in part]
            else:
                yield [(*r, r[-1] in counted) for r in part]
    if view == "raw" or any(v is not None for v in ident.values()):
        return
    if source is not None and source not in reconcile.RESIDUE_SOURCES:
        return
    yield list(_residue_rows(conn, window, filters.workspace_id, columns, source))


def _residue_rows(
    conn: Connection,
    window: Window,
    workspace_id: str | None,
    columns: Sequence[str],
    only: str | None,
) -> Iterator[tuple[Any, ...]]:
    """One row per covered cell and residue kind of whole-day ``window`` (see `usage_rows`)."""
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
