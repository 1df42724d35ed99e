"""Issue 23: the reconciliation rollup without provider/model, provider rows priced by Metis.

``usage_rollups_reconcile_identity``: groupings of the reconciled view by
user, team or key read the attributed plugin rows from it instead of the
full ``usage_rollups_reconcile`` (a few rows per identity and day instead of
one per identity, model and day). ``klass`` leads its key so those reads
touch only ``plugin`` rows. Filled here from ``usage_rollups_reconcile`` so
an upgraded install answers at once.

Provider rows whose cost the sync computed get their own class,
``provider_priced``, so the reconciled view's ``provider_cost_computed``
flags come from the rollups too (no raw rows read).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ("klass", "usage_date", "workspace_id", "source", "user_id", "team_id", "gateway_key_id",
        "base_url")  # fmt: skip
_MEASURES = (
    "record_count",
    "request_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "cost_nanousd",
)


def upgrade() -> None:
    op.create_table(
        "usage_rollups_reconcile_identity",
        sa.Column("klass", sa.String(length=16), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        *(sa.Column(m, sa.BigInteger(), nullable=False) for m in _MEASURES),
        sa.PrimaryKeyConstraint(*_KEY, name=op.f("pk_usage_rollups_reconcile_identity")),
        sqlite_with_rowid=False,
    )
    _reclassify_provider_rows()
    key = ", ".join(_KEY)
    sums = ", ".join(f"sum({m})" for m in _MEASURES)
    names = ", ".join(_MEASURES)
    op.execute(
        f"INSERT INTO usage_rollups_reconcile_identity ({key}, {names}) SELECT {key}, {sums} "  # noqa: S608
        f"FROM usage_rollups_reconcile GROUP BY {key}"
    )


_DIMS = ("usage_date", "workspace_id", "source", "provider", "model", "user_id", "team_id",
         "gateway_key_id")  # fmt: skip
_MODEL_DIMS = ("usage_date", "workspace_id", "source", "provider", "model", "base_url", "klass")
_ERROR = (
    "CASE WHEN status IS NOT NULL AND lower(status) NOT IN "
    "('ok', 'success', 'succeeded', 'completed') THEN 1 ELSE 0 END"
)


def _reclassify_provider_rows() -> None:
    """Provider rows whose cost the sync computed become class ``provider_priced``.

    Provider rows (hourly/daily buckets, never pruned) are regrouped from the
    raw records into both reconciliation rollups; a rollup row used to mix
    reported and computed costs under ``provider``.
    """
    op.execute("DELETE FROM usage_rollups_reconcile WHERE source = 'provider_api_key'")
    op.execute("DELETE FROM usage_rollups_reconcile_model WHERE source = 'provider_api_key'")
    dims = ", ".join(
        f"coalesce({d}, '')" if d in ("user_id", "team_id", "gateway_key_id") else d for d in _DIMS
    )
    klass = (
        "CASE WHEN cost_source = 'none' THEN 'provider_no_cost' "
        "WHEN cost_source = 'computed' THEN 'provider_priced' ELSE 'provider' END"
    )
    sums = f"count(*), coalesce(sum(request_count), 0), sum({_ERROR}), " + ", ".join(
        f"coalesce(sum({m}), 0)" for m in _MEASURES[3:]
    )
    names = ", ".join((*_DIMS, "base_url", "klass", *_MEASURES))
    op.execute(
        f"INSERT INTO usage_rollups_reconcile ({names}) SELECT {dims}, '', {klass}, {sums} "  # noqa: S608
        f"FROM usage_records WHERE source = 'provider_api_key' GROUP BY {dims}, {klass}"
    )
    model = ", ".join(_MODEL_DIMS)
    names = ", ".join(_MEASURES)
    model_sums = ", ".join(f"sum({m})" for m in _MEASURES)
    op.execute(
        f"INSERT INTO usage_rollups_reconcile_model ({model}, {names}) SELECT {model}, "  # noqa: S608
        f"{model_sums} FROM usage_rollups_reconcile WHERE source = 'provider_api_key' "
        f"GROUP BY {model}"
    )


def downgrade() -> None:
    op.drop_table("usage_rollups_reconcile_identity")
