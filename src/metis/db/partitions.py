"""PostgreSQL monthly partitions of ``usage_records`` and ``events`` (SQLite: none).

Layout (PostgreSQL only; the tables' columns, indexes and meaning are those of
`metis.db.tables` on both backends):

- ``usage_records`` is partitioned ``BY LIST (granularity)``:
  ``usage_records_request`` holds ``granularity = 'request'`` (gateway calls,
  per-request plugin rows: the rows retention deletes) and
  ``usage_records_agg`` (the DEFAULT list partition) every aggregate
  (provider buckets, sessions: rows retention keeps). Both are partitioned
  ``BY RANGE (usage_date)`` into calendar months, ``<parent>_pYYYYMM``, plus a
  ``<parent>_default`` partition. A month of request rows is therefore a table
  of its own, which retention drops whole.
- ``events`` is partitioned ``BY RANGE (ts)`` into UTC calendar months,
  ``events_pYYYYMM``, plus ``events_default``.

Every unique index of a partitioned table must contain the partition key, so
on PostgreSQL the primary keys are ``(id, usage_date, granularity)`` and
``(id, ts)``, the record identity index is ``(workspace_id, source,
dedupe_key, usage_date, granularity)`` and the event id index ``(event_id,
ts)``. Identity stays ``(workspace_id, source, dedupe_key)``:
`metis.ledger.upsert` serialises writers per (workspace, source) and moves a
revised record whose day or granularity changed onto its new partition key
before the upsert, so a record is always one row. ``id`` values come from
the same sequence as before the conversion.

A write never fails for want of a partition: a row whose month has none lands
in the DEFAULT partition; `ensure_partitions` creating that month later moves
those rows into the new partition (PostgreSQL refuses to create a partition
whose range the DEFAULT partition holds rows of).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

MONTHS_AHEAD = 3
"""Months after the current one the scheduler keeps created."""

LOCK_TIMEOUT = "5s"
"""How long partition DDL waits for its lock on a parent table before giving up.

Creating or dropping a partition locks the parent exclusively; waiting behind
a long query would queue every later read and write of the table behind the
DDL. Giving up is harmless: creation is retried by the next daily run (rows
land in DEFAULT meanwhile), and retention deletes row by row instead."""

RECORD_PARENTS = ("usage_records_request", "usage_records_agg")
EVENT_PARENT = "events"
# Range-partitioned parents and the column (and SQL type) their months split on.
MONTHLY: dict[str, tuple[str, str]] = {
    "usage_records_request": ("usage_date", "date"),
    "usage_records_agg": ("usage_date", "date"),
    "events": ("ts", "timestamptz"),
}
PARTITIONED_TABLES = ("usage_records", "events")


@dataclass(frozen=True)
class Partition:
    """One leaf partition: its parent, name and month (None: the DEFAULT partition)."""

    parent: str
    name: str
    month: date | None


def month_start(d: date) -> date:
    """The first day of ``d``'s month."""
    return date(d.year, d.month, 1)


def add_months(d: date, n: int) -> date:
    """The first day of the month ``n`` months after ``d``'s."""
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """First days of every month from ``first``'s to ``last``'s, inclusive."""
    out, m = [], month_start(first)
    while m <= last:
        out.append(m)
        m = add_months(m, 1)
    return out


def partition_name(parent: str, month: date) -> str:
    """``<parent>_pYYYYMM``."""
    return f"{parent}_p{month:%Y%m}"


def is_partition_name(name: str) -> bool:
    """Whether ``name`` is a partition of this layout (not a table of `metis.db.tables`)."""
    for parent in (*RECORD_PARENTS, EVENT_PARENT):
        rest = name.removeprefix(parent + "_")
        if rest != name and (rest == "default" or (rest[:1] == "p" and rest[1:].isdigit())):
            return True
    return name in RECORD_PARENTS


def is_partitioned(conn: Connection) -> bool:
    """Whether ``conn``'s database holds the partitioned layout (PostgreSQL after 0006)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass('usage_records')")
    ).scalar()
    return kind == "p"


def _bound(parent: str, month: date) -> str:
    col_type = MONTHLY[parent][1]
    if col_type == "date":
        return f"'{month.isoformat()}'"
    return f"'{datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()}'"


def _range(parent: str, month: date) -> tuple[str, str]:
    col = MONTHLY[parent][0]
    lo, hi = _bound(parent, month), _bound(parent, add_months(month, 1))
    return f"FROM ({lo}) TO ({hi})", f"{col} >= {lo} AND {col} < {hi}"


def list_partitions(conn: Connection) -> list[Partition]:
    """Every leaf partition of the monthly parents, by parent then month (DEFAULT last)."""
    if not is_partitioned(conn):
        return []
    rows = conn.execute(
        text(
            "SELECT p.relname, c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname IN ('usage_records_request', 'usage_records_agg', 'events') "
            "AND c.relkind = 'r'"
        )
    ).all()
    out = []
    for parent, name in rows:
        suffix = str(name).removeprefix(f"{parent}_p")
        month = date(int(suffix[:4]), int(suffix[4:6]), 1) if suffix.isdigit() else None
        out.append(Partition(str(parent), str(name), month))
    return sorted(out, key=lambda p: (p.parent, p.month is None, p.month or date.min))


def ensure_partitions(
    conn: Connection, first: date, through: date, parents: Sequence[str] = tuple(MONTHLY)
) -> list[str]:
    """Create ``parents``' monthly partitions from ``first``'s month to ``through``'s.

    Returns the names created; idempotent. Rows the DEFAULT partition holds
    for a month being created are moved into it in the same transaction (the
    partition is built as a plain table, filled from the DEFAULT partition,
    then attached). A no-op on SQLite or an unpartitioned database.
    """
    if not is_partitioned(conn):
        return []
    existing = {p.name for p in list_partitions(conn)}
    created = []
    for parent in parents:
        for month in months_between(first, through):
            name = partition_name(parent, month)
            if name in existing:
                continue
            _create_month(conn, parent, month, name)
            created.append(name)
    return created


def _create_month(conn: Connection, parent: str, month: date, name: str) -> None:
    """Create one month's partition, moving in the rows the DEFAULT partition holds for it."""
    bounds, cond = _range(parent, month)
    default = f"{parent}_default"
    # Names and bounds below are built here from constants and dates, never from input.
    has_strays = f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {cond})"  # noqa: S608
    if not conn.execute(text(has_strays)).scalar():
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF {parent} FOR VALUES {bounds}"))
        return
    like = f"LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
    move = f"WITH m AS (DELETE FROM {default} WHERE {cond} RETURNING *) INSERT INTO {name} SELECT * FROM m"  # noqa: S608, E501
    conn.execute(text(f"CREATE TABLE {name} ({like})"))
    conn.execute(text(move))
    conn.execute(text(f"ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES {bounds}"))


def ensure_ahead(conn: Connection, today: date, months: int = MONTHS_AHEAD) -> list[str]:
    """Create this month's partitions and the next ``months`` months' (the scheduler's job)."""
    return ensure_partitions(conn, today, add_months(today, months))


def whole_months_before(conn: Connection, parent: str, cutoff: date) -> list[Partition]:
    """``parent``'s monthly partitions that end on or before ``cutoff`` (every row older)."""
    return [
        p
        for p in list_partitions(conn)
        if p.parent == parent and p.month is not None and add_months(p.month, 1) <= cutoff
    ]


def count_rows(conn: Connection, name: str, where: str = "TRUE") -> int:
    """Rows of partition ``name`` matching the SQL condition ``where``."""
    return int(conn.execute(text(f"SELECT count(*) FROM {name} WHERE {where}")).scalar() or 0)  # noqa: S608


def drop_partition(conn: Connection, name: str) -> None:
    """Drop one leaf partition (and its rows) outright."""
    conn.execute(text(f"DROP TABLE {name}"))


# The identity constraints whose PostgreSQL form adds the partition key (see the module
# docstring): the only declared constraints the partitioned layout changes.
PARTITION_KEYED_CONSTRAINTS = {
    "uq_usage_records_workspace_id_source_dedupe_key": (
        "workspace_id", "source", "dedupe_key", "usage_date", "granularity",
    ),
    "uq_events_event_id": ("event_id", "ts"),
}  # fmt: skip


def schema_compare_filter(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """An Alembic ``include_object`` hook that leaves the partitioning out of schema comparison.

    On PostgreSQL the partitions (not tables of `metis.db.tables`) and the two
    constraints in `PARTITION_KEYED_CONSTRAINTS` are skipped; the constraints'
    PostgreSQL columns are checked by the partition tests instead. On SQLite
    nothing is skipped.
    """

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
        if dialect != "postgresql" or name is None:
            return True
        if type_ == "table":
            return not is_partition_name(name)
        if type_ == "unique_constraint":
            return name not in PARTITION_KEYED_CONSTRAINTS
        return True

    return include_object


_MAINTENANCE_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended('metis.partitions', 0))")


def maintain(engine: Engine, today: date, months: int = MONTHS_AHEAD) -> list[str]:
    """Create the partitions through ``months`` months after ``today``'s (scheduler, CLI).

    One transaction under an advisory lock, so several ``metis serve``
    processes running it at once create each partition once. Returns the
    names created; a no-op (empty list) on SQLite.
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.begin() as conn:
        conn.execute(_MAINTENANCE_LOCK)
        set_lock_timeout(conn)
        return ensure_ahead(conn, today, months)


def set_lock_timeout(conn: Connection) -> None:
    """Bound the lock waits of partition DDL in this transaction (`LOCK_TIMEOUT`)."""
    conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": LOCK_TIMEOUT})


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL giving up on a lock (SQLSTATE 55P03)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03"
