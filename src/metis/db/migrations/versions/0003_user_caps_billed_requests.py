"""User hard caps; gateway records of unanswered calls count no billed request (issue 18).

- ``users.daily_cap_nanousd`` / ``users.monthly_cap_nanousd``: optional hard
  caps over all of a user's keys (``metis gateway user set-cap``).
- Gateway records of calls the upstream refused or never answered were
  stored with ``request_count = 1``, so reports counted them as calls and a
  provider's request count never reconciled with the gateway's. From now on
  they carry 0 (`metis.gateway.stamping.billed_requests`); this revision
  rewrites the records already stored that way (status an error other than
  ``client_disconnected``, no tokens) and takes the same count off the
  gateway rows of the three daily rollups, in the same transaction. The
  records' ``content_sha256`` is left as it was: gateway records are keyed
  by request id and never replayed after they are written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_ERRORS = ("ok", "success", "succeeded", "completed", "client_disconnected")
_UNBILLED = (
    "r.source = 'gateway' AND r.request_count = 1 AND r.status IS NOT NULL"
    " AND lower(r.status) NOT IN ({}) AND r.input_tokens = 0 AND r.output_tokens = 0"
).format(", ".join(f"'{s}'" for s in _NOT_ERRORS))
_ROLLUPS = {
    "usage_rollups_daily": (
        "usage_date", "workspace_id", "source", "provider", "model",
        "user_id", "team_id", "gateway_key_id",
    ),
    "usage_rollups_daily_model": ("usage_date", "workspace_id", "source", "provider", "model"),
    "usage_rollups_daily_identity": (
        "usage_date", "workspace_id", "source", "user_id", "team_id", "gateway_key_id",
    ),
}  # fmt: skip
_NULLABLE = ("user_id", "team_id", "gateway_key_id")  # '' in the rollups for "none"


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("daily_cap_nanousd", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("monthly_cap_nanousd", sa.BigInteger(), nullable=True))
    for table, dims in _ROLLUPS.items():
        match = " AND ".join(
            f"COALESCE(r.{d}, '') = t.{d}" if d in _NULLABLE else f"r.{d} = t.{d}" for d in dims
        )
        op.execute(
            f"UPDATE {table} AS t SET request_count = request_count - ("  # noqa: S608 - constants
            f"SELECT COUNT(*) FROM usage_records AS r WHERE {_UNBILLED} AND {match}"
            ") WHERE t.source = 'gateway'"
        )
    op.execute(f"UPDATE usage_records AS r SET request_count = 0 WHERE {_UNBILLED}")  # noqa: S608


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("monthly_cap_nanousd")
        batch.drop_column("daily_cap_nanousd")
