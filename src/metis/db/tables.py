"""The schema, as SQLAlchemy Core tables.

This module is the single definition of the schema; the Alembic history in
``migrations/`` must produce exactly it (a test compares them). Money columns
are integer nano-USD (``*_nanousd``); times are `UTCDateTime`; every column an
analytics query filters or groups on is a typed, indexed column, and JSON holds
only the opaque remainder.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from metis.db.types import BigIntPK, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

ID = String(40)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("path", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("alias", String(200), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    # PII: lives only here, never in events, logs or exports (unless asked for).
    Column("email", Text, nullable=True),
    Column("email_sha256", String(64), nullable=True, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("forgotten_at", UTCDateTime, nullable=True),
    # Optional hard caps (nano-USD) over all the user's keys: UTC day / calendar month.
    Column("daily_cap_nanousd", BigInteger, nullable=True),
    Column("monthly_cap_nanousd", BigInteger, nullable=True),
)

teams = Table(
    "teams",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("daily_cap_nanousd", BigInteger, nullable=True),
    Column("monthly_cap_nanousd", BigInteger, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("display_prefix", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=True, index=True),
    Column("team_id", ID, ForeignKey("teams.id"), nullable=True, index=True),
    Column("allowed_models", JSON, nullable=True),
    Column("daily_cap_nanousd", BigInteger, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoke_reason", Text, nullable=True),
)

provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("provider", String(40), nullable=False),
    Column("purpose_inference", Boolean, nullable=False, default=False),
    Column("purpose_usage_admin", Boolean, nullable=False, default=False),
    Column("mode", String(20), nullable=False),
    Column("org_id", String(200), nullable=True),
    Column("project_id", String(200), nullable=True),
    Column("base_url", Text, nullable=True),
    # The upstream's API family (metis.gateway.upstreams); NULL on rows older than
    # migration 0004 means the provider's own family (openai / anthropic).
    Column("family", String(32), nullable=True),
    # genai-prices provider id pricing its models; NULL: the family's default.
    Column("price_provider", String(64), nullable=True),
    # The family's non-secret settings (Azure api_version, Bedrock region, ...).
    Column("options", JSON, nullable=True),
    # Either a reference (env:NAME / file:PATH) or an AES-256-GCM ciphertext.
    Column("secret_ref", Text, nullable=True),
    Column("ciphertext", LargeBinary, nullable=True),
    Column("nonce", LargeBinary, nullable=True),
    Column("master_key_id", String(64), nullable=True),
    Column("last4", String(8), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
)

ingest_tokens = Table(
    "ingest_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("source", String(64), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("display_prefix", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # "This agent goes through the gateway": items pushed with the token that
    # name no base URL are its own gateway traffic (docs/ingest-otel.md).
    Column("via_gateway", Boolean, nullable=False, default=False),
    # The developer whose agent holds the token: items whose own identity does
    # not resolve to a Metis user are attributed to this one.
    Column("user_id", ID, ForeignKey("users.id"), nullable=True),
)

# What each ingest token last sent, per channel (``push`` for /v1/ingest/usage,
# ``otel_logs`` / ``otel_traces`` / ``otel_metrics`` for the OTLP receiver):
# the ingestion page's "last data seen". Counters only, never payloads.
ingest_activity = Table(
    "ingest_activity",
    metadata,
    Column("token_id", ID, ForeignKey("ingest_tokens.id"), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("records", BigInteger, nullable=False, default=0),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("display_prefix", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# Dashboard sessions (metis.web.session): server-side, so logout and token
# revocation end them on every process. The cookie holds a random secret;
# only its SHA-256 is stored.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("token_id", ID, nullable=False, index=True),
    Column("token_fp", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime, nullable=True),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("source", String(64), nullable=False),
    Column("source_ref", String(200), nullable=False),
    Column("dedupe_key", String(400), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    # UTC day of window_start: the reconciliation cell's day and the rollup key.
    Column("usage_date", Date, nullable=False),
    Column("granularity", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("model_raw", String(200), nullable=False),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("input_audio_tokens", BigInteger, nullable=False, default=0),
    Column("output_audio_tokens", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    Column("cost_source", String(32), nullable=False),
    Column("pricing_version", String(64), nullable=True),
    Column("user_id", ID, nullable=True),
    Column("team_id", ID, nullable=True),
    Column("gateway_key_id", ID, nullable=True),
    Column("provider_project_id", String(200), nullable=True),
    Column("provider_api_key_id", String(200), nullable=True),
    Column("provider_workspace_id", String(200), nullable=True),
    Column("service_tier", String(64), nullable=True),
    Column("batch", Boolean, nullable=True),
    Column("correlation_id", String(200), nullable=True),
    Column("session_id", String(200), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("inbound_shape", String(16), nullable=True),
    Column("status", String(32), nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("base_url", Text, nullable=True),
    Column("metadata", JSON, nullable=True),
    # Hash of every value column: an upsert whose hash matches is a replay.
    Column("content_sha256", String(64), nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("revision", Integer, nullable=False, default=1),
    Column("run_id", String(40), nullable=True),
    UniqueConstraint("workspace_id", "source", "dedupe_key"),
    Index("ix_usage_records_date_ws", "usage_date", "workspace_id"),
    Index(
        "ix_usage_records_ws_date_provider_model", "workspace_id", "usage_date", "provider", "model"
    ),
    Index("ix_usage_records_window_start", "window_start"),
    Index("ix_usage_records_user_date", "user_id", "usage_date"),
    Index("ix_usage_records_team_date", "team_id", "usage_date"),
    Index("ix_usage_records_key_date", "gateway_key_id", "usage_date"),
    Index("ix_usage_records_source_date", "source", "usage_date"),
    Index("ix_usage_records_correlation_id", "correlation_id"),
)

# Daily rollup of usage_records, maintained incrementally by
# `metis.ledger.upsert.upsert_usage` (deltas old->new) and rebuildable with
# `metis db rebuild-rollups` (`metis.analytics.rollups`). Dimension columns
# use '' for "none" (NULL would make the key non-unique on PostgreSQL).
usage_rollups_daily = Table(
    "usage_rollups_daily",
    metadata,
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("team_id", ID, primary_key=True),
    Column("gateway_key_id", ID, primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    Index("ix_usage_rollups_daily_date_user", "usage_date", "user_id"),
    Index("ix_usage_rollups_daily_date_team", "usage_date", "team_id"),
    sqlite_with_rowid=False,
)

# Narrower projections of the same rollup, maintained alongside it: queries
# that need no identity dimension read the model rollup, queries that need no
# model read the identity rollup (a few thousand / tens of thousands of rows
# for 90 days instead of hundreds of thousands).
usage_rollups_daily_model = Table(
    "usage_rollups_daily_model",
    metadata,
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)

usage_rollups_daily_identity = Table(
    "usage_rollups_daily_identity",
    metadata,
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("team_id", ID, primary_key=True),
    Column("gateway_key_id", ID, primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)

# The classification the reconciled view needs (`metis.ledger.reconcile`), kept
# per rollup row for every row that is not a gateway row (gateway rows come
# from the rollups above): ``klass`` is ``provider`` / ``provider_no_cost`` /
# ``provider_priced`` (provider rows; the second reported no money, the
# third's cost the sync computed before the cost report covered it) or, for plugin sources,
# ``plugin`` / ``duplicate`` (a gateway row of the workspace has the same
# correlation id). ``base_url`` stays a dimension because which URLs are this
# gateway's is configuration read at query time. Maintained with the rollups
# by `metis.ledger.rollups.apply_deltas`; rebuilt by `metis db rebuild-rollups`.
usage_rollups_reconcile = Table(
    "usage_rollups_reconcile",
    metadata,
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("team_id", ID, primary_key=True),
    Column("gateway_key_id", ID, primary_key=True),
    Column("base_url", Text, primary_key=True),
    Column("klass", String(16), primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)

# `usage_rollups_reconcile` without user/team/key: what per-cell reconciliation
# and groupings without an identity dimension read (a few rows per cell).
usage_rollups_reconcile_model = Table(
    "usage_rollups_reconcile_model",
    metadata,
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("base_url", Text, primary_key=True),
    Column("klass", String(16), primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)

# `usage_rollups_reconcile` without provider/model: what groupings by user, team
# or key read for the attributed plugin rows (`metis.ledger.reconcile.standing_rows`).
# ``klass`` leads the key: those reads want only ``plugin`` rows of a date range.
usage_rollups_reconcile_identity = Table(
    "usage_rollups_reconcile_identity",
    metadata,
    Column("klass", String(16), primary_key=True),
    Column("usage_date", Date, primary_key=True),
    Column("workspace_id", ID, primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("user_id", ID, primary_key=True),
    Column("team_id", ID, primary_key=True),
    Column("gateway_key_id", ID, primary_key=True),
    Column("base_url", Text, primary_key=True),
    Column("record_count", BigInteger, nullable=False, default=0),
    Column("request_count", BigInteger, nullable=False, default=0),
    Column("error_count", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cached_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("cost_nanousd", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)

events = Table(
    "events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("workspace_id", ID, nullable=True),
    Column("user_id", ID, nullable=True),
    Column("team_id", ID, nullable=True),
    Column("gateway_key_id", ID, nullable=True),
    Column("credential_id", ID, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("payload", JSON, nullable=False),
    Index("ix_events_type_ts", "type", "ts"),
    Index("ix_events_ts", "ts"),
    Index("ix_events_workspace_ts", "workspace_id", "ts"),
    Index("ix_events_user_ts", "user_id", "ts"),
    Index("ix_events_team_ts", "team_id", "ts"),
    Index("ix_events_key_ts", "gateway_key_id", "ts"),
    Index("ix_events_request_id", "request_id"),
)

spend_counters = Table(
    "spend_counters",
    metadata,
    # scope: key_daily | user_daily | team_daily | team_monthly
    Column("scope", String(32), primary_key=True),
    Column("scope_id", ID, primary_key=True),
    # period: YYYY-MM-DD for daily scopes, YYYY-MM for monthly.
    Column("period", String(10), primary_key=True),
    Column("spent_nanousd", BigInteger, nullable=False, default=0),
    # Cap budget leased to gateway processes and not yet spent (metis.ledger.counters).
    Column("reserved_nanousd", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("credential_id", ID, nullable=True, index=True),
    Column("workspace_id", ID, nullable=True, index=True),
    Column("kind", String(32), nullable=False),
    Column("window_start", UTCDateTime, nullable=True),
    Column("window_end", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("status", String(32), nullable=False),
    Column("pages", Integer, nullable=False, default=0),
    Column("stored", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    Column("error_message", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("details", JSON, nullable=True),
)

sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("credential_id", ID, primary_key=True),
    Column("stream", String(64), primary_key=True),
    # End (exclusive) of the last window committed completely.
    Column("complete_through", UTCDateTime, nullable=True),
    Column("last_success_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per provider-sync day window committed completely (all pages of
# every stream): backfill resumes by skipping settled windows listed here.
sync_windows = Table(
    "sync_windows",
    metadata,
    Column("credential_id", ID, primary_key=True),
    Column("window_start", UTCDateTime, primary_key=True),
    Column("window_end", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=False),
    Column("run_id", ID, nullable=True),
    Column("records", Integer, nullable=False, default=0),
)

# Monotonic version per configuration area (e.g. "identity"); writers bump it
# in the same transaction as their change, and every gateway process polls
# it to invalidate its in-memory caches within a second.
config_versions = Table(
    "config_versions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Alerts (issue 12): one row per alert condition instance. The primary key is
# the dedupe key (kind, scope, scope id, period, threshold), so "fire once per
# crossing and period" is an INSERT that only one writer (of any replica) wins;
# conditions that can recover (sync failing/stale) flip `status` back to
# "resolved" with a conditional UPDATE.
alert_state = Table(
    "alert_state",
    metadata,
    Column("alert_key", String(400), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("workspace_id", ID, nullable=True),
    Column("scope", String(64), nullable=False),
    Column("scope_id", String(200), nullable=False),
    Column("period", String(40), nullable=False),
    Column("threshold", String(40), nullable=False),
    # firing | resolved
    Column("status", String(16), nullable=False),
    Column("value", String(64), nullable=True),
    Column("first_fired_at", UTCDateTime, nullable=False),
    Column("last_fired_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("event_id", String(40), nullable=True),
    Index("ix_alert_state_kind_status", "kind", "status"),
)

# Outbox of alert deliveries to sinks (webhook, slack); the delivery worker
# sends rows whose `next_attempt_at` has come, with retries and backoff.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    # pending | delivered | failed (gave up after the last attempt)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index("ix_alert_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_alert_deliveries_event_id", "event_id"),
)

# Retention: one row per `metis db prune` run that deleted something. The
# newest `cutoff_date` is the "pruned before" watermark: raw per-request rows
# of earlier days are gone, so rollups of those days must not be rebuilt from
# raw records.
prune_runs = Table(
    "prune_runs",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("ran_at", UTCDateTime, nullable=False),
    Column("cutoff_date", Date, nullable=False),
    Column("include_audit", Boolean, nullable=False, default=False),
    Column("deleted_records", BigInteger, nullable=False, default=0),
    Column("deleted_events", BigInteger, nullable=False, default=0),
)

# Daily latency histograms of gateway calls (`metis.ledger.latency_rollups`):
# per (day, workspace, provider, model) and log-scale latency bucket, how many
# calls. Maintained by `metis.ledger.upsert.upsert_usage`, rebuilt by `metis db
# rebuild-rollups`; read by `/analytics/reliability` for latency percentiles.
# Key order (workspace, provider, model, bucket, day): a window's sums per
# model and bucket are one ordered pass (measured in the module's docstring).
usage_rollups_latency = Table(
    "usage_rollups_latency",
    metadata,
    Column("workspace_id", ID, primary_key=True),
    Column("provider", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("bucket", SmallInteger, primary_key=True, autoincrement=False),
    Column("usage_date", Date, primary_key=True),
    Column("call_count", BigInteger, nullable=False, default=0),
    sqlite_with_rowid=False,
)
