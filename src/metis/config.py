"""Settings, read from ``METIS_*`` environment variables.

Only environment variables (and their defaults) configure Metis; there is no
config file to drift from them. `get_settings()` re-reads the environment on
every call so tests and CLI invocations that change ``METIS_HOME`` see it.
A missing or malformed value raises `ConfigError` naming the variable.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metis.errors import ConfigError


class Settings(BaseSettings):
    """All of Metis's settings; each field is ``METIS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="METIS_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".metis")
    database_url: str | None = None
    master_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    cron_secret: SecretStr | None = None
    # `metis serve` refuses METIS_ADMIN_TOKEN / METIS_CRON_SECRET shorter than
    # MIN_SECRET_CHARS unless this is set (docs/security.md, Limits).
    allow_weak_secrets: bool = False
    # Failed-authentication throttling (metis.security.throttle): failures per
    # client address and per credential prefix per window; 0 turns it off.
    auth_fail_limit: int = Field(default=20, ge=0, le=1_000_000)
    auth_fail_prefix_limit: int = Field(default=50, ge=0, le=1_000_000)
    auth_fail_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Log lines: human (console) unless json is asked for (log shippers, journald).
    log_format: Literal["json", "console"] = "console"
    # Routing rules file (docs/routing.md); default $METIS_HOME/routing.yaml.
    routing_file: Path | None = None
    # CA bundle (PEM file or directory) that verifies the gateway's upstream TLS
    # instead of the system trust store (docs/gateway.md, Egress).
    upstream_ca_bundle: Path | None = None
    # Alerts (docs/alerts.md): sinks; more rules and overrides in $METIS_HOME/alerts.yaml.
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_slack_webhook_url: SecretStr | None = None
    # Retention (docs/alerts.md): days of raw per-request records and events to
    # keep; None keeps everything. Daily rollups are kept regardless.
    retention_days: int | None = Field(default=None, ge=1, le=73_049)  # timeutil.MAX_SPAN_DAYS
    # Database unavailable (docs/gateway.md): a hard cap that needs the database
    # refuses (closed, 503) or admits and counts later (open); the write-behind
    # buffer holds at most this many records + events, then new calls get 503.
    caps_on_db_error: Literal["closed", "open"] = "closed"
    write_buffer_max_items: int = Field(default=100_000, ge=1)
    # Where the gateway's write-behind flush runs (docs/gateway.md): a child
    # process (a flush never holds the event loop's GIL), a worker thread, or
    # auto = process under `metis serve`, thread in embedded/test servers.
    writer: Literal["auto", "process", "thread"] = "auto"
    # OTLP receiver (docs/ingest-otel.md "Limits"): the largest request body,
    # after gzip decompression (413 beyond), and how many requests it decodes
    # and stores at once (429 with Retry-After beyond).
    otel_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    otel_max_concurrency: int = Field(default=4, ge=1, le=64)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("upstream_ca_bundle", mode="before")
    @classmethod
    def _unset_if_empty(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("home", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @field_validator("database_url", mode="after")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return v

    @property
    def effective_routing_file(self) -> Path:
        """``METIS_ROUTING_FILE``, or ``$METIS_HOME/routing.yaml``."""
        return self.routing_file.expanduser() if self.routing_file else self.home / "routing.yaml"

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or SQLite at ``$METIS_HOME/metis.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'metis.db'}"


MIN_SECRET_CHARS = 32


def weak_secrets(settings: Settings) -> list[str]:
    """The secret settings shorter than `MIN_SECRET_CHARS` (names only, never values)."""
    out = []
    for name, value in (
        ("METIS_ADMIN_TOKEN", settings.admin_token),
        ("METIS_CRON_SECRET", settings.cron_secret),
    ):
        if value is not None and 0 < len(value.get_secret_value().strip()) < MIN_SECRET_CHARS:
            out.append(name)
    return out


def check_secret_strength(settings: Settings) -> None:
    """Refuse short admin/cron secrets (`ConfigError`) unless METIS_ALLOW_WEAK_SECRETS is set.

    Those two are compared as given (not 256-bit random like issued tokens), so
    a short one can be guessed; ``openssl rand -hex 32`` makes a good one.
    """
    weak = weak_secrets(settings)
    if weak and not settings.allow_weak_secrets:
        raise ConfigError(
            f"{' and '.join(weak)} {'is' if len(weak) == 1 else 'are'} shorter than "
            f"{MIN_SECRET_CHARS} characters: use a random secret (e.g. `openssl rand -hex 32`), "
            "or set METIS_ALLOW_WEAK_SECRETS=1 to run with it anyway"
        )


def get_settings() -> Settings:
    """Read settings from the environment; raise `ConfigError` on a bad value."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"METIS_{field.upper()} is invalid: {err['msg']}") from None
