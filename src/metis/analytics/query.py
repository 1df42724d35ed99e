"""The analytics query layer: windowed, filtered, grouped usage totals.

`aggregate` is the one entry point every endpoint, export and report uses. It
answers from the daily rollups (the narrowest of the three rollup tables
that has every needed dimension, `rollup_table`) for whole UTC days inside the window and from
raw records for the partial days at either edge, so any half-open window is
exact and a 90-day window reads days x dimensions rollup rows.

Which rows are summed is the *view*:

- ``raw`` (``view=raw``): the rows of every source side by side, optionally one
  ``source``. Summing several sources double counts calls seen by more than
  one feed; that is what the reconciled view exists for.
- ``reconciled``: one true total per cell (DESIGN.md); provided by
  `metis.ledger.reconcile` (`reconciled_view_available` says whether it is
  installed). See `metis.analytics.views`.

Group dimensions are whitelist names (`GROUP_DIMS`) mapped to literal columns;
rows come back as `Agg` with ``None`` for a missing user/team/key.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from metis.analytics.params import Filters, Window
from metis.db.sums import wide_sum
from metis.db.tables import usage_records, usage_rollups_daily
from metis.ledger.rollups import MEASURES, NULLABLE_DIMS, SUCCESS_STATUSES, TOKEN_MEASURES
from metis.ledger.rollups import TABLES as ROLLUP_TABLES
from metis.timeutil import day_start

# API name -> rollup/record column.
GROUP_DIMS: dict[str, str] = {
    "day": "usage_date",
    "workspace": "workspace_id",
    "source": "source",
    "provider": "provider",
    "model": "model",
    "user": "user_id",
    "team": "team_id",
    "gateway_key": "gateway_key_id",
}


@dataclass
class Agg:
    """Summed measures for one group (``dims`` keyed by column name)."""

    dims: dict[str, Any]
    record_count: int = 0
    request_count: int = 0
    error_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_nanousd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, other: "Agg") -> None:
        for m in MEASURES:
            setattr(self, m, getattr(self, m) + getattr(other, m))


def _split(window: Window) -> tuple[tuple[date, date] | None, list[tuple[datetime, datetime]]]:
    """Whole UTC days ``[d0, d1)`` inside the window, and the partial edges as raw ranges."""
    first_full = window.start.date()
    if day_start(first_full) < window.start:
        first_full += timedelta(days=1)
    end_full = window.end.date()  # days strictly before the end's midnight are whole
    if first_full >= end_full:
        return None, [(window.start, window.end)]
    raw: list[tuple[datetime, datetime]] = []
    if window.start < day_start(first_full):
        raw.append((window.start, day_start(first_full)))
    if day_start(end_full) < window.end:
        raw.append((day_start(end_full), window.end))
    return (first_full, end_full), raw


# Public name for other query modules (`metis.analytics.latency`) splitting windows the same way.
split_window = _split


def filter_conds(t: Any, f: Filters, *, source: bool = True) -> list[ColumnElement[bool]]:
    """``t``'s conditions for the filters that are set: workspace, user, team, key and
    (unless ``source`` is false: a table without one, or a caller fixing it) source."""
    conds: list[ColumnElement[bool]] = []
    for col, v in (
        ("workspace_id", f.workspace_id),
        ("user_id", f.user_id),
        ("team_id", f.team_id),
        ("source", f.source if source else None),
        ("gateway_key_id", f.gateway_key_id),
    ):
        if v is not None:
            conds.append(t.c[col] == v)
    return conds


def rollup_table(cols: Sequence[str], f: Filters) -> Any:
    """The narrowest rollup table holding every grouped and filtered dimension."""
    needed = set(cols) | {
        c
        for c, v in (
            ("workspace_id", f.workspace_id),
            ("user_id", f.user_id),
            ("team_id", f.team_id),
            ("source", f.source),
            ("gateway_key_id", f.gateway_key_id),
        )
        if v is not None
    }
    for table, dims in sorted(ROLLUP_TABLES, key=lambda td: len(td[1])):
        if needed <= set(dims):
            return table
    return usage_rollups_daily


def _rollup_query(days: tuple[date, date], f: Filters, cols: Sequence[str]) -> Any:
    t = rollup_table(cols, f)
    dim_cols = [t.c[c] for c in cols]
    q = select(*dim_cols, *(wide_sum(t.c[m]).label(m) for m in MEASURES)).where(
        t.c.usage_date >= days[0], t.c.usage_date < days[1], *filter_conds(t, f)
    )
    return q.group_by(*dim_cols) if dim_cols else q


def day_bounds(dialect: str, lo: datetime, hi: datetime) -> list[ColumnElement[bool]]:
    """The ``usage_records.usage_date`` conditions implied by ``lo <= window_start < hi``.

    On PostgreSQL only (an empty list on SQLite), where ``usage_records`` is partitioned by month of
    ``usage_date`` (`metis.db.partitions`): with them a raw read of a
    partial day is planned against that month's partitions only. Not on
    SQLite, whose planner could prefer the day index over the (narrower)
    ``window_start`` range.
    """
    if dialect != "postgresql":
        return []
    last = (hi - timedelta(microseconds=1)).date()
    return [usage_records.c.usage_date >= lo.date(), usage_records.c.usage_date <= last]


def _raw_query(
    rng: tuple[datetime, datetime], f: Filters, cols: Sequence[str], dialect: str
) -> Any:
    t = usage_records
    dim_cols = [
        func.coalesce(t.c[c], literal("")).label(c) if c in NULLABLE_DIMS else t.c[c] for c in cols
    ]
    err = case(
        (and_(t.c.status.is_not(None), func.lower(t.c.status).not_in(SUCCESS_STATUSES)), 1),
        else_=0,
    )
    q = select(
        *dim_cols,
        func.count().label("record_count"),
        wide_sum(t.c.request_count).label("request_count"),
        func.sum(err).label("error_count"),
        *(wide_sum(t.c[m]).label(m) for m in TOKEN_MEASURES),
        wide_sum(t.c.cost_nanousd).label("cost_nanousd"),
    ).where(
        t.c.window_start >= rng[0],
        t.c.window_start < rng[1],
        *day_bounds(dialect, *rng),
        *filter_conds(t, f),
    )
    return q.group_by(*dim_cols) if dim_cols else q


def aggregate_raw(
    conn: Connection, window: Window, filters: Filters, cols: Sequence[str]
) -> list[Agg]:
    """Sum every source's rows (the ``raw`` view) grouped by ``cols`` (column names)."""
    cols = list(dict.fromkeys(cols))
    days, raws = _split(window)
    queries = []
    if days is not None:
        queries.append(_rollup_query(days, filters, cols))
    queries.extend(_raw_query(r, filters, cols, conn.dialect.name) for r in raws)
    merged: dict[tuple[Any, ...], Agg] = {}
    for q in queries:
        for row in conn.execute(q).mappings():
            if row["record_count"] is None or int(row["record_count"]) == 0:
                continue
            key = tuple(row[c] for c in cols)
            a = Agg(dims={c: (row[c] or None) if c in NULLABLE_DIMS else row[c] for c in cols})
            for m in MEASURES:
                setattr(a, m, int(row[m] or 0))
            cur = merged.get(key)
            if cur is None:
                merged[key] = a
            else:
                cur.add(a)
    return list(merged.values())


def partial_coverage(conn: Connection, window: Window, filters: Filters) -> bool:
    """spec 003 §5 ``partial_coverage``: a key in the result set was retagged in the window.

    True when any gateway key present in the (filtered) result set has, within
    the window, rows without a user and rows with one. The keys' rows are
    checked whatever the user/team/source filters (only the workspace narrows).
    The retagged keys are found first, in SQL (one row per key: a 90-day
    window reads no more than the identity rollup's rows and returns few);
    only when there are some is the filtered result set asked for them.
    """
    retagged = _retagged_keys(conn, window, filters.workspace_id)
    if not retagged:
        return False
    rows = aggregate_raw(conn, window, filters, ["gateway_key_id"])
    return any(a.dims["gateway_key_id"] in retagged for a in rows)


def _retagged_keys(conn: Connection, window: Window, workspace_id: str | None) -> set[str]:
    """Gateway keys with, inside ``window``, rows without a user and rows with one."""
    days, raws = _split(window)
    seen: dict[str, set[bool]] = {}
    parts: list[tuple[Any, Any, list[ColumnElement[bool]]]] = []
    if days is not None:
        t = rollup_table(["gateway_key_id", "user_id"], Filters())
        parts.append((t, t.c.user_id != "", [t.c.usage_date >= days[0], t.c.usage_date < days[1]]))
    for lo, hi in raws:
        r = usage_records
        conds = [
            r.c.window_start >= lo,
            r.c.window_start < hi,
            *day_bounds(conn.dialect.name, lo, hi),
        ]
        parts.append((r, r.c.user_id.is_not(None), conds))
    for t, tagged, conds in parts:
        if workspace_id is not None:
            conds.append(t.c.workspace_id == workspace_id)
        is_tagged = case((tagged, 1), else_=0)
        q = (
            select(t.c.gateway_key_id, func.min(is_tagged), func.max(is_tagged))
            .where(*conds, t.c.gateway_key_id.is_not(None), t.c.gateway_key_id != "")
            .group_by(t.c.gateway_key_id)
        )
        for key, lo_v, hi_v in conn.execute(q):
            s = seen.setdefault(str(key), set())
            s.update({bool(lo_v), bool(hi_v)})
    return {k for k, s in seen.items() if len(s) == 2}
