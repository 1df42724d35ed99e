"""Ingestion settings (``METIS_*`` environment variables).

- ``METIS_OPENAI_ADMIN_REQUESTS_PER_MINUTE`` / ``METIS_ANTHROPIC_ADMIN_REQUESTS_PER_MINUTE``:
  token bucket per provider (default 60).
- ``METIS_INGEST_MAX_ATTEMPTS`` (default 5), ``METIS_INGEST_RETRY_BASE_SECONDS`` (1),
  ``METIS_INGEST_RETRY_MAX_WAIT_SECONDS`` (60): retry policy; ``Retry-After`` wins over
  the backoff, capped at the max wait.
- ``METIS_INGEST_HTTP_TIMEOUT_SECONDS`` (30).
- ``METIS_INGEST_DEFAULT_DAYS`` (2): days a plain sync re-fetches (today and yesterday).
- ``METIS_INGEST_LEASE_SECONDS`` (900): how long a sync lease lives without renewal.
- ``METIS_INGEST_SCHEDULER`` (on): run the scheduler inside ``metis serve``;
  ``METIS_INGEST_DAILY_CRON`` ("0 1 * * *") and ``METIS_INGEST_HOURLY_CRON``
  ("5 * * * *", top-up of today) are crontab expressions in UTC.
"""

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METIS_", extra="ignore", frozen=True)

    openai_admin_requests_per_minute: int = Field(60, ge=1)
    anthropic_admin_requests_per_minute: int = Field(60, ge=1)
    ingest_max_attempts: int = Field(5, ge=1)
    ingest_retry_base_seconds: float = Field(1.0, ge=0)
    ingest_retry_max_wait_seconds: float = Field(60.0, ge=0)
    ingest_http_timeout_seconds: float = Field(30.0, gt=0)
    # The gateway's CA bundle setting, also used by provider sync (docs/gateway.md, Egress).
    upstream_ca_bundle: Path | None = None
    ingest_default_days: int = Field(2, ge=1, le=400)  # as `metis ingest sync --days`
    ingest_lease_seconds: int = Field(900, ge=5)
    ingest_scheduler: bool = True
    ingest_daily_cron: str = "0 1 * * *"
    ingest_hourly_cron: str = "5 * * * *"

    @field_validator("upstream_ca_bundle", mode="before")
    @classmethod
    def _unset_if_empty(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    def requests_per_minute(self, provider: str) -> int:
        if provider == "anthropic":
            return self.anthropic_admin_requests_per_minute
        return self.openai_admin_requests_per_minute

    @property
    def max_attempts(self) -> int:
        return self.ingest_max_attempts

    @property
    def retry_base_seconds(self) -> float:
        return self.ingest_retry_base_seconds

    @property
    def retry_max_wait_seconds(self) -> float:
        return self.ingest_retry_max_wait_seconds


def get_ingest_settings() -> IngestSettings:
    """Read the ingestion settings; a malformed value raises `metis.errors.ConfigError`."""
    from pydantic import ValidationError

    from metis.errors import ConfigError

    try:
        return IngestSettings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"METIS_{field.upper()} is invalid: {err['msg']}") from None
