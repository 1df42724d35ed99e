"""Alert configuration: defaults, alerts.yaml overrides, environment sinks, clear errors."""

from pathlib import Path

import pytest

from metis.alerts.rules import AlertConfig, load_config, parse_config
from metis.config import get_settings
from metis.errors import ConfigError


def test_defaults_without_file_or_env(metis_env: dict[str, str]) -> None:
    cfg = load_config(get_settings())
    assert cfg == AlertConfig()
    assert cfg.defaults.budget_thresholds_pct == (80, 95, 100)
    assert cfg.sinks.remote_sinks() == []


def test_file_overrides_and_env_wins(
    metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET_FOR_TEST", "from-ref")
    (Path(metis_env["METIS_HOME"]) / "alerts.yaml").write_text(
        """
schema_version: 1
defaults:
  budget_thresholds_pct: [95, 50]
workspaces:
  acme:
    enabled: false
  ws_2:
    sync_stale_after_seconds: 0
sinks:
  webhook: {url: "https://file.example/hook", secret_ref: "env:HOOK_SECRET_FOR_TEST"}
delivery: {max_attempts: 3}
"""
    )
    cfg = load_config(get_settings())
    assert cfg.defaults.budget_thresholds_pct == (50, 95)
    assert cfg.rules_for("ws_x", "acme").enabled is False
    assert cfg.rules_for("ws_2").sync_stale_after_seconds == 0
    assert cfg.rules_for("ws_2").budget_thresholds_pct == (50, 95)  # inherits the defaults
    assert cfg.sinks.webhook_url == "https://file.example/hook"
    assert cfg.sinks.webhook_secret == "from-ref"
    assert cfg.delivery.max_attempts == 3
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", "https://env.example/hook")
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_SECRET", "from-env")
    cfg = load_config(get_settings())
    assert (cfg.sinks.webhook_url, cfg.sinks.webhook_secret) == (
        "https://env.example/hook",
        "from-env",
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("defaults: {nope: 1}", "defaults.nope"),
        ("defaults: {budget_thresholds_pct: [0]}", "budget_thresholds_pct"),
        ("defaults: {budget_scopes: [org_daily]}", "org_daily"),
        ("schema_version: 2", "schema_version"),
        ("sinks: {webhook: {url: 'ftp://x'}}", "http"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_bad_file_is_a_clear_config_error(
    metis_env: dict[str, str], text: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, get_settings())
    assert needle in exc.value.message


def test_backoff_is_exponential_and_capped() -> None:
    d = AlertConfig().delivery
    assert [d.backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert d.backoff(50) == d.retry_max_seconds
