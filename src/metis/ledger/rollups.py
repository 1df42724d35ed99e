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

``usage_rollups_reconcile`` keeps, for every row that is not a gateway row,
the classification the reconciled view needs (`metis.ledger.reconcile`):
provider rows with or without money, and plugin rows by ``base_url`` and
whether a gateway row of the workspace has the same correlation id
(``duplicate``). A record's contribution key (`contribution`) therefore
carries, past the rollup dimensions, what that classification is computed
from; `apply_deltas` resolves it against the gateway rows after the upsert,
including plugin rows *not* in the batch whose gateway twin just arrived
(see `_reconcile_deltas`). So the reconciled view is answered from rollups,
with results equal to classifying the raw rows at query time
(tests/ledger/test_reconcile_rollups.py).
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from metis.db.tables import (
    usage_records,
    usage_rollups_daily,
    usage_rollups_daily_identity,
    usage_rollups_daily_model,
    usage_rollups_reconcile,
    usage_rollups_reconcile_identity,
    usage_rollups_reconcile_model,
)
from metis.ledger import bounds, latency_rollups

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
SOURCE_COLUMNS = (
    *DIMS,
    "request_count",
    "status",
    *TOKEN_MEASURES,
    "cost_nanousd",
    "cost_source",
    "correlation_id",
    "base_url",
)

# The reconciliation rollup (`usage_rollups_reconcile`): sources and classes.
GATEWAY_SOURCE = "gateway"
PROVIDER_SOURCE = "provider_api_key"
RECON_DIMS = (*DIMS, "base_url", "klass")
# Its projections without user/team/key (`usage_rollups_reconcile_model`) and
# without provider/model (`usage_rollups_reconcile_identity`).
RECON_MODEL_DIMS = (*MODEL_DIMS, "base_url", "klass")
RECON_IDENTITY_DIMS = ("klass", *IDENTITY_DIMS, "base_url")
RECON_PROJECTIONS: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (usage_rollups_reconcile_model, RECON_MODEL_DIMS),
    (usage_rollups_reconcile_identity, RECON_IDENTITY_DIMS),
)
RECON_TABLES: tuple[Table, ...] = (usage_rollups_reconcile, *(t for t, _ in RECON_PROJECTIONS))
KLASS_PROVIDER = "provider"
KLASS_PROVIDER_NO_COST = "provider_no_cost"  # a provider row with cost_source = none
# A provider row whose cost the sync computed (the provider's cost report did not cover it yet).
KLASS_PROVIDER_COMPUTED = "provider_priced"
KLASS_PROVIDERS = (KLASS_PROVIDER, KLASS_PROVIDER_NO_COST, KLASS_PROVIDER_COMPUTED)
KLASS_PLUGIN = "plugin"
KLASS_DUPLICATE = "duplicate"  # a gateway row of the workspace has its correlation id
# Contribution keys are DIMS plus a tail saying what the reconciliation
# classification is computed from: ("g", correlation_id) for gateway rows,
# ("p", klass) for provider rows, ("x", base_url, correlation_id, dedupe_key)
# for plugin rows (the dedupe key names the record, see `_reconcile_deltas`).
_N = len(DIMS)

Key = tuple[Any, ...]


def is_error(status: str | None) -> bool:
    """Whether a record's status counts as an error in reliability figures."""
    return status is not None and status.lower() not in SUCCESS_STATUSES


def contribution(row: Mapping[Any, Any]) -> tuple[Key, list[int]]:
    """The rollup key and measure vector one usage record contributes.

    ``row`` needs `SOURCE_COLUMNS` and, for a row of a plugin source, ``dedupe_key``.
    The key is the rollup dimensions (`DIMS`) plus the classification tail.
    """
    dims = tuple(
        (row[d] or "") if d in NULLABLE_DIMS else row[d]  # '' sentinel for "none"
        for d in DIMS
    )
    src = row["source"]
    tail: tuple[Any, ...]
    if src == GATEWAY_SOURCE:
        tail = ("g", row["correlation_id"])
    elif src == PROVIDER_SOURCE:
        tail = ("p", _provider_klass(row["cost_source"]))
    else:
        tail = ("x", row["base_url"] or "", row["correlation_id"], row["dedupe_key"])
    key = dims + tail
    vec = [
        1,
        int(row["request_count"] or 0),
        1 if is_error(row["status"]) else 0,
        *(int(row[m] or 0) for m in TOKEN_MEASURES),
        int(row["cost_nanousd"] or 0),
    ]
    return key, vec


def _provider_klass(cost_source: str | None) -> str:
    """The reconciliation class of a provider row (SQL twin: `_recon_select`)."""
    if cost_source == "none":
        return KLASS_PROVIDER_NO_COST
    if cost_source == "computed":
        return KLASS_PROVIDER_COMPUTED
    return KLASS_PROVIDER


def add(deltas: dict[Key, list[int]], key: Key, vec: Sequence[int], sign: int) -> None:
    """Accumulate ``sign * vec`` into ``deltas[key]``."""
    cur = deltas.get(key)
    if cur is None:
        deltas[key] = [sign * v for v in vec]
    else:
        for i, v in enumerate(vec):
            cur[i] += sign * v


def _project(deltas: Mapping[Key, Sequence[int]], dims: tuple[str, ...]) -> dict[Key, list[int]]:
    idx = [DIMS.index(d) for d in dims]
    out: dict[Key, list[int]] = {}
    for k, v in deltas.items():
        add(out, tuple(k[i] for i in idx), v, +1)
    return out


def apply_deltas(conn: Connection, deltas: Mapping[Key, Sequence[int]]) -> None:
    """Add measure deltas to every rollup table (creating rows), dropping rows left empty.

    Runs after the records' rows were written (the reconciliation classes are
    resolved against the stored gateway rows, `_reconcile_deltas`).
    """
    for table, dims in TABLES:
        _apply(conn, table, dims, _project(deltas, dims))
    rd = _reconcile_deltas(conn, deltas)
    _apply(conn, usage_rollups_reconcile, RECON_DIMS, rd)
    for table, dims in RECON_PROJECTIONS:
        idx = [RECON_DIMS.index(d) for d in dims]
        projected: dict[Key, list[int]] = {}
        for k, v in rd.items():
            add(projected, tuple(k[i] for i in idx), v, +1)
        _apply(conn, table, dims, projected)


def _pair_lock(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Serialize writers touching the same (workspace, correlation id) (PostgreSQL).

    A gateway row and its plugin twin written at the same moment by two
    transactions would each miss the other; with this lock, taken after the
    rows are written and held to commit, the second one sees the first's rows.
    SQLite writers are already serialized (`metis.ledger.upsert` takes the
    write lock first).
    """
    if conn.dialect.name != "postgresql":
        return
    keys = sorted(
        {
            int.from_bytes(
                hashlib.blake2b(f"{w}\x00{c}".encode(), digest_size=8).digest(),
                "big",
                signed=True,
            )
            for w, c in pairs
        }
    )
    if keys:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": keys},
        )


def _gateway_counts(conn: Connection, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many gateway rows hold each (workspace, correlation id), as stored now."""
    r = usage_records.c
    out: dict[tuple[str, str], int] = {}
    cs = sorted({c for _, c in pairs})
    for i in range(0, len(cs), 500):
        q = (
            select(r.workspace_id, r.correlation_id, func.count())
            .where(r.correlation_id.in_(cs[i : i + 500]), r.source == GATEWAY_SOURCE)
            .group_by(r.workspace_id, r.correlation_id)
        )
        for w, c, n in conn.execute(q):
            if (w, c) in pairs:
                out[(w, c)] = int(n)
    return out


def _plugin_rows(conn: Connection, pairs: set[tuple[str, str]]) -> list[Any]:
    """The stored plugin-source rows holding any of ``pairs`` (workspace, correlation id)."""
    r = usage_records.c
    cols = [r.dedupe_key, *(r[n] for n in SOURCE_COLUMNS)]
    out: list[Any] = []
    cs = sorted({c for _, c in pairs})
    for i in range(0, len(cs), 500):
        q = select(*cols).where(
            r.correlation_id.in_(cs[i : i + 500]),
            r.source.not_in((GATEWAY_SOURCE, PROVIDER_SOURCE)),
        )
        out.extend(
            row
            for row in conn.execute(q).mappings()
            if (row["workspace_id"], row["correlation_id"]) in pairs
        )
    return out


def _reconcile_deltas(
    conn: Connection, deltas: Mapping[Key, Sequence[int]]
) -> dict[Key, list[int]]:
    """The `usage_rollups_reconcile` deltas of a batch of contribution deltas.

    Negative entries are stored rows' old contributions, positive ones the new
    rows'; a record changed in place may net both under one key. A plugin row
    is ``duplicate`` when a gateway row of its workspace has its correlation
    id. Gateway counts are read after the write, and "before" is that minus
    the batch's gateway entries, so:

    - a plugin entry on a pair whose gateway presence did not change is
      classified by it;
    - on a pair whose presence flipped (a gateway twin arrived or left), every
      stored plugin row there moves from its old class to its new one: stored
      value ``a`` (new class) and old value ``a − n`` (old class), where ``n``
      is the batch's net entry for that record; entries with no stored row
      there are old values only (the record moved away) and take the old class.
    """
    out: dict[Key, list[int]] = {}
    gw_net: dict[tuple[str, str], int] = {}
    plugin: list[tuple[Key, Sequence[int]]] = []
    for k, v in deltas.items():
        tail = k[_N:]
        if tail[0] == "g":
            if tail[1] is not None and v[0]:
                p = (k[1], tail[1])
                gw_net[p] = gw_net.get(p, 0) + v[0]
        elif tail[0] == "p":
            add(out, (*k[:_N], "", tail[1]), v, +1)
        else:
            plugin.append((k, v))
    pairs = {(k[1], k[_N + 2]) for k, _ in plugin if k[_N + 2] is not None}
    moved = {p for p, n in gw_net.items() if n}
    _pair_lock(conn, pairs | moved)
    stored = _plugin_rows(conn, moved) if moved else []
    need = pairs | {(r["workspace_id"], r["correlation_id"]) for r in stored}
    after = _gateway_counts(conn, need) if need else {}

    def klass(p: tuple[str, str] | None, before: bool) -> str:
        if p is None:
            return KLASS_PLUGIN
        n = after.get(p, 0) - (gw_net.get(p, 0) if before else 0)
        return KLASS_DUPLICATE if n > 0 else KLASS_PLUGIN

    def rkey(k: Key, kl: str) -> Key:
        return (*k[:_N], k[_N + 1], kl)

    flipped = {p for p in need if (klass(p, True) != klass(p, False))}
    matched: set[Key] = set()
    for row in stored:
        p = (row["workspace_id"], row["correlation_id"])
        if p not in flipped:
            continue
        k, a = contribution(row)
        n = deltas.get(k)
        if n is not None:
            matched.add(k)
        old = a if n is None else [x - y for x, y in zip(a, n, strict=True)]
        add(out, rkey(k, klass(p, True)), old, -1)
        add(out, rkey(k, klass(p, False)), a, +1)
    for k, v in plugin:
        if k in matched:
            continue
        c = k[_N + 2]
        q: tuple[str, str] | None = None if c is None else (k[1], c)
        if q in flipped:
            # Not stored at this key any more: the record's old value, old class.
            add(out, rkey(k, klass(q, True)), v, +1)
        else:
            add(out, rkey(k, klass(q, False)), v, +1)
    return out


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
    t = table.c
    stmt = _upsert_stmt(conn.dialect.name, table, dims)
    for r in rows:  # so stored (<= CELL_MAX) + delta cannot overflow 64 bits (metis.ledger.bounds)
        bounds.check_delta(r, MEASURES, [r[m] for m in MEASURES])
    # Sorted so concurrent writers lock rollup rows in the same order (no deadlocks).
    rows.sort(key=lambda r: tuple(str(r[d]) for d in dims))
    for row in conn.execute(stmt, rows).mappings():
        bounds.check_cell(row, MEASURES, [row[m] for m in MEASURES])
    emptied = [k for k, v in deltas.items() if v[0] < 0]
    if emptied:
        conn.execute(
            delete(table).where(
                t.record_count <= 0, or_(*(_key_match(table, dims, k) for k in emptied))
            )
        )


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert_stmt(dialect: str, table: Table, dims: tuple[str, ...]) -> Any:
    """Add measures to a rollup row (creating it); built once per dialect and table."""
    stmt = _UPSERTS.get((dialect, table.name))
    if stmt is None:
        ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        # RETURNING the new sums: each is checked against the per-cell bound.
        named = [table.c[c] for c in ("usage_date", "source", "provider", "model") if c in dims]
        stmt = _UPSERTS[(dialect, table.name)] = ins.on_conflict_do_update(
            index_elements=list(dims),
            set_={m: table.c[m] + ins.excluded[m] for m in MEASURES},
        ).returning(*named, *(table.c[m] for m in MEASURES))
    return stmt


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


def _recon_select(where: ColumnElement[bool] | None) -> Any:
    """Raw non-gateway rows grouped into `usage_rollups_reconcile` rows (classified in SQL)."""
    r = usage_records.c
    gw = usage_records.alias("gw")
    twin = exists(
        select(literal(1))
        .select_from(gw)
        .where(
            gw.c.workspace_id == r.workspace_id,
            gw.c.source == GATEWAY_SOURCE,
            gw.c.correlation_id == r.correlation_id,
        )
    )
    klass = case(
        (
            r.source == PROVIDER_SOURCE,
            case(
                (r.cost_source == "none", literal(KLASS_PROVIDER_NO_COST)),
                (r.cost_source == "computed", literal(KLASS_PROVIDER_COMPUTED)),
                else_=literal(KLASS_PROVIDER),
            ),
        ),
        (and_(r.correlation_id.is_not(None), twin), literal(KLASS_DUPLICATE)),
        else_=literal(KLASS_PLUGIN),
    ).label("klass")
    base_url = case(
        (r.source == PROVIDER_SOURCE, literal("")), else_=func.coalesce(r.base_url, literal(""))
    ).label("base_url")
    err = case(
        (and_(r.status.is_not(None), func.lower(r.status).not_in(SUCCESS_STATUSES)), 1),
        else_=0,
    )
    dim_cols = [
        func.coalesce(r[d], literal("")).label(d) if d in NULLABLE_DIMS else r[d] for d in DIMS
    ]
    q = select(
        *dim_cols,
        base_url,
        klass,
        func.count().label("record_count"),
        func.coalesce(func.sum(r.request_count), 0).label("request_count"),
        func.coalesce(func.sum(err), 0).label("error_count"),
        *(func.coalesce(func.sum(r[m]), 0).label(m) for m in TOKEN_MEASURES),
        func.coalesce(func.sum(r.cost_nanousd), 0).label("cost_nanousd"),
    ).where(r.source != GATEWAY_SOURCE)
    if where is not None:
        q = q.where(where)
    return q.group_by(*dim_cols, base_url, klass)


def _recon_projection_select(dims: tuple[str, ...], where: ColumnElement[bool] | None) -> Any:
    """SELECT a `RECON_PROJECTIONS` table's rows from the full reconciliation rollup."""
    f = usage_rollups_reconcile.c
    q = select(*(f[d] for d in dims), *(func.sum(f[m]).label(m) for m in MEASURES))
    if where is not None:
        q = q.where(where)
    return q.group_by(*(f[d] for d in dims))


def recompute_cells(conn: Connection, keys: Iterable[Key]) -> None:
    """Recompute the rollup rows of the given keys from raw records (after a write race)."""
    r = usage_records.c
    for key in {k[:_N] for k in keys}:
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
        rt = usage_rollups_reconcile
        conn.execute(delete(rt).where(_key_match(rt, DIMS, key)))
        conn.execute(insert(rt).from_select([*RECON_DIMS, *MEASURES], _recon_select(cond)))
        for rp, rdims in RECON_PROJECTIONS:
            base = tuple(d for d in rdims if d not in ("base_url", "klass"))
            pkey = tuple(key[DIMS.index(d)] for d in base)
            conn.execute(delete(rp).where(_key_match(rp, base, pkey)))
            conn.execute(
                insert(rp).from_select(
                    [*rdims, *MEASURES],
                    _recon_projection_select(rdims, _key_match(rt, base, pkey)),
                )
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
    caller's transaction, so readers see either the old or the new rollups;
    the gateway latency histograms of the same days are rebuilt too
    (`metis.ledger.latency_rollups.rebuild`).
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

    for table in (*(t for t, _ in TABLES), *RECON_TABLES):
        cond = roll_conds(table)
        conn.execute(delete(table).where(cond) if cond is not None else delete(table))
    raw_cond = and_(*conds_raw) if conds_raw else None
    conn.execute(
        insert(usage_rollups_daily).from_select([*DIMS, *MEASURES], _grouped_select(raw_cond))
    )
    conn.execute(
        insert(usage_rollups_reconcile).from_select(
            [*RECON_DIMS, *MEASURES], _recon_select(raw_cond)
        )
    )
    for rp, rdims in RECON_PROJECTIONS:
        conn.execute(
            insert(rp).from_select(
                [*rdims, *MEASURES],
                _recon_projection_select(rdims, roll_conds(usage_rollups_reconcile)),
            )
        )
    for table, dims in TABLES[1:]:
        conn.execute(
            insert(table).from_select(
                [*dims, *MEASURES], _project_select(table, dims, roll_conds(usage_rollups_daily))
            )
        )
    latency_rollups.rebuild(conn, start, end)
    q = select(func.count()).select_from(usage_rollups_daily)
    cond = roll_conds(usage_rollups_daily)
    if cond is not None:
        q = q.where(cond)
    return int(conn.execute(q).scalar() or 0)
