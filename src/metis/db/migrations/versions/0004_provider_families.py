"""Provider families (issue 21): a credential names its upstream's family, price source and options.

``family`` is the API family the gateway speaks to the upstream (``openai``,
``openai-compatible``, ``azure-openai``, ``anthropic``, ``gemini``,
``bedrock``); existing rows are OpenAI or Anthropic credentials, whose family
is their provider. ``price_provider`` is the genai-prices provider id that
prices the upstream's models (NULL: the family's default). ``options`` holds
the family's non-secret settings (Azure ``api_version`` and path style,
Bedrock ``region`` and access key id, ...).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("provider_credentials", sa.Column("family", sa.String(length=32), nullable=True))
    op.add_column(
        "provider_credentials", sa.Column("price_provider", sa.String(length=64), nullable=True)
    )
    op.add_column("provider_credentials", sa.Column("options", sa.JSON(), nullable=True))
    op.execute("UPDATE provider_credentials SET family = provider WHERE family IS NULL")


def downgrade() -> None:
    op.drop_column("provider_credentials", "options")
    op.drop_column("provider_credentials", "price_provider")
    op.drop_column("provider_credentials", "family")
