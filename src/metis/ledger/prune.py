"""Retention: delete raw per-request records and events older than a window.

What goes, for UTC days before the cutoff (``today - retention_days``):

- ``usage_records`` of granularity ``request`` (gateway calls, per-request
  plugin rows). Provider buckets (``1m``/``1h``/``1d``) and session rows are
  aggregates and stay: they are small and the provider figures are what
  reconciliation of old days is built on.
- ``events`` older than the cutoff, except audit events (``gateway.*``)
  unless ``include_audit`` is given.
- delivered or failed ``alert_deliveries`` rows older than the cutoff.

What never goes:

- ``usage_rollups_daily`` (and the other rollups, the gateway latency
  histograms included): rows are deleted directly, not through
  `metis.ledger.upsert.upsert_usage`, so the daily rollups keep every pruned
  day and analytics over the pruned range give the same totals;
- days still inside the provider sync window (``sync_window_days``, the last
  two UTC days by default): the cutoff never moves past them, so a sync that
  revises those days still finds the gateway and plugin rows to reconcile
  against.

On PostgreSQL, whose request records and events are partitioned by month
(`metis.db.partitions`), a month wholly before the cutoff is dropped as a
partition: ``usage_records_request_pYYYYMM`` always (it holds only request
rows), ``events_pYYYYMM`` when everything in it may go (``include_audit``,
or it holds no audit event). Each is locked, counted and dropped in one
transaction, so the counts stay exact. The month that straddles the cutoff,
the DEFAULT partitions and events months that keep audit events are deleted
row by row as on SQLite.

Each run that deletes something is recorded in ``prune_runs``; the newest
cutoff is the "pruned before" watermark (`pruned_before`): rollups of
earlier days must not be rebuilt from raw records, which no longer hold them.
Deletes run in chunks so a large prune holds no long lock.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine, Table, delete, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from metis.db import partitions
from metis.db.tables import alert_deliveries, events, prune_runs, usage_records
from metis.errors import ValidationError
from metis.timeutil import day_start, utcnow

AUDIT_PREFIX = "gateway."
RAW_GRANULARITY = "request"
CHUNK = 5000
DEFAULT_SYNC_WINDOW_DAYS = 2


@dataclass(frozen=True)
class PruneResult:
    """What a prune deleted (or, with ``dry_run``, would delete)."""

    cutoff: date
    records: int
    events: int
    audit_events: int
    deliveries: int
    dry_run: bool
    include_audit: bool


def cutoff_date(today: date, retention_days: int, sync_window_days: int) -> date:
    """First UTC day that is kept: ``today - retention_days``, never inside the sync window."""
    if retention_days < 1:
        raise ValidationError("retention days must be at least 1")
    window_start = today - timedelta(days=max(sync_window_days, 1) - 1)
    return min(today - timedelta(days=retention_days), window_start)


def _record_cond(cutoff: date) -> ColumnElement[bool]:
    r = usage_records.c
    return (r.usage_date < cutoff) & (r.granularity == RAW_GRANULARITY)


def _event_cond(cutoff: date, include_audit: bool) -> ColumnElement[bool]:
    cond = events.c.ts < day_start(cutoff)
    if not include_audit:
        cond = cond & ~events.c.type.startswith(AUDIT_PREFIX)
    return cond


def _count(conn: Connection, cond: ColumnElement[bool], table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(cond)).scalar() or 0)


def _delete_chunked(engine: Engine, table: Table, cond: ColumnElement[bool]) -> int:
    idcol = table.c.id
    total = 0
    while True:
        with engine.begin() as conn:
            ids = [i for (i,) in conn.execute(select(idcol).where(cond).limit(CHUNK))]
            if not ids:
                return total
            conn.execute(delete(table).where(idcol.in_(ids) & cond))
            total += len(ids)


def _drop_whole_months(engine: Engine, cutoff: date, include_audit: bool) -> tuple[int, int]:
    """PostgreSQL: drop the month partitions wholly before ``cutoff`` that may go entirely.

    Returns the (records, events) rows dropped; (0, 0) on SQLite.
    """
    with engine.connect() as conn:
        if not partitions.is_partitioned(conn):
            return 0, 0
        rec_parts = partitions.whole_months_before(conn, "usage_records_request", cutoff)
        ev_parts = partitions.whole_months_before(conn, partitions.EVENT_PARENT, cutoff)
    audit = f"type LIKE '{AUDIT_PREFIX}%'"
    n_rec = n_ev = 0
    for part, is_events in [(p, False) for p in rec_parts] + [(p, True) for p in ev_parts]:
        try:
            with engine.begin() as conn:
                partitions.set_lock_timeout(conn)
                # Locked first: no row can arrive between the count and the drop.
                conn.execute(text(f"LOCK TABLE {part.name} IN ACCESS EXCLUSIVE MODE"))
                if (
                    is_events
                    and not include_audit
                    and partitions.count_rows(conn, part.name, audit)
                ):
                    continue  # keeps audit events: its other rows go row by row
                n = partitions.count_rows(conn, part.name)
                partitions.drop_partition(conn, part.name)
        except OperationalError as exc:
            if not partitions.is_lock_timeout(exc):
                raise
            continue  # busy: its rows go row by row below, and the partition at the next run
        if is_events:
            n_ev += n
        else:
            n_rec += n
    return n_rec, n_ev


def prune(
    engine: Engine,
    *,
    retention_days: int,
    sync_window_days: int = DEFAULT_SYNC_WINDOW_DAYS,
    include_audit: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete (or count, with ``dry_run``) what is older than the retention window."""
    today = (now or utcnow()).date()
    cutoff = cutoff_date(today, retention_days, sync_window_days)
    rec_cond = _record_cond(cutoff)
    ev_cond = _event_cond(cutoff, include_audit)
    audit_cond = (events.c.ts < day_start(cutoff)) & events.c.type.startswith(AUDIT_PREFIX)
    d = alert_deliveries.c
    del_cond = (d.created_at < day_start(cutoff)) & d.status.in_(("delivered", "failed"))
    with engine.connect() as conn:
        audit = _count(conn, audit_cond, events) if include_audit else 0
        if dry_run:
            return PruneResult(
                cutoff=cutoff,
                records=_count(conn, rec_cond, usage_records),
                events=_count(conn, ev_cond, events),
                audit_events=audit,
                deliveries=_count(conn, del_cond, alert_deliveries),
                dry_run=True,
                include_audit=include_audit,
            )
    n_rec, n_ev = _drop_whole_months(engine, cutoff, include_audit)
    n_rec += _delete_chunked(engine, usage_records, rec_cond)
    n_ev += _delete_chunked(engine, events, ev_cond)
    n_del = _delete_chunked(engine, alert_deliveries, del_cond)
    if n_rec or n_ev or n_del:
        with engine.begin() as conn:
            conn.execute(
                prune_runs.insert().values(
                    ran_at=utcnow(),
                    cutoff_date=cutoff,
                    include_audit=include_audit,
                    deleted_records=n_rec,
                    deleted_events=n_ev,
                )
            )
    return PruneResult(
        cutoff=cutoff,
        records=n_rec,
        events=n_ev,
        audit_events=audit,
        deliveries=n_del,
        dry_run=False,
        include_audit=include_audit,
    )


def pruned_before(conn: Connection) -> date | None:
    """The newest prune cutoff: raw per-request rows of earlier days may be gone."""
    v = conn.execute(select(func.max(prune_runs.c.cutoff_date))).scalar()
    return v if isinstance(v, date) else None
