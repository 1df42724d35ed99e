"""Initial schema.

Pre-release: this first revision is edited in place until Metis 0.1.0 ships;
after that every schema change is a new revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 07:35:55.091240
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from metis.db.types import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("display_prefix", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_admin_tokens_secret_sha256")),
    )
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("team_id", sa.String(length=40), nullable=True),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=True),
        sa.Column("credential_id", sa.String(length=40), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    op.create_index("ix_events_key_ts", "events", ["gateway_key_id", "ts"], unique=False)
    op.create_index("ix_events_request_id", "events", ["request_id"], unique=False)
    op.create_index("ix_events_team_ts", "events", ["team_id", "ts"], unique=False)
    op.create_index("ix_events_ts", "events", ["ts"], unique=False)
    op.create_index("ix_events_type_ts", "events", ["type", "ts"], unique=False)
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts"], unique=False)
    op.create_index("ix_events_workspace_ts", "events", ["workspace_id", "ts"], unique=False)

    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("credential_id", sa.String(length=40), nullable=True),
        sa.Column("workspace_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=True),
        sa.Column("window_end", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_runs")),
    )
    op.create_index(
        op.f("ix_ingest_runs_credential_id"), "ingest_runs", ["credential_id"], unique=False
    )
    op.create_index(
        op.f("ix_ingest_runs_workspace_id"), "ingest_runs", ["workspace_id"], unique=False
    )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "spend_counters",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("scope_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("spent_nanousd", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanousd", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "scope_id", "period", name=op.f("pk_spend_counters")),
    )
    op.create_table(
        "sync_windows",
        sa.Column("credential_id", sa.String(length=40), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("credential_id", "window_start", name=op.f("pk_sync_windows")),
    )
    op.create_table(
        "sync_cursors",
        sa.Column("credential_id", sa.String(length=40), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("complete_through", UTCDateTime(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("credential_id", "stream", name=op.f("pk_sync_cursors")),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("daily_cap_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("monthly_cap_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("email_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("forgotten_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("alias", name=op.f("uq_users_alias")),
    )
    op.create_index(op.f("ix_users_email_sha256"), "users", ["email_sha256"], unique=False)

    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("display_prefix", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("team_id", sa.String(length=40), nullable=True),
        sa.Column("allowed_models", sa.JSON(), nullable=True),
        sa.Column("daily_cap_nanousd", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_gateway_keys_team_id_teams")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_gateway_keys_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_gateway_keys_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_keys")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_gateway_keys_secret_sha256")),
    )
    op.create_index(op.f("ix_gateway_keys_team_id"), "gateway_keys", ["team_id"], unique=False)
    op.create_index(op.f("ix_gateway_keys_user_id"), "gateway_keys", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_gateway_keys_workspace_id"), "gateway_keys", ["workspace_id"], unique=False
    )

    op.create_table(
        "ingest_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("display_prefix", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("via_gateway", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_ingest_tokens_workspace_id_workspaces"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ingest_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_ingest_tokens_secret_sha256")),
    )
    op.create_index(
        op.f("ix_ingest_tokens_workspace_id"), "ingest_tokens", ["workspace_id"], unique=False
    )

    op.create_table(
        "ingest_activity",
        sa.Column("token_id", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["ingest_tokens.id"],
            name=op.f("fk_ingest_activity_token_id_ingest_tokens"),
        ),
        sa.PrimaryKeyConstraint("token_id", "channel", name=op.f("pk_ingest_activity")),
    )

    op.create_table(
        "provider_credentials",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("purpose_inference", sa.Boolean(), nullable=False),
        sa.Column("purpose_usage_admin", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("project_id", sa.String(length=200), nullable=True),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("secret_ref", sa.Text(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("master_key_id", sa.String(length=64), nullable=True),
        sa.Column("last4", sa.String(length=8), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_provider_credentials_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_credentials")),
    )
    op.create_index(
        op.f("ix_provider_credentials_workspace_id"),
        "provider_credentials",
        ["workspace_id"],
        unique=False,
    )

    op.create_table(
        "usage_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=False),
        sa.Column("dedupe_key", sa.String(length=400), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_raw", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("input_audio_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_audio_tokens", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.Column("cost_source", sa.String(length=32), nullable=False),
        sa.Column("pricing_version", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("team_id", sa.String(length=40), nullable=True),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=True),
        sa.Column("provider_project_id", sa.String(length=200), nullable=True),
        sa.Column("provider_api_key_id", sa.String(length=200), nullable=True),
        sa.Column("provider_workspace_id", sa.String(length=200), nullable=True),
        sa.Column("service_tier", sa.String(length=64), nullable=True),
        sa.Column("batch", sa.Boolean(), nullable=True),
        sa.Column("correlation_id", sa.String(length=200), nullable=True),
        sa.Column("session_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("inbound_shape", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_usage_records_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
        sa.UniqueConstraint(
            "workspace_id",
            "source",
            "dedupe_key",
            name=op.f("uq_usage_records_workspace_id_source_dedupe_key"),
        ),
    )
    op.create_index(
        "ix_usage_records_correlation_id", "usage_records", ["correlation_id"], unique=False
    )
    op.create_index(
        "ix_usage_records_date_ws", "usage_records", ["usage_date", "workspace_id"], unique=False
    )
    op.create_index(
        "ix_usage_records_key_date", "usage_records", ["gateway_key_id", "usage_date"], unique=False
    )
    op.create_index(
        "ix_usage_records_source_date", "usage_records", ["source", "usage_date"], unique=False
    )
    op.create_index(
        "ix_usage_records_team_date", "usage_records", ["team_id", "usage_date"], unique=False
    )
    op.create_index(
        "ix_usage_records_user_date", "usage_records", ["user_id", "usage_date"], unique=False
    )
    op.create_index(
        "ix_usage_records_window_start", "usage_records", ["window_start"], unique=False
    )
    op.create_index(
        "ix_usage_records_ws_date_provider_model",
        "usage_records",
        ["workspace_id", "usage_date", "provider", "model"],
        unique=False,
    )

    op.create_table(
        "usage_rollups_daily",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "usage_date",
            "workspace_id",
            "source",
            "provider",
            "model",
            "user_id",
            "team_id",
            "gateway_key_id",
            name=op.f("pk_usage_rollups_daily"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_rollups_daily_model",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "usage_date",
            "workspace_id",
            "source",
            "provider",
            "model",
            name=op.f("pk_usage_rollups_daily_model"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_rollups_daily_identity",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "usage_date",
            "workspace_id",
            "source",
            "user_id",
            "team_id",
            "gateway_key_id",
            name=op.f("pk_usage_rollups_daily_identity"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_rollups_reconcile",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_key_id", sa.String(length=40), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("klass", sa.String(length=16), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "usage_date",
            "workspace_id",
            "source",
            "provider",
            "model",
            "user_id",
            "team_id",
            "gateway_key_id",
            "base_url",
            "klass",
            name=op.f("pk_usage_rollups_reconcile"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_rollups_reconcile_model",
        sa.Column("usage_date", sa.Date(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("klass", sa.String(length=16), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("request_count", sa.BigInteger(), nullable=False),
        sa.Column("error_count", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanousd", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "usage_date",
            "workspace_id",
            "source",
            "provider",
            "model",
            "base_url",
            "klass",
            name=op.f("pk_usage_rollups_reconcile_model"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_usage_rollups_daily_date_user",
        "usage_rollups_daily",
        ["usage_date", "user_id"],
        unique=False,
    )
    op.create_index(
        "ix_usage_rollups_daily_date_team",
        "usage_rollups_daily",
        ["usage_date", "team_id"],
        unique=False,
    )

    op.create_table(
        "config_versions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_config_versions")),
    )

    op.create_table(
        "alert_state",
        sa.Column("alert_key", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=True),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("scope_id", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("threshold", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=True),
        sa.Column("first_fired_at", UTCDateTime(), nullable=False),
        sa.Column("last_fired_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("alert_key", name=op.f("pk_alert_state")),
    )
    op.create_index("ix_alert_state_kind_status", "alert_state", ["kind", "status"], unique=False)
    op.create_table(
        "alert_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    op.create_index(
        "ix_alert_deliveries_status_next",
        "alert_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index("ix_alert_deliveries_event_id", "alert_deliveries", ["event_id"], unique=False)
    op.create_table(
        "prune_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ran_at", UTCDateTime(), nullable=False),
        sa.Column("cutoff_date", sa.Date(), nullable=False),
        sa.Column("include_audit", sa.Boolean(), nullable=False),
        sa.Column("deleted_records", sa.BigInteger(), nullable=False),
        sa.Column("deleted_events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prune_runs")),
    )


def downgrade() -> None:
    op.drop_table("prune_runs")
    op.drop_index("ix_alert_deliveries_event_id", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_status_next", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_state_kind_status", table_name="alert_state")
    op.drop_table("alert_state")
    op.drop_index("ix_usage_rollups_daily_date_team", table_name="usage_rollups_daily")
    op.drop_index("ix_usage_rollups_daily_date_user", table_name="usage_rollups_daily")
    op.drop_table("usage_rollups_daily")
    op.drop_table("usage_rollups_daily_model")
    op.drop_table("usage_rollups_reconcile")
    op.drop_table("usage_rollups_reconcile_model")
    op.drop_table("usage_rollups_daily_identity")
    op.drop_table("config_versions")

    op.drop_index("ix_usage_records_ws_date_provider_model", table_name="usage_records")
    op.drop_index("ix_usage_records_window_start", table_name="usage_records")
    op.drop_index("ix_usage_records_user_date", table_name="usage_records")
    op.drop_index("ix_usage_records_team_date", table_name="usage_records")
    op.drop_index("ix_usage_records_source_date", table_name="usage_records")
    op.drop_index("ix_usage_records_key_date", table_name="usage_records")
    op.drop_index("ix_usage_records_date_ws", table_name="usage_records")
    op.drop_index("ix_usage_records_correlation_id", table_name="usage_records")

    op.drop_table("usage_records")
    op.drop_index("ix_provider_credentials_workspace_id", table_name="provider_credentials")

    op.drop_table("provider_credentials")
    op.drop_table("ingest_activity")
    op.drop_index("ix_ingest_tokens_workspace_id", table_name="ingest_tokens")

    op.drop_table("ingest_tokens")
    op.drop_index("ix_gateway_keys_workspace_id", table_name="gateway_keys")
    op.drop_index("ix_gateway_keys_user_id", table_name="gateway_keys")
    op.drop_index("ix_gateway_keys_team_id", table_name="gateway_keys")

    op.drop_table("gateway_keys")
    op.drop_table("workspaces")
    op.drop_index("ix_users_email_sha256", table_name="users")

    op.drop_table("users")
    op.drop_table("teams")
    op.drop_table("sync_windows")
    op.drop_table("sync_cursors")
    op.drop_table("spend_counters")
    op.drop_table("leases")
    op.drop_index("ix_ingest_runs_workspace_id", table_name="ingest_runs")
    op.drop_index("ix_ingest_runs_credential_id", table_name="ingest_runs")

    op.drop_table("ingest_runs")
    op.drop_index("ix_events_workspace_ts", table_name="events")
    op.drop_index("ix_events_user_ts", table_name="events")
    op.drop_index("ix_events_type_ts", table_name="events")
    op.drop_index("ix_events_ts", table_name="events")
    op.drop_index("ix_events_team_ts", table_name="events")
    op.drop_index("ix_events_request_id", table_name="events")
    op.drop_index("ix_events_key_ts", table_name="events")

    op.drop_table("events")
    op.drop_table("admin_tokens")
