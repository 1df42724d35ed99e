"""Idempotent batch upsert of canonical records.

Keyed on (workspace_id, source, dedupe_key). A replay (same values) changes
nothing at all, not even ``updated_at`` or ``revision``; changed values
replace the stored ones and bump ``revision``. One dialect-specific
``INSERT … ON CONFLICT DO UPDATE … WHERE content differs … RETURNING`` per
chunk does this in a single round trip; rows the WHERE filters out return
nothing, which is how replays are counted.

The daily rollups (`metis.ledger.rollups`) are maintained here, in the same
transaction: before each chunk the stored versions of its keys are read (on
PostgreSQL ``FOR UPDATE``; on SQLite after taking the write lock), and for
every row the upsert returns (inserted or changed) the difference between its
new and old contribution is added to the rollup rows (and the gateway
latency histograms, `metis.ledger.latency_rollups`, move one call from the
old bucket to the new). Replays return nothing
and so touch no rollup (the new contribution is computed from the record
itself: a returned row holds exactly its values). Cost per chunk: one indexed
SELECT, the upsert, one upsert per rollup table (the histograms' included).

On PostgreSQL, whose ``usage_records`` is partitioned by month, the identity
is kept by record advisory locks and by moving a row whose day changes (see
`_lock_records` and `_move_partition_keys`, and docs/deployment.md).

The upsert is compiled once per dialect and executed with plain tuples at the
driver level (`metis.db.bulk`, the columns' own bind processors applied): it
is the gateway write-behind's hottest statement, and SQLAlchemy's per-row
parameter handling cost more than the database work.
"""

import hashlib
import operator
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite

from metis.db import bulk
from metis.db.tables import usage_records
from metis.ledger import latency_rollups, rollups
from metis.ledger.record import VALUE_COLUMNS, UsageRecord, content_sha256_of
from metis.timeutil import utcnow

_CONFLICT_COLS = ("workspace_id", "source", "dedupe_key")
_CHUNK = 500


@dataclass
class UpsertCounts:
    """What one upsert call did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: "UpsertCounts") -> "UpsertCounts":
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


# Column order of the upsert's VALUES (the table's order, which SQLAlchemy
# compiles to): the record's value columns, then bookkeeping.
_VALUE_ORDER = tuple(c.name for c in usage_records.c if c.name in VALUE_COLUMNS)
_COLUMNS = (*_VALUE_ORDER, "content_sha256", "ingested_at", "updated_at", "revision", "run_id")
_values_of = operator.itemgetter(*_VALUE_ORDER)


def _rows(
    records: Sequence[UsageRecord], values: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """One tuple per record in `_COLUMNS` order (``values``: the records' `value_dict`)."""
    now = utcnow()
    return [
        (*_values_of(v), content_sha256_of(v), now, now, 1, r.run_id)
        for r, v in zip(records, values, strict=True)
    ]


_compiled: "weakref.WeakKeyDictionary[Dialect, bulk.Compiled]" = weakref.WeakKeyDictionary()


def _upsert_statement(dialect: Dialect) -> bulk.Compiled:
    """The upsert, compiled once per dialect (VALUES repeated per row at execution)."""
    c = _compiled.get(dialect)
    if c is not None:
        return c
    ins: Any
    if dialect.name == "postgresql":
        ins = postgresql.insert(usage_records)
    elif dialect.name == "sqlite":
        ins = sqlite.insert(usage_records)
    else:  # pragma: no cover - only two backends are supported
        raise RuntimeError(f"unsupported database dialect {dialect.name}")
    excluded = ins.excluded
    update_cols: dict[str, Any] = {
        col: excluded[col]
        for col in _COLUMNS
        if col not in _CONFLICT_COLS and col not in ("ingested_at", "revision")
    }
    update_cols["revision"] = usage_records.c.revision + literal_column("1")
    stmt = ins.on_conflict_do_update(
        **_conflict_target(dialect.name),
        set_=update_cols,
        where=usage_records.c.content_sha256 != excluded.content_sha256,
    ).returning(*(usage_records.c[n] for n in _RETURNED))
    c = bulk.compile_insert(stmt, usage_records, _COLUMNS, dialect)
    _compiled[dialect] = c
    return c


def _waves(records: Iterable[UsageRecord]) -> list[list[UsageRecord]]:
    """Split into chunks where each key appears once, keeping order.

    PostgreSQL refuses to touch one row twice in a statement, and the order of
    revisions of one record must be kept (the last one wins).
    """
    waves: list[list[UsageRecord]] = []
    current: list[UsageRecord] = []
    seen: set[tuple[str, str, str]] = set()
    for r in records:
        k = (r.workspace_id, r.source, r.dedupe_key)
        if k in seen or len(current) >= _CHUNK:
            waves.append(current)
            current, seen = [], set()
        current.append(r)
        seen.add(k)
    if current:
        waves.append(current)
    return waves


def upsert_usage(conn: Connection, records: Iterable[UsageRecord]) -> UpsertCounts:
    """Upsert ``records`` on ``conn`` (inside the caller's transaction).

    Returns how many rows were inserted, updated (values changed, revision
    bumped) and unchanged (exact replays).
    """
    counts = UpsertCounts()
    compiled = _upsert_statement(conn.dialect)
    waves = _waves(records)
    pg = conn.dialect.name == "postgresql"
    if pg:
        _lock_records(conn, waves)
    for wave in waves:
        values = [r.value_dict() for r in wave]
        rows = compiled.process(_rows(wave, values))
        by_key = {
            (r.workspace_id, r.source, r.dedupe_key): v for r, v in zip(wave, values, strict=True)
        }
        placed: dict[tuple[str, str, str], tuple[Any, str]] | None = {} if pg else None
        old = _stored_contributions(conn, wave, placed)
        if placed:
            _move_partition_keys(conn, wave, placed)
        returned = conn.exec_driver_sql(*compiled.many(rows)).all()
        deltas: dict[rollups.Key, list[int]] = {}
        latency: dict[latency_rollups.LatencyKey, int] = {}
        raced: set[rollups.Key] = set()
        new = 0
        for ws, src, dk, revision in returned:
            if revision == 1:
                new += 1
            # The stored row now holds exactly this record's values.
            value = by_key[(ws, src, dk)]
            key, vec = rollups.contribution(value)
            rollups.add(deltas, key, vec, +1)
            latency_rollups.add(latency, latency_rollups.key_of(value), +1)
            prev = old.get((ws, src, dk))
            if prev is not None:
                rollups.add(deltas, prev[0], prev[1], -1)
                latency_rollups.add(latency, prev[2], -1)
            elif revision != 1:
                # Another writer inserted this key after our read: its old
                # values are unknown, so recompute the affected cell from raw rows.
                raced.add(key)
        rollups.apply_deltas(conn, deltas)
        latency_rollups.apply_deltas(conn, latency)
        if raced:
            rollups.recompute_cells(conn, raced)
            latency_rollups.recompute_cells(
                conn, {(k[0], k[1], k[3], k[4]) for k in raced if k[2] == rollups.GATEWAY_SOURCE}
            )
        counts.inserted += new
        counts.updated += len(returned) - new
        counts.unchanged += len(wave) - len(returned)
    return counts


_RETURNED = ("workspace_id", "source", "dedupe_key", "revision")
# A stored row's rollup contribution and latency histogram key.
_Stored = tuple[rollups.Key, list[int], latency_rollups.LatencyKey | None]


_WRITE_LOCK = text("UPDATE usage_rollups_daily SET record_count = record_count WHERE 0 = 1")
_STORED: dict[str, Any] = {}


def _stored_select(dialect: str) -> Any:
    """SELECT the rollup source columns of one (workspace, source)'s keys; built once."""
    q = _STORED.get(dialect)
    if q is None:
        c = usage_records.c
        cols = dict.fromkeys(
            (
                c.workspace_id,
                c.source,
                c.dedupe_key,
                c.granularity,
                *(c[n] for n in rollups.SOURCE_COLUMNS if n not in ("workspace_id", "source")),
                c.latency_ms,
            )
        )
        q = select(*cols).where(
            c.workspace_id == bindparam("ws"),
            c.source == bindparam("src"),
            c.dedupe_key.in_(bindparam("keys", expanding=True)),
        )
        if dialect == "postgresql":
            q = q.with_for_update()
        _STORED[dialect] = q
    return q


def begin_write(conn: Connection) -> None:
    """Make ``conn``'s transaction a write transaction now (SQLite: take the write lock).

    Call before ``conn.begin_nested()`` on SQLite: the driver begins its
    transaction lazily at the first write, and a SAVEPOINT opened before that
    would itself start (and its RELEASE commit) the transaction.
    """
    if conn.dialect.name == "sqlite":
        conn.execute(_WRITE_LOCK)


def _stored_contributions(
    conn: Connection,
    wave: list[UsageRecord],
    placed: dict[tuple[str, str, str], tuple[Any, str]] | None = None,
) -> dict[tuple[str, str, str], _Stored]:
    """The rollup contributions of the stored rows for ``wave``'s keys (locked for update).

    Each with the row's latency histogram key (`metis.ledger.latency_rollups.key_of`).
    With ``placed``, also fills it with each stored row's partition key
    (usage_date, granularity).
    """
    if conn.dialect.name == "sqlite":
        # Take SQLite's write lock before reading, so no other writer can change
        # these rows between this read and the upsert (and no snapshot upgrade fails).
        conn.execute(_WRITE_LOCK)
    by_scope: dict[tuple[str, str], list[str]] = {}
    for r in wave:
        by_scope.setdefault((r.workspace_id, r.source), []).append(r.dedupe_key)
    out: dict[tuple[str, str, str], _Stored] = {}
    q = _stored_select(conn.dialect.name)
    for (ws, src), keys in by_scope.items():
        for row in conn.execute(q, {"ws": ws, "src": src, "keys": keys}).mappings():
            k = (row["workspace_id"], row["source"], row["dedupe_key"])
            key, vec = rollups.contribution(row)
            out[k] = (key, vec, latency_rollups.key_of(row))
            if placed is not None:
                placed[k] = (row["usage_date"], row["granularity"])
    return out


# PostgreSQL's partitioned usage_records (`metis.db.partitions`): the identity
# (workspace_id, source, dedupe_key) cannot be a unique index of its own, since
# every unique index must contain the partition key (usage_date, granularity).
# The upsert's conflict target is the identity plus the partition key; two
# additions keep "one row per identity". Writers are serialised per record by
# transaction advisory locks taken before the pre-read, so no other writer
# inserts or moves a key between this writer's read and its upsert: a batch of
# up to KEY_LOCKS_MAX records takes its (workspace, source) locks shared and
# one exclusive lock per record (writers of different records run side by
# side), a larger batch takes its (workspace, source) locks exclusively (one
# lock instead of thousands). Locks are taken in one fixed order (scopes, then
# records, each sorted), so two upserts cannot deadlock on them. And a stored
# row whose partition key the new version changes is first moved to the new
# key (an UPDATE, which PostgreSQL turns into a move between partitions), so
# the upsert then finds it and updates it like any other revision.

KEY_LOCKS_MAX = 1000
IDENTITY_CONSTRAINT = "uq_usage_records_workspace_id_source_dedupe_key"
_TAKE_LOCKS = text(
    "SELECT count(CASE WHEN shared THEN pg_advisory_xact_lock_shared(k) "
    "ELSE pg_advisory_xact_lock(k) END) FROM "
    "(SELECT k, shared FROM unnest(CAST(:keys AS bigint[]), CAST(:shared AS boolean[])) "
    "WITH ORDINALITY AS t(k, shared, i) ORDER BY i) s"
)
_MOVE = text(
    "UPDATE usage_records SET usage_date = :new_date, granularity = :new_gran "
    "WHERE workspace_id = :ws AND source = :src AND dedupe_key = :dk "
    "AND usage_date = :old_date AND granularity = :old_gran"
)


def _conflict_target(dialect: str) -> dict[str, Any]:
    """The upsert's ON CONFLICT target.

    On PostgreSQL the identity constraint by name: the identity plus the
    partition key on the partitioned table, the identity alone on a database
    not migrated that far (the same name either way).
    """
    if dialect == "postgresql":
        return {"constraint": IDENTITY_CONSTRAINT}
    return {"index_elements": list(_CONFLICT_COLS)}


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for a (workspace, source) or a record."""
    digest = hashlib.blake2b("\0".join(("usage_records", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _lock_records(conn: Connection, waves: list[list[UsageRecord]]) -> None:
    """Take the advisory locks of every record of the batch (see above), in one fixed order."""
    records = [r for w in waves for r in w]
    if not records:
        return
    scopes = sorted({_lock_key(r.workspace_id, r.source) for r in records})
    per_record = len(records) <= KEY_LOCKS_MAX
    keys = (
        sorted({_lock_key(r.workspace_id, r.source, r.dedupe_key) for r in records})
        if per_record
        else []
    )
    shared = [per_record] * len(scopes) + [False] * len(keys)
    conn.execute(_TAKE_LOCKS, {"keys": scopes + keys, "shared": shared})


def _move_partition_keys(
    conn: Connection,
    wave: list[UsageRecord],
    placed: dict[tuple[str, str, str], tuple[Any, str]],
) -> None:
    """Move stored rows whose usage_date or granularity ``wave`` changes to the new values."""
    moves = []
    for r in wave:
        k = (r.workspace_id, r.source, r.dedupe_key)
        at = placed.get(k)
        if at is not None and at != (r.usage_date, r.granularity):
            moves.append(
                {"ws": k[0], "src": k[1], "dk": k[2], "old_date": at[0], "old_gran": at[1],
                 "new_date": r.usage_date, "new_gran": r.granularity}
            )  # fmt: skip
    if moves:
        conn.execute(_MOVE, moves)
