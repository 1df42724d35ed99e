"""Daily rollups of the ledger: ``usage_rollups_daily``.

One rollup row sums the usage records of one (UTC day, workspace, source,
provider, model, user, team, gateway key); a missing user/team/key is ``''``
in the rollup (NULL would not be unique on PostgreSQL) and ``None`` again in
every answer built from it. Analytics read rollups instead of raw records, so
a 90-day query touches days x dimensions rows, not millions of records.

Maintenance is incremental: `metis.ledger.upsert.upsert_usage` computes, per
record it inserted or changed, the record's old and new contribution and
applies the difference with `apply_deltas` in the same transaction, so a
replay changes nothing and a revision moves exactly its delta. `rebuild`
recomputes everything (or a date range) from the raw records
(``metis db rebuild-rollups``).
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from metis.db.tables import (
    usage_records,
    usage_rollups_daily,
    usage_rollups_daily_identity,
    usage_rollups_daily_model,
)

DIMS = (
    "usage_date",
    "workspace_id",
    "source",
    "provider",
    "model",
    "user_id",
    "team_id",
    "gateway_key_id",
)
NULLABLE_DIMS = ("user_id", "team_id", "gateway_key_id")
MODEL_DIMS = ("usage_date", "workspace_id", "source", "provider", "model")
IDENTITY_DIMS = ("usage_date", "workspace_id", "source", "user_id", "team_id", "gateway_key_id")
# Every rollup table with its key columns; the first is the full one, the
# others are projections of it (summed over the dimensions they lack).
TABLES: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (usage_rollups_daily, DIMS),
    (usage_rollups_daily_model, MODEL_DIMS),
    (usage_rollups_daily_identity, IDENTITY_DIMS),
)
TOKEN_MEASURES = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
MEASURES = (
    "record_count",
    "request_count",
    "error_count",
    *TOKEN_MEASURES,
    "cost_nanousd",
)
# Record statuses that are not errors (None = a record without a status, e.g. provider data).
SUCCESS_STATUSES = ("ok", "success", "succeeded", "completed")

# Columns of usage_records a contribution is computed from.
SOURCE_COLUMNS = (*DIMS, "request_count", "status", *TOKEN_MEASURES, "cost_nanousd")

Key = tuple[Any, ...]


def is_error(status: str | None) -> bool:
    """Whether a record's status counts as an error in reliability figures."""
    return status is not None and status.lower() not in SUCCESS_STATUSES


def contribution(row: Mapping[Any, Any]) -> tuple[Key, list[int]]:
    """The rollup key and measure vector one usage record contributes."""
    key = tuple(
        (row[d] or "") if d in NULLABLE_DIMS else row[d]  # '' sentinel for "none"
        for d in DIMS
    )
    vec = [
        1,
        int(row["request_count"] or 0),
        1 if is_error(row["status"]) else 0,
        *(int(row[m] or 0) for m in TOKEN_MEASURES),
        int(row["cost_nanousd"] or 0),
    ]
    return key, vec


def add(deltas: dict[Key, list[int]], key: Key, vec: Sequence[int], sign: int) -> None:
    """Accumulate ``sign * vec`` into ``deltas[key]``."""
    cur = deltas.get(key)
    if cur is None:
        deltas[key] = [sign * v for v in vec]
    else:
        for i, v in enumerate(vec):
            cur[i] += sign * v


def _project(deltas: Mapping[Key, Sequence[int]], dims: tuple[str, ...]) -> dict[Key, list[int]]:
    if dims == DIMS:
        return {k: list(v) for k, v in deltas.items()}
    idx = [DIMS.index(d) for d in dims]
    out: dict[Key, list[int]] = {}
    for k, v in deltas.items():
        add(out, tuple(k[i] for i in idx), v, +1)
    return out


def apply_deltas(conn: Connection, deltas: Mapping[Key, Sequence[int]]) -> None:
    """Add measure deltas to every rollup table (creating rows), dropping rows left empty."""
    for table, dims in TABLES:
        _apply(conn, table, dims, _project(deltas, dims))


def _apply(
    conn: Connection, table: Table, dims: tuple[str, ...], deltas: dict[Key, list[int]]
) -> None:
    rows = [
        {**dict(zip(dims, k, strict=True)), **dict(zip(MEASURES, v, strict=True))}
        for k, v in deltas.items()
        if any(v)
    ]
    if not rows:
        return
    ins: Any = (
        postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    )
    t = table.c
    stmt = ins.on_conflict_do_update(
        index_elements=list(dims),
        set_={m: t[m] + ins.excluded[m] for m in MEASURES},
    )
    # Sorted so concurrent writers lock rollup rows in the same order (no deadlocks).
    rows.sort(key=lambda r: tuple(str(r[d]) for d in dims))
    conn.execute(stmt, rows)
    emptied = [k for k, v in deltas.items() if v[0] < 0]
    if emptied:
        conn.execute(
            delete(table).where(
                t.record_count <= 0, or_(*(_key_match(table, dims, k) for k in emptied))
            )
        )


def _key_match(table: Table, dims: tuple[str, ...], key: Key) -> ColumnElement[bool]:
    return and_(*(table.c[d] == v for d, v in zip(dims, key, strict=True)))


def _project_select(table: Table, dims: tuple[str, ...], where: ColumnElement[bool] | None) -> Any:
    """SELECT a projection's rows from the full rollup."""
    f = usage_rollups_daily.c
    q = select(*(f[d] for d in dims), *(func.sum(f[m]).label(m) for m in MEASURES))
    if where is not None:
        q = q.where(where)
    return q.group_by(*(f[d] for d in dims))


def _grouped_select(where: ColumnElement[bool] | None) -> Any:
    r = usage_records.c
    err = case(
        (and_(r.status.is_not(None), func.lower(r.status).not_in(SUCCESS_STATUSES)), 1),
        else_=0,
    )
    dim_cols = [
        func.coalesce(r[d], literal("")).label(d) if d in NULLABLE_DIMS else r[d] for d in DIMS
    ]
    q = select(
        *dim_cols,
        func.count().label("record_count"),
        func.coalesce(func.sum(r.request_count), 0).label("request_count"),
        func.coalesce(func.sum(err), 0).label("error_count"),
        *(func.coalesce(func.sum(r[m]), 0).label(m) for m in TOKEN_MEASURES),
        func.coalesce(func.sum(r.cost_nanousd), 0).label("cost_nanousd"),
    )
    if where is not None:
        q = q.where(where)
    return q.group_by(*dim_cols)


def recompute_cells(conn: Connection, keys: Iterable[Key]) -> None:
    """Recompute the rollup rows of the given full keys from raw records (after a write race)."""
    r = usage_records.c
    for key in keys:
        conn.execute(delete(usage_rollups_daily).where(_key_match(usage_rollups_daily, DIMS, key)))
        cond = and_(
            *(
                (func.coalesce(r[d], "") == v) if d in NULLABLE_DIMS else (r[d] == v)
                for d, v in zip(DIMS, key, strict=True)
            )
        )
        conn.execute(
            insert(usage_rollups_daily).from_select([*DIMS, *MEASURES], _grouped_select(cond))
        )
        for table, dims in TABLES[1:]:
            pkey = tuple(key[DIMS.index(d)] for d in dims)
            conn.execute(delete(table).where(_key_match(table, dims, pkey)))
            full = _key_match(usage_rollups_daily, dims, pkey)
            conn.execute(
                insert(table).from_select([*dims, *MEASURES], _project_select(table, dims, full))
            )


def rebuild(conn: Connection, start: date | None = None, end: date | None = None) -> int:
    """Recompute rollups from raw records for days in ``[start, end)``.

    ``start`` defaults to the first day that still has raw records, so days
    whose raw rows were pruned keep their rollups; pass it to force a range.

    Runs as DELETEs plus INSERT … SELECT … GROUP BY statements inside the
    caller's transaction, so readers see either the old or the new rollups.
    Returns the number of full rollup rows written.
    """
    r = usage_records.c
    if start is None:
        # Raw records may have been pruned (METIS_RETENTION_DAYS) while their
        # rollups are kept: never rebuild days that no longer have raw rows.
        start = conn.execute(select(func.min(r.usage_date))).scalar()
        if start is None:
            return 0
    conds_raw: list[ColumnElement[bool]] = []
    if start is not None:
        conds_raw.append(r.usage_date >= start)
    if end is not None:
        conds_raw.append(r.usage_date < end)

    def roll_conds(table: Table) -> ColumnElement[bool] | None:
        c: list[ColumnElement[bool]] = []
        if start is not None:
            c.append(table.c.usage_date >= start)
        if end is not None:
            c.append(table.c.usage_date < end)
        return and_(*c) if c else None

    for table, _ in TABLES:
        cond = roll_conds(table)
        conn.execute(delete(table).where(cond) if cond is not None else delete(table))
    conn.execute(
        insert(usage_rollups_daily).from_select(
            [*DIMS, *MEASURES], _grouped_select(and_(*conds_raw) if conds_raw else None)
        )
    )
    for table, dims in TABLES[1:]:
        conn.execute(
            insert(table).from_select(
                [*dims, *MEASURES], _project_select(table, dims, roll_conds(usage_rollups_daily))
            )
        )
    q = select(func.count()).select_from(usage_rollups_daily)
    cond = roll_conds(usage_rollups_daily)
    if cond is not None:
        q = q.where(cond)
    return int(conn.execute(q).scalar() or 0)
