"""Daily latency histograms of gateway calls (issue 23): ``usage_rollups_latency``.

`/analytics/reliability` reads latency percentiles from these histograms
(`metis.ledger.latency_rollups`) instead of the raw records. The table is
filled here from the gateway records already stored, so an upgraded install
answers at once; the write path keeps it current from then on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_rollups_latency",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("call_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id",
            "provider",
            "model",
            "bucket",
            "usage_date",
            name=op.f("pk_usage_rollups_latency"),
        ),
        sqlite_with_rowid=False,
    )
    # The bucket bounds are exact integers defined in one place; the fill uses them.
    from metis.ledger.latency_rollups import rebuild

    rebuild(op.get_bind(), None, None)


def downgrade() -> None:
    op.drop_table("usage_rollups_latency")
