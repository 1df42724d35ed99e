"""Alert rules and sink configuration: defaults, ``alerts.yaml``, environment.

Configuration comes from two places (see ``docs/alerts.md``):

- environment variables for the sinks: ``METIS_ALERT_WEBHOOK_URL``,
  ``METIS_ALERT_WEBHOOK_SECRET``, ``METIS_ALERT_SLACK_WEBHOOK_URL``
  (they win over the file);
- an optional ``$METIS_HOME/alerts.yaml`` (``schema_version: 1``) with rule
  defaults, per-workspace overrides (keyed by workspace name or id), sinks
  (secrets only as ``env:NAME`` / ``file:/path`` references) and delivery
  tuning.

A malformed file raises `ConfigError` naming the offending field. Rules are
plain frozen values so the gateway's budget check can read them without I/O.
"""

from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metis.config import Settings
from metis.errors import ConfigError
from metis.secrets.refs import resolve_ref

CAP_SCOPES = ("key_daily", "user_daily", "user_monthly", "team_daily", "team_monthly")
ALERTS_FILE = "alerts.yaml"


@dataclass(frozen=True)
class AlertRules:
    """The thresholds of every alert kind, for one workspace (or the default)."""

    enabled: bool = True
    # Percent of a cap; each crossing fires once per cap period.
    budget_thresholds_pct: tuple[int, ...] = (80, 95, 100)
    budget_scopes: tuple[str, ...] = CAP_SCOPES
    # A failed sync run fires once until a later run of the credential succeeds.
    sync_failure: bool = True
    # No successful sync of a usage_admin credential for this long fires once (0 = off).
    sync_stale_after_seconds: int = 26 * 3600
    # A sync run taking longer than this fires once per credential and day (0 = off).
    sync_slow_after_seconds: int = 900
    # Reconciliation cells: attributed spend above the provider total by more
    # than this percent of it (drift), or unattributed spend above this percent
    # of the provider total; cells whose provider total is below the minimum are ignored.
    recon_drift_pct: Decimal = Decimal(1)
    recon_unattributed_pct: Decimal = Decimal(50)
    recon_min_cost_usd: Decimal = Decimal(1)
    # Calls to a model with no known price fire once per (workspace, provider, model, day).
    unpriced_models: bool = True
    # A monthly cap forecast to be reached before the month ends fires once per
    # cap and month (metis.alerts.forecast), for the scopes in budget_scopes.
    forecast_breach: bool = True


@dataclass(frozen=True)
class SinkConfig:
    """Where alerts go. Secrets are resolved values held in memory only."""

    webhook_url: str | None = None
    webhook_secret: str | None = None
    slack_url: str | None = None
    log: bool = True

    def remote_sinks(self) -> list[str]:
        """Names of the configured outbox sinks (the log is written at fire time)."""
        out = []
        if self.webhook_url:
            out.append("webhook")
        if self.slack_url:
            out.append("slack")
        return out


@dataclass(frozen=True)
class DeliveryConfig:
    """Retry policy of the delivery worker and the cadence of background jobs."""

    max_attempts: int = 12
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    timeout_seconds: float = 5.0
    poll_seconds: float = 1.0
    evaluate_every_seconds: float = 60.0
    ledger_scan_every_seconds: float = 600.0
    prune_every_seconds: float = 6 * 3600.0

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts (exponential, capped)."""
        exp = min(attempts - 1, 30)
        return float(min(self.retry_max_seconds, self.retry_base_seconds * (2**exp)))


@dataclass(frozen=True)
class AlertConfig:
    """Everything the alert engine and the delivery worker need."""

    defaults: AlertRules = field(default_factory=AlertRules)
    workspaces: dict[str, AlertRules] = field(default_factory=dict)
    sinks: SinkConfig = field(default_factory=SinkConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)

    def rules_for(self, workspace_id: str | None, workspace_name: str | None = None) -> AlertRules:
        """The rules of a workspace (its override by id or name, else the defaults)."""
        if workspace_id is not None and workspace_id in self.workspaces:
            return self.workspaces[workspace_id]
        if workspace_name is not None and workspace_name in self.workspaces:
            return self.workspaces[workspace_name]
        return self.defaults


# --- the YAML file -------------------------------------------------------------------------


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    budget_thresholds_pct: list[int] | None = Field(default=None)
    budget_scopes: list[str] | None = None
    sync_failure: bool | None = None
    sync_stale_after_seconds: int | None = Field(default=None, ge=0)
    sync_slow_after_seconds: int | None = Field(default=None, ge=0)
    recon_drift_pct: Decimal | None = Field(default=None, ge=0)
    recon_unattributed_pct: Decimal | None = Field(default=None, ge=0)
    recon_min_cost_usd: Decimal | None = Field(default=None, ge=0)
    unpriced_models: bool | None = None
    forecast_breach: bool | None = None

    def apply(self, base: AlertRules) -> AlertRules:
        changes: dict[str, Any] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if name == "budget_thresholds_pct":
                if any(not 1 <= v <= 1000 for v in value):
                    raise ConfigError("alerts.yaml: budget_thresholds_pct must be in 1..1000")
                value = tuple(sorted(set(value)))
            elif name == "budget_scopes":
                bad = [v for v in value if v not in CAP_SCOPES]
                if bad:
                    raise ConfigError(f"alerts.yaml: unknown budget scope {bad[0]!r}")
                value = tuple(value)
            changes[name] = value
        return replace(base, **changes)


class _Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str | None = None
    secret_ref: str | None = None


class _Slack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url_ref: str | None = None


class _Sinks(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    webhook: _Webhook | None = None
    slack: _Slack | None = None
    log: bool = True


class _Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int | None = Field(default=None, ge=1)
    retry_base_seconds: float | None = Field(default=None, ge=0)
    retry_max_seconds: float | None = Field(default=None, ge=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    poll_seconds: float | None = Field(default=None, gt=0)
    evaluate_every_seconds: float | None = Field(default=None, gt=0)
    ledger_scan_every_seconds: float | None = Field(default=None, ge=0)
    prune_every_seconds: float | None = Field(default=None, gt=0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = 1
    defaults: _Rules = _Rules()
    workspaces: dict[str, _Rules] = Field(default_factory=dict)
    sinks: _Sinks = _Sinks()
    delivery: _Delivery = _Delivery()


def alerts_file(settings: Settings) -> Path:
    """Where the optional alert configuration file lives."""
    return settings.home / ALERTS_FILE


def parse_config(text: str, settings: Settings) -> AlertConfig:
    """Parse ``alerts.yaml`` text merged with the environment's sink settings."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"alerts.yaml is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError("alerts.yaml must be a mapping")
    try:
        f = _File.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"alerts.yaml: {where}: {err['msg']}") from None
    if f.schema_version != 1:
        raise ConfigError(f"alerts.yaml: unsupported schema_version {f.schema_version}")
    defaults = f.defaults.apply(AlertRules())
    workspaces = {name: r.apply(defaults) for name, r in f.workspaces.items()}

    webhook_url = settings.alert_webhook_url or (f.sinks.webhook.url if f.sinks.webhook else None)
    secret: str | None = None
    if settings.alert_webhook_secret is not None:
        secret = settings.alert_webhook_secret.get_secret_value()
    elif f.sinks.webhook and f.sinks.webhook.secret_ref:
        secret = resolve_ref(f.sinks.webhook.secret_ref)
    slack: str | None = None
    if settings.alert_slack_webhook_url is not None:
        slack = settings.alert_slack_webhook_url.get_secret_value()
    elif f.sinks.slack and f.sinks.slack.url_ref:
        slack = resolve_ref(f.sinks.slack.url_ref)
    for name, url in (("webhook", webhook_url), ("slack", slack)):
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"alert {name} URL must start with http:// or https://")
    sinks = SinkConfig(
        webhook_url=webhook_url or None,
        webhook_secret=secret or None,
        slack_url=slack or None,
        log=f.sinks.log,
    )
    delivery = replace(DeliveryConfig(), **f.delivery.model_dump(exclude_none=True))
    return AlertConfig(defaults=defaults, workspaces=workspaces, sinks=sinks, delivery=delivery)


def load_config(settings: Settings) -> AlertConfig:
    """Read ``$METIS_HOME/alerts.yaml`` (if present) and the environment."""
    path = alerts_file(settings)
    text = path.read_text() if path.is_file() else ""
    return parse_config(text, settings)
