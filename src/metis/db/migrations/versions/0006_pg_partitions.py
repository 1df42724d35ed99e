"""PostgreSQL: ``usage_records`` and ``events`` partitioned by month (issue 23).

On PostgreSQL each table is rebuilt as a partitioned table (layout in
`metis.db.partitions`): the old table is renamed, the partitioned one created
with the same columns and defaults, monthly partitions created for every
month the data holds plus the current month and `MONTHS_AHEAD` more, the rows
copied, the ``id`` sequence handed to the new table (ids keep going), the old
table dropped and the constraints and indexes created on the new one. It runs
in the migration's transaction: it either completes or leaves the old tables.
On SQLite it does nothing. The downgrade rebuilds the plain tables the same
way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence
from datetime import date

from alembic import op
from sqlalchemy import Connection, text

from metis.db import partitions
from metis.timeutil import utcnow

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, PRIMARY KEY, identity UNIQUE constraint, FOREIGN KEYs), partitioned vs plain.
_KEYS = {
    "usage_records": (
        ("id", "usage_date", "granularity"),
        ("uq_usage_records_workspace_id_source_dedupe_key",
         ("workspace_id", "source", "dedupe_key", "usage_date", "granularity")),
        ("id",),
        ("workspace_id", "source", "dedupe_key"),
    ),
    "events": (
        ("id", "ts"),
        ("uq_events_event_id", ("event_id", "ts")),
        ("id",),
        ("event_id",),
    ),
}  # fmt: skip
_FKS = {
    "usage_records": [
        "ALTER TABLE usage_records ADD CONSTRAINT fk_usage_records_workspace_id_workspaces "
        "FOREIGN KEY (workspace_id) REFERENCES workspaces (id)"
    ],
    "events": [],
}
# The secondary indexes as of this revision (spelled out: a later revision's index
# must not be created here).
_INDEXES = {
    "usage_records": {
        "ix_usage_records_correlation_id": ("correlation_id",),
        "ix_usage_records_date_ws": ("usage_date", "workspace_id"),
        "ix_usage_records_key_date": ("gateway_key_id", "usage_date"),
        "ix_usage_records_source_date": ("source", "usage_date"),
        "ix_usage_records_team_date": ("team_id", "usage_date"),
        "ix_usage_records_user_date": ("user_id", "usage_date"),
        "ix_usage_records_window_start": ("window_start",),
        "ix_usage_records_ws_date_provider_model": (
            "workspace_id", "usage_date", "provider", "model",
        ),
    },
    "events": {
        "ix_events_key_ts": ("gateway_key_id", "ts"),
        "ix_events_request_id": ("request_id",),
        "ix_events_team_ts": ("team_id", "ts"),
        "ix_events_ts": ("ts",),
        "ix_events_type_ts": ("type", "ts"),
        "ix_events_user_ts": ("user_id", "ts"),
        "ix_events_workspace_ts": ("workspace_id", "ts"),
    },
}  # fmt: skip
_PARTITION_BY = {"usage_records": "LIST (granularity)", "events": "RANGE (ts)"}
_MONTH_OF = {
    "usage_records": "SELECT DISTINCT date_trunc('month', usage_date)::date FROM {t}",
    "events": "SELECT DISTINCT (date_trunc('month', ts AT TIME ZONE 'UTC'))::date FROM {t}",
}


def _rebuild(conn: Connection, table: str, partitioned: bool) -> None:
    """Rebuild ``table`` as a partitioned (or, for the downgrade, plain) table, rows kept."""
    pk_part, (uq_name, uq_part), pk_plain, uq_plain = _KEYS[table]
    old = f"{table}_pre0006"
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    # Free the constraint and index names for the new table.
    conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT pk_{table}"))
    conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT {uq_name}"))
    for fk in _FKS[table]:
        conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT {fk.split()[5]}"))
    for ix in _INDEXES[table]:
        conn.execute(text(f"DROP INDEX {ix}"))
    tail = f" PARTITION BY {_PARTITION_BY[table]}" if partitioned else ""
    conn.execute(text(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){tail}"))
    if partitioned:
        if table == "usage_records":
            conn.execute(
                text(
                    "CREATE TABLE usage_records_request PARTITION OF usage_records "
                    "FOR VALUES IN ('request') PARTITION BY RANGE (usage_date)"
                )
            )
            conn.execute(
                text(
                    "CREATE TABLE usage_records_agg PARTITION OF usage_records DEFAULT "
                    "PARTITION BY RANGE (usage_date)"
                )
            )
            parents = list(partitions.RECORD_PARENTS)
        else:
            parents = [partitions.EVENT_PARENT]
        for parent in parents:
            conn.execute(text(f"CREATE TABLE {parent}_default PARTITION OF {parent} DEFAULT"))
        months = sorted(m for (m,) in conn.execute(text(_MONTH_OF[table].format(t=old))))
        today = utcnow().date()
        wanted = set(months) | set(
            partitions.months_between(today, partitions.add_months(today, partitions.MONTHS_AHEAD))
        )
        for m in sorted(wanted):
            assert isinstance(m, date)
            partitions.ensure_partitions(conn, m, m, parents)
    conn.execute(text(f"INSERT INTO {table} SELECT * FROM {old}"))  # noqa: S608 - constant names
    conn.execute(text(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id"))
    conn.execute(text(f"DROP TABLE {old}"))
    pk, uq = (pk_part, uq_part) if partitioned else (pk_plain, uq_plain)
    conn.execute(
        text(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(pk)})")
    )
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {uq_name} UNIQUE ({', '.join(uq)})"))
    for fk in _FKS[table]:
        conn.execute(text(fk))
    for ix, cols in _INDEXES[table].items():
        conn.execute(text(f"CREATE INDEX {ix} ON {table} ({', '.join(cols)})"))
    conn.execute(text(f"ANALYZE {table}"))


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or partitions.is_partitioned(conn):
        return
    for table in partitions.PARTITIONED_TABLES:
        _rebuild(conn, table, partitioned=True)


def downgrade() -> None:
    conn = op.get_bind()
    if not partitions.is_partitioned(conn):
        return
    for table in partitions.PARTITIONED_TABLES:
        _rebuild(conn, table, partitioned=False)
